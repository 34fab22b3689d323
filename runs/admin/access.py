"""Users, groups and blueprint scopes, each change recorded in the access audit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from django.http import HttpRequest

from runs import (
    converters,  # noqa: F401 — registers <run_id:…>
)
from runs.admin.base import ConsoleModelAdmin
from runs.errors import ConsoleError
from runs.models import AccessChange, ApprovalPolicy, BlueprintScope, Delegation
from runs.permissions import can_administer_access, signed_in
from runs.policies import declared_policy, parse_duration
from runs.services.access import (
    access_change_record,
    access_deleted,
    access_form_saved,
    access_state,
)
from runs.services.deadlines import deadlines_recompute
from runs.services.delegations import delegation_end


class AccessAuditedAdmin(ConsoleModelAdmin):
    """Records every change made here in the access audit, through its services:
    the state is read before the form is saved and compared after (groups too)."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        stored = type(obj).objects.filter(pk=obj.pk).first() if change else None
        request._access_before = access_state(stored) if stored is not None else None  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        access_form_saved(
            target=form.instance,
            before=getattr(request, "_access_before", None),
            actor=signed_in(request.user),
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        access_deleted(target=obj, actor=signed_in(request.user))
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            access_deleted(target=obj, actor=signed_in(request.user))
        super().delete_queryset(request, queryset)


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class ConsoleUserAdmin(AccessAuditedAdmin, UserAdmin):
    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        """Django's password page; a password set there is recorded too."""
        user = self.get_object(request, id)
        usable = user.has_usable_password() if user is not None else None
        response = super().user_change_password(request, id, form_url)
        if user is not None and request.method == "POST" and response.status_code == 302:
            user.refresh_from_db()
            access_change_record(
                kind=AccessChange.Kind.PASSWORD_SET,
                target=user,
                before={"password_usable": usable},
                after={"password_usable": user.has_usable_password()},
                actor=signed_in(request.user),
            )
        return response


@admin.register(Group)
class ConsoleGroupAdmin(AccessAuditedAdmin, GroupAdmin):
    pass


@admin.register(BlueprintScope)
class BlueprintScopeAdmin(AccessAuditedAdmin):
    list_display = ["pattern", "action", "group_names", "note"]
    list_filter = ["action", "groups"]
    search_fields = ["pattern"]
    filter_horizontal = ["groups"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BlueprintScope]:
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="Groups")
    def group_names(self, scope: BlueprintScope) -> str:
        return ", ".join(group.name for group in scope.groups.all())


class PolicyDurationField(forms.DurationField):
    """A duration as blueprints write it (``30m``, ``24h``, ``3d``, ``1w``) or as Django
    does (``1 00:00:00``); above zero."""

    def to_python(self, value: Any) -> timedelta | None:
        if value in self.empty_values:
            return None
        try:
            return parse_duration(str(value).strip())
        except ValueError:
            pass
        parsed = super().to_python(value)
        if parsed is not None and parsed <= timedelta(0):
            raise forms.ValidationError("A duration above zero: 30m, 24h, 3d or 1w.")
        return parsed


class ApprovalPolicyForm(forms.ModelForm):
    """Durations in the words blueprints use; a policy that would lock its gates is refused."""

    due = PolicyDurationField(
        required=False, help_text="30m, 24h, 3d or 1w: reminders from then on (blank: as declared)."
    )
    expires = PolicyDurationField(
        required=False,
        help_text="30m, 24h, 3d or 1w: then the expiry outcome (blank: as declared).",
    )

    class Meta:
        model = ApprovalPolicy
        fields = [
            "blueprint_pattern",
            "gate_pattern",
            "approvals",
            "approvers",
            "escalate_to",
            "requester_field",
            "distinct_gates",
            "due",
            "expires",
            "on_expiry",
            "note",
        ]

    def clean_requester_field(self) -> str:
        where = self.cleaned_data["requester_field"].strip()
        if where and declared_policy({"not_by": [where]}, source="x").fault:
            raise forms.ValidationError(
                "Write initial_data.<field> (for example initial_data.requested_by) or started_by."
            )
        return where


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(AccessAuditedAdmin):
    """Console approval policies: they tighten what blueprints declare, never loosen it.

    A saved or deleted policy moves the due and expiry times of the runs waiting
    under it (``deadlines_recompute``, in the admin's transaction)."""

    form = ApprovalPolicyForm
    list_display = [
        "blueprint_pattern",
        "gate_pattern",
        "approvals",
        "approver_names",
        "due",
        "expires",
        "on_expiry",
    ]
    search_fields = ["blueprint_pattern", "gate_pattern"]
    filter_horizontal = ["approvers", "escalate_to"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovalPolicy]:
        return super().get_queryset(request).prefetch_related("approvers")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # The policy as it was: runs its old patterns matched may be freed of its times.
        stored = ApprovalPolicy.objects.filter(pk=obj.pk).first() if change else None
        request._policy_before = stored  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # its groups, then the times
        before = getattr(request, "_policy_before", None)
        deadlines_recompute(policies=[p for p in (before, form.instance) if p is not None])

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        deadlines_recompute(policies=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        deleted = list(queryset)
        super().delete_queryset(request, queryset)
        deadlines_recompute(policies=deleted)

    @admin.display(description="Approvers")
    def approver_names(self, policy: ApprovalPolicy) -> str:
        return ", ".join(group.name for group in policy.approvers.all()) or "(as declared)"


@admin.register(Delegation)
class DelegationAdmin(ConsoleModelAdmin):
    """Who decides for whom, when: every delegation, read-only. People name delegates on
    their out-of-office page (``runs.services.delegations``); an administrator may
    end one here, through the same service (the row stays, for the audit)."""

    list_display = ["principal", "delegate", "starts_at", "ends_at", "note"]
    list_select_related = ["principal", "delegate"]
    search_fields = ["principal__username", "delegate__username"]
    actions = ["end_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_end_permission(self, request: HttpRequest) -> bool:
        return can_administer_access(request.user)

    @admin.action(description="End the selected delegations now", permissions=["end"])
    def end_now(self, request: HttpRequest, queryset: QuerySet[Delegation]) -> None:
        for delegation in queryset:
            try:
                delegation_end(delegation_id=delegation.pk, actor=signed_in(request.user))
            except ConsoleError as error:
                self.message_user(request, f"{delegation}: {error}", level="warning")
