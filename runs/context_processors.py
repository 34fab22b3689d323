"""Values every console page shows: the header's links, the waiting count, the reader's zone."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import SimpleLazyObject

from runs.permissions import can_administer_access, can_decide, can_view_runs
from runs.selectors import waiting_count_for
from runs.zones import BROWSER_ZONE_COOKIE, default_zone


@dataclass(frozen=True)
class NavLink:
    """A link of the header: where it goes, what it says, whether the waiting count
    (``waiting_count``, which a page may have counted already) goes beside it."""

    label: str
    url: str
    shows_waiting: bool = False
    title: str = ""


def navigation(user: object) -> list[NavLink]:
    """The header's links for ``user``, each shown by permission (never by ``is_staff``)."""
    links: list[NavLink] = []
    decides = can_decide(user)  # type: ignore[arg-type]
    views = can_view_runs(user)  # type: ignore[arg-type]
    if decides or views:
        links.append(
            NavLink(
                "Approvals",
                reverse("approvals:inbox"),
                shows_waiting=decides,
                title="Runs waiting for your decision"
                if decides
                else "Runs waiting for a decision",
            )
        )
    if views:
        links += [
            NavLink("Runs", reverse("admin:runs_run_changelist")),
            NavLink("Dashboard", reverse("admin:index")),
            NavLink("Decisions", reverse("admin:runs_decision_changelist")),
        ]
    if can_administer_access(user):  # type: ignore[arg-type]
        links.append(NavLink("People and access", reverse("admin:auth_user_changelist")))
    return links


def console(request: HttpRequest) -> dict[str, object]:
    """The header's links, the number of runs waiting for the user's decision
    (counted only if shown), and the zone the page's instants are in (for the
    header and the script that tells the server the browser's zone)."""
    zone = {
        "reader_zone": getattr(request, "reader_zone", None) or default_zone(),
        "zone_cookie": BROWSER_ZONE_COOKIE,
    }
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return zone
    return {
        **zone,
        "nav": SimpleLazyObject(lambda: navigation(user)),
        "waiting_count": SimpleLazyObject(lambda: waiting_count_for(user)),
    }
