"""Users, groups and blueprint scopes, each change recorded in the access audit."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from django.http import HttpRequest

from runs import (
    converters,  # noqa: F401 — registers <run_id:…>
)
from runs.admin.base import ConsoleModelAdmin
from runs.models import (
    BlueprintScope,
)
from runs.permissions import signed_in
from runs.services.access import access_change_record


class AccessAuditedAdmin(ConsoleModelAdmin):
    """Records every addition, change and deletion made here in the access audit."""

    audit_type = ""

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)
        self._audit(request, "added", obj, message)
        return entry

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        self._audit(request, "changed", obj, message)
        return entry

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        for obj in queryset:
            self._audit(request, "deleted", obj, [])
        return super().log_deletions(request, queryset)

    def _audit(self, request: HttpRequest, action: str, obj: Any, message: Any) -> None:
        access_change_record(
            actor=signed_in(request.user),
            action=action,
            target_type=self.audit_type,
            target=str(obj),
            details={"change": message} if message else {},
        )


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class ConsoleUserAdmin(AccessAuditedAdmin, UserAdmin):
    audit_type = "user"


@admin.register(Group)
class ConsoleGroupAdmin(AccessAuditedAdmin, GroupAdmin):
    audit_type = "group"


@admin.register(BlueprintScope)
class BlueprintScopeAdmin(AccessAuditedAdmin):
    audit_type = "blueprint scope"
    list_display = ["pattern", "action", "group_names", "note"]
    list_filter = ["action", "groups"]
    search_fields = ["pattern"]
    filter_horizontal = ["groups"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BlueprintScope]:
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="Groups")
    def group_names(self, scope: BlueprintScope) -> str:
        return ", ".join(group.name for group in scope.groups.all())
