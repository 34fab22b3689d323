"""The console's admin site: operators and viewers use it without being staff."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from runs.permissions import can_view_runs


class ConsoleAdminSite(admin.AdminSite):
    site_header = "NeuroCore Console"
    site_title = "NeuroCore Console"
    index_title = "Operations"

    def has_permission(self, request: HttpRequest) -> bool:
        """Staff, and everyone who may see runs (each page still checks its model's permissions)."""
        user = request.user
        return user.is_active and (user.is_staff or can_view_runs(user))
