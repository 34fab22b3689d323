"""The console's admin site: operators and viewers use it without being staff."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.contrib.contenttypes import views as contenttype_views
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.urls import path
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache

from runs import charts, selectors
from runs.models import Run
from runs.permissions import can_administer_access, can_view_runs
from runs.presentation import human_duration


class ConsoleAdminSite(admin.AdminSite):
    site_header = "NeuroCore Console"
    site_title = "NeuroCore Console"
    index_title = "Operations"
    site_url = None  # no "View site": the console is the site
    # The header links to every list; a sidebar repeating them took a quarter of a
    # 1280 px screen from the runs list (its blueprint names wrapped, columns were cut).
    enable_nav_sidebar = False

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """The dashboard above the list of models, for whoever may see runs."""
        context = dict(extra_context or {})
        if can_view_runs(request.user):
            figures = selectors.dashboard()
            per_status = [
                (value, label, figures.by_status.get(value, 0))
                for value, label in Run.Status.choices
            ]
            durations_chart, duration_rows = charts.duration_percentiles(figures.durations)
            context.update(
                dashboard=figures,
                per_status=per_status,
                total_runs=sum(figures.by_status.values()),
                per_day_chart=charts.runs_per_day(figures.per_day),
                durations_chart=durations_chart,
                duration_rows=duration_rows,
                duration_sample=f"{selectors.DURATION_SAMPLE:,}",
                decision_days=selectors.DECISION_DAYS,
                decision_rows=[
                    (
                        times.blueprint,
                        times.decisions,
                        _seconds(times.median),
                        _seconds(times.p90),
                        times.overdue,
                    )
                    for times in figures.decision_times
                ],
            )
        return super().index(request, context)

    def get_urls(self) -> list[Any]:
        """The admin's URLs, with its ``r/`` shortcut limited to who may see the object."""
        return [
            path(
                "r/<path:content_type_id>/<path:object_id>/",
                self.admin_view(self.view_on_site),
                name="view_on_site",
            )
            if getattr(pattern, "name", None) == "view_on_site"
            else pattern
            for pattern in super().get_urls()
        ]

    def view_on_site(self, request: HttpRequest, content_type_id: str, object_id: str) -> Any:
        """Django's "view on site" redirect, for those who may view that kind of object;
        a 404 for everyone else, so it tells nobody what exists."""
        try:
            content_type = ContentType.objects.get_for_id(int(content_type_id))
        except (ValueError, OverflowError, ContentType.DoesNotExist):
            raise Http404("No such object.") from None
        if not request.user.has_perm(f"{content_type.app_label}.view_{content_type.model}"):
            raise Http404("No such object.")
        return contenttype_views.shortcut(request, content_type_id, object_id)

    @method_decorator(never_cache)
    @login_not_required  # as Django's own: the login page is for those not signed in
    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        """Signed in without a role: say so (not Django's "log in as someone else")."""
        if request.user.is_authenticated and not self.has_permission(request):
            raise PermissionDenied("You have no role in this console yet.")
        return super().login(request, extra_context)

    def has_permission(self, request: HttpRequest) -> bool:
        """Everyone who may see runs, and access administrators (each page still checks its
        model's permissions). Not ``is_staff``: roles say who may do what."""
        user = request.user
        return user.is_active and (can_view_runs(user) or can_administer_access(user))


def _seconds(value: float | None) -> str:
    return "—" if value is None else human_duration(value * 1000)
