"""What each person chose about how the console is shown to them."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Preference(models.Model):
    """One person's choices: the time zone their pages show instants in.

    Changed only through ``runs.services.preferences``; a person without a row
    (or with an empty zone) sees their browser's zone.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_preference"
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        help_text="An IANA time zone name (Europe/Berlin); empty: the browser's zone.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user}: {self.time_zone or 'browser zone'}"
