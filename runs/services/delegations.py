"""Delegations: someone out of office names who decides for them, for a period.

A delegation is access: it is recorded in the access audit (``AccessChange``)
in its own transaction, like roles and scopes. A person names their own
delegates; an administrator may name anyone's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from runs.errors import ConsoleError, when
from runs.models import AccessChange, Delegation
from runs.permissions import can_administer_access
from runs.services.access import access_change_record, access_state

LONGEST = timedelta(days=366)  # a delegation is for an absence, not a standing grant


def delegation_create(
    *,
    principal: User,
    delegate: User,
    starts_at: datetime,
    ends_at: datetime,
    note: str = "",
    actor: User,
) -> Delegation:
    """Let ``delegate`` decide for ``principal`` from ``starts_at`` until ``ends_at``.

    Returns the delegation. Raises ``PermissionDenied`` unless ``actor`` is the
    principal or a superuser; ``ConsoleError`` when the delegate is the
    principal, inactive or no approver (a delegate decides with their own role
    and scopes), the period ends before it starts, has already ended, is longer
    than a year, or overlaps another delegation to the same person.
    """
    if actor.pk != principal.pk and not can_administer_access(actor):
        raise PermissionDenied("You may name delegates only for yourself.")
    if not principal.has_perm("runs.approve_run"):
        raise PermissionDenied("Only people who approve or reject runs name delegates.")
    if delegate.pk == principal.pk:
        raise ConsoleError("Name someone else: you cannot be your own delegate.")
    if not delegate.is_active:
        raise ConsoleError(f"{delegate.get_username()} cannot sign in: name an active user.")
    if not delegate.has_perm("runs.approve_run"):
        raise ConsoleError(
            f"{delegate.get_username()} cannot approve or reject runs (the Approvers role): "
            "name an approver, or ask an administrator to give them the role."
        )
    if ends_at <= starts_at:
        raise ConsoleError("The delegation must end after it starts.")
    if ends_at <= timezone.now():
        raise ConsoleError("That period is already over: choose an end in the future.")
    if ends_at - starts_at > LONGEST:
        raise ConsoleError("A delegation lasts at most a year; name it again after that.")
    with transaction.atomic():
        # Row locks on the principal: two overlapping delegations cannot both be saved.
        User.objects.select_for_update().filter(pk=principal.pk).first()
        overlapping = Delegation.objects.filter(
            principal=principal, delegate=delegate, starts_at__lt=ends_at, ends_at__gt=starts_at
        ).first()
        if overlapping is not None:
            raise ConsoleError(
                f"{delegate.get_username()} already decides for "
                f"{principal.get_username()} from {when(overlapping.starts_at)} until "
                f"{when(overlapping.ends_at)}: end that first, or choose another period."
            )
        delegation = Delegation.objects.create(
            principal=principal,
            delegate=delegate,
            starts_at=starts_at,
            ends_at=ends_at,
            note=note.strip(),
        )
        access_change_record(
            kind=AccessChange.Kind.DELEGATION_SAVED,
            target=delegation,
            before={},
            after=access_state(delegation),
            actor=actor,
        )
    return delegation


def delegation_end(*, delegation_id: int, actor: User) -> Delegation:
    """End a delegation now (it stays in the audit). Returns it.

    Raises ``PermissionDenied`` unless ``actor`` is its principal, its delegate
    or a superuser; ``ConsoleError`` if there is no such delegation or it has
    already ended.
    """
    with transaction.atomic():
        delegation = (
            Delegation.objects.select_for_update()
            .select_related("principal", "delegate")
            .filter(pk=delegation_id)
            .first()
        )
        if delegation is None:
            raise ConsoleError("No such delegation.")
        if actor.pk not in (
            delegation.principal_id,
            delegation.delegate_id,
        ) and not can_administer_access(actor):
            raise PermissionDenied(
                "Only its principal, its delegate or an administrator may end it."
            )
        now = timezone.now()
        if delegation.ends_at <= now:
            raise ConsoleError("This delegation has already ended.")
        before = access_state(delegation)
        delegation.ends_at = max(now, delegation.starts_at + timedelta(microseconds=1))
        delegation.save(update_fields=["ends_at"])
        access_change_record(
            kind=AccessChange.Kind.DELEGATION_ENDED,
            target=delegation,
            before=before,
            after=access_state(delegation),
            actor=actor,
        )
    return delegation
