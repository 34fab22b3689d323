"""Access administration: users, groups and scopes, each change recorded as it is made.

The shape of Zulip's ``do_change_user_role`` with ``RealmAuditLog``: one service
per kind of change, each writing an ``AccessChange`` of an enumerated kind with
the target's state before and after, in the change's own transaction. The
admin, ``createuser`` and the demo all change access through here, so "who gave
Ada the Approvers role, when, and what did she have before" has one answer.
"""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from runs.errors import ConsoleError
from runs.models import AccessChange, ApprovalPolicy, BlueprintScope, Delegation
from runs.services.actions import who

Kind = AccessChange.Kind
# The fields of a user that are "details" (groups, activation and password have kinds).
USER_DETAILS = ("username", "email", "first_name", "last_name", "is_staff", "is_superuser")


Target = User | Group | BlueprintScope | ApprovalPolicy | Delegation
# The kinds of a save and of a deletion of each kind of target.
SAVED = {
    User: Kind.USER_CREATED,
    Group: Kind.GROUP_CREATED,
    BlueprintScope: Kind.SCOPE_SAVED,
    ApprovalPolicy: Kind.POLICY_SAVED,
    Delegation: Kind.DELEGATION_SAVED,
}
DELETED = {
    User: Kind.USER_DELETED,
    Group: Kind.GROUP_DELETED,
    BlueprintScope: Kind.SCOPE_DELETED,
    ApprovalPolicy: Kind.POLICY_DELETED,
    Delegation: Kind.DELEGATION_ENDED,
}
TARGET_TYPES = {
    "user": "user",
    "password": "user",
    "group": "group",
    "scope": "blueprint scope",
    "policy": "approval policy",
    "delegation": "delegation",
}


def access_state(target: Target) -> dict[str, Any]:
    """What an access change can change of ``target``, as JSON (no password, only
    whether one is usable)."""
    if isinstance(target, User):
        return {
            **{field: getattr(target, field) for field in USER_DETAILS},
            "is_active": target.is_active,
            "groups": sorted(target.groups.values_list("name", flat=True)),
            "password_usable": target.has_usable_password(),
        }
    if isinstance(target, Group):
        return {
            "name": target.name,
            "permissions": sorted(target.permissions.values_list("codename", flat=True)),
        }
    if isinstance(target, ApprovalPolicy):
        return {
            "blueprint_pattern": target.blueprint_pattern,
            "gate_pattern": target.gate_pattern,
            "approvals": target.approvals,
            "approvers": sorted(target.approvers.values_list("name", flat=True)),
            "escalate_to": sorted(target.escalate_to.values_list("name", flat=True)),
            "requester_field": target.requester_field,
            "distinct_gates": target.distinct_gates,
            "due": str(target.due) if target.due else None,
            "expires": str(target.expires) if target.expires else None,
            "on_expiry": target.on_expiry,
            "note": target.note,
        }
    if isinstance(target, Delegation):
        return {
            "principal": target.principal.get_username(),
            "delegate": target.delegate.get_username(),
            "starts_at": target.starts_at.isoformat(),
            "ends_at": target.ends_at.isoformat(),
            "note": target.note,
        }
    return {
        "pattern": target.pattern,
        "action": target.action,
        "groups": sorted(target.groups.values_list("name", flat=True)),
        "note": target.note,
    }


def access_change_record(
    *,
    kind: str,
    target: Target | str,
    before: dict[str, Any],
    after: dict[str, Any],
    actor: User | None,
    identity: str | None = None,
) -> AccessChange:
    """Record one change of access: its kind, on what, the state before and after, by whom.

    Returns the row. Raises ``ValueError`` without an actor or an identity.
    """
    target_type = TARGET_TYPES[kind.partition("-")[0]]
    return AccessChange.objects.create(
        actor=actor,
        actor_identity=who(actor, identity),
        kind=kind,
        target_type=target_type,
        target=target if isinstance(target, str) else str(target),
        before=before,
        after=after,
    )


def access_form_saved(
    *,
    target: Target,
    before: dict[str, Any] | None,
    actor: User,
) -> list[AccessChange]:
    """Record what a form (the admin's) changed of ``target``: one change per kind
    (details, groups, activation, password…), with only what changed in it.

    ``before`` is ``access_state`` taken before the save, None for a new object.
    Returns the rows written (none when nothing changed).
    """
    after = access_state(target)
    if before is None:
        kind = SAVED[type(target)]
        return [access_change_record(kind=kind, target=target, before={}, after=after, actor=actor)]
    changed = {key for key in after if before.get(key) != after.get(key)}
    if not changed:
        return []
    if not isinstance(target, User):
        kind = Kind.GROUP_CHANGED if isinstance(target, Group) else SAVED[type(target)]
        return [
            access_change_record(kind=kind, target=target, before=before, after=after, actor=actor)
        ]
    aspects = [
        (Kind.USER_GROUPS_SET, {"groups"}),
        (Kind.USER_ACTIVATED if after["is_active"] else Kind.USER_DEACTIVATED, {"is_active"}),
        (Kind.PASSWORD_SET, {"password_usable"}),
        (Kind.USER_CHANGED, set(USER_DETAILS)),
    ]
    return [
        access_change_record(
            kind=kind,
            target=target,
            before={key: before.get(key) for key in sorted(keys & changed)},
            after={key: after[key] for key in sorted(keys & changed)},
            actor=actor,
        )
        for kind, keys in aspects
        if keys & changed
    ]


def access_deleted(*, target: Target, actor: User) -> AccessChange:
    """Record that ``target`` is about to be deleted, with what it was."""
    kind = DELETED[type(target)]
    return access_change_record(
        kind=kind, target=target, before=access_state(target), after={}, actor=actor
    )


def user_groups_set(
    *, user: User, groups: list[Group], actor: User | None, identity: str | None = None
) -> AccessChange | None:
    """Put ``user`` in exactly ``groups`` (roles included); record it if it changed anything.

    Returns the row, or None when the user already had exactly those groups.
    """
    with transaction.atomic():
        before = sorted(user.groups.values_list("name", flat=True))
        user.groups.set(groups)
        after = sorted(group.name for group in groups)
        if before == after:
            return None
        return access_change_record(
            kind=Kind.USER_GROUPS_SET,
            target=user,
            before={"groups": before},
            after={"groups": after},
            actor=actor,
            identity=identity,
        )


def user_password_set(
    *, user: User, password: str | None, actor: User | None, identity: str | None = None
) -> AccessChange:
    """Give ``user`` ``password`` (None: no usable password); record it (never the password).

    Raises ``ConsoleError`` when the password fails the configured validators.
    """
    with transaction.atomic():
        before = user.has_usable_password()
        if password is None:
            user.set_unusable_password()
        else:
            try:
                validate_password(password, user)
            except ValidationError as error:
                raise ConsoleError("Password refused: " + " ".join(error.messages)) from None
            user.set_password(password)
        user.save(update_fields=["password"])
        return access_change_record(
            kind=Kind.PASSWORD_SET,
            target=user,
            before={"password_usable": before},
            after={"password_usable": user.has_usable_password()},
            actor=actor,
            identity=identity,
        )


def user_activation_set(
    *, user: User, active: bool, actor: User | None, identity: str | None = None
) -> AccessChange | None:
    """Let ``user`` sign in (``active``) or not; record it if it changed. Returns the row."""
    if user.is_active == active:
        return None
    with transaction.atomic():
        user.is_active = active
        user.save(update_fields=["is_active"])
        return access_change_record(
            kind=Kind.USER_ACTIVATED if active else Kind.USER_DEACTIVATED,
            target=user,
            before={"is_active": not active},
            after={"is_active": active},
            actor=actor,
            identity=identity,
        )


def user_superuser_set(
    *, user: User, superuser: bool, actor: User | None, identity: str | None = None
) -> AccessChange | None:
    """Make ``user`` a superuser (and staff) or not; record it if it changed. Returns the row."""
    if (user.is_superuser, user.is_staff) == (superuser, superuser):
        return None
    with transaction.atomic():
        before = {"is_staff": user.is_staff, "is_superuser": user.is_superuser}
        user.is_staff = user.is_superuser = superuser
        user.save(update_fields=["is_staff", "is_superuser"])
        return access_change_record(
            kind=Kind.USER_CHANGED,
            target=user,
            before=before,
            after={"is_staff": superuser, "is_superuser": superuser},
            actor=actor,
            identity=identity,
        )


def user_exists(username: str) -> bool:
    """Whether a console user has this username."""
    return User.objects.filter(username=username).exists()


def group_provision(*, name: str, identity: str) -> Group:
    """The group named ``name``, created (and recorded) if there is none. Returns it."""
    with transaction.atomic():
        group, created = Group.objects.get_or_create(name=name)
        if created:
            access_change_record(
                kind=Kind.GROUP_CREATED,
                target=group,
                before={},
                after=access_state(group),
                actor=None,
                identity=identity,
            )
    return group


def user_provision(
    *,
    username: str,
    email: str | None,
    groups: list[str],
    password: str | None,
    identity: str | None = None,
) -> tuple[User, bool]:
    """Create or update a user, active, in exactly ``groups``; each change recorded.

    ``identity`` names who does it (default: the operating-system user running
    ``createuser``). A new user without a password gets an unusable one. Returns
    the user and whether it was created. Raises ``ConsoleError`` for a password
    the validators refuse (nothing is changed then).
    """
    identity = identity or f"{getpass.getuser()} (OS user, createuser)"
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username)
        if created:
            if email is not None:
                user.email = email
            user.save()
            access_change_record(
                kind=Kind.USER_CREATED,
                target=user,
                before={},
                after=access_state(user),
                actor=None,
                identity=identity,
            )
        elif email is not None and email != user.email:
            before = {"email": user.email}
            user.email = email
            user.save(update_fields=["email"])
            access_change_record(
                kind=Kind.USER_CHANGED,
                target=user,
                before=before,
                after={"email": email},
                actor=None,
                identity=identity,
            )
        if password is not None or created:
            user_password_set(user=user, password=password, actor=None, identity=identity)
        user_activation_set(user=user, active=True, actor=None, identity=identity)
        user_groups_set(
            user=user,
            groups=list(Group.objects.filter(name__in=groups)),
            actor=None,
            identity=identity,
        )
    return user, created
