"""The console's admin site: operators and viewers use it without being staff."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from runs import charts, selectors
from runs.models import Run
from runs.permissions import can_view_runs


class ConsoleAdminSite(admin.AdminSite):
    site_header = "NeuroCore Console"
    site_title = "NeuroCore Console"
    index_title = "Operations"

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
            )
        return super().index(request, context)

    def has_permission(self, request: HttpRequest) -> bool:
        """Staff, and everyone who may see runs (each page still checks its model's permissions)."""
        user = request.user
        return user.is_active and (user.is_staff or can_view_runs(user))
