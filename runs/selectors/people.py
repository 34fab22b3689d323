"""Reads about people: what they chose."""

from __future__ import annotations

from typing import Any

from runs.models import Preference


def chosen_time_zone(user: Any) -> str:
    """The time zone ``user`` chose ("" when none: their browser's is used). One query."""
    return (
        Preference.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first() or ""
    )
