"""Values every console page shows."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from runs.selectors import waiting_count_for


def console(request: HttpRequest) -> dict[str, object]:
    """The number of runs waiting for the user's decision (counted only if shown)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"waiting_count": SimpleLazyObject(lambda: waiting_count_for(user))}
