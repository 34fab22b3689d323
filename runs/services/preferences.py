"""What a person chooses about how the console is shown to them.

A display preference changes no run and no access, so it writes no audit row;
it is still changed here only, checked and in one transaction.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from runs.errors import ConsoleError
from runs.models import Preference
from runs.zones import zone_named


class PreferenceRefused(ConsoleError):
    """The preference cannot be set as asked."""


@transaction.atomic
def preference_time_zone_set(*, actor: User, time_zone: str) -> Preference:
    """Show ``actor`` their pages in ``time_zone`` (an IANA name); "" for their
    browser's zone. Refuses a name the time zone database does not know."""
    if time_zone and zone_named(time_zone) is None:
        raise PreferenceRefused(
            f"“{time_zone[:80]}” is not a time zone this console knows; choose one from "
            "the list. Nothing was changed."
        )
    preference, _ = Preference.objects.update_or_create(
        user=actor, defaults={"time_zone": time_zone}
    )
    return preference
