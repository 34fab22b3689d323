"""The console's admin: runs (read-only history) and the approval audit."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from runs import services
from runs.models import AccessChange, BlueprintScope, Decision, Run, RunAction
from runs.permissions import can_administer_access


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is never edited: no add, change or delete through the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["run_id", "blueprint_name", "status", "created_at", "duration_ms"]
    list_filter = ["status"]
    search_fields = ["=run_id", "blueprint_name"]
    show_full_result_count = False
    date_hierarchy = None


def csv_safe(value: object) -> object:
    """Keep a spreadsheet from reading a stored text as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose write returns the line, for streaming CSV."""

    def write(self, value: str) -> str:
        return value


DECISION_CSV_COLUMNS = [
    ("decided_at", "decided_at"),
    ("run_id", "run_id"),
    ("gate", "gate"),
    ("decision", "approved"),
    ("decided_by", "decided_by_identity"),
    ("source", "source"),
    ("client_address", "client_address"),
    ("note", "note"),
    ("gate_message", "gate_message"),
    ("suspended_at", "suspended_at"),
    ("evidence_sha256", "evidence_digest"),
]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ["decided_at", "run_id", "gate", "verdict", "decided_by_identity", "source"]
    list_filter = ["approved", "source", "decided_at", "decided_by_identity"]
    search_fields = ["=run__run_id", "decided_by_identity", "note"]
    date_hierarchy = "decided_at"
    actions = ["export_csv"]
    show_full_result_count = False

    @admin.display(description="Decision", ordering="approved")
    def verdict(self, decision: Decision) -> str:
        return "approved" if decision.approved else "rejected"

    @admin.action(description="Export selected decisions as CSV", permissions=["view"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[Decision]
    ) -> StreamingHttpResponse:
        writer = csv.writer(_Echo())

        def rows() -> Iterator[str]:
            yield writer.writerow([name for name, _ in DECISION_CSV_COLUMNS])
            for decision in queryset.order_by("decided_at").iterator():
                values = [getattr(decision, attr) for _, attr in DECISION_CSV_COLUMNS]
                values[3] = "approved" if decision.approved else "rejected"
                yield writer.writerow([csv_safe(value) for value in values])

        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="decisions.csv"'
        return response


@admin.register(RunAction)
class RunActionAdmin(ReadOnlyAdmin):
    list_display = [
        "requested_at",
        "run_id",
        "requested_by_identity",
        "state",
        "attempts",
        "outcome_status",
    ]
    list_filter = ["state", "outcome_status"]
    search_fields = ["=run__run_id"]
    show_full_result_count = False


class AccessAuditedAdmin(admin.ModelAdmin):
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
        services.access_change_record(
            actor=request.user,
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


@admin.register(AccessChange)
class AccessChangeAdmin(ReadOnlyAdmin):
    list_display = ["changed_at", "actor_identity", "action", "target_type", "target"]
    list_filter = ["target_type", "action", "changed_at"]
    search_fields = ["actor_identity", "target"]
    date_hierarchy = "changed_at"
    show_full_result_count = False

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return can_administer_access(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_administer_access(request.user)
