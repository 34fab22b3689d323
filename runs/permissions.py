"""Who may do what: one function per question, used by views, admin, CLI and emails.

Roles are permissions held through groups (Viewers, Approvers, Operators).
Per-blueprint scopes narrow them: where a ``BlueprintScope`` matches a run's
blueprint for an action, only its groups' members may take that action on the
run. Superusers may do everything. The questions about a run are
``user.has_perm(perm, run)``, answered by ``runs.backends.BlueprintScopeBackend``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied

from runs.models import BlueprintScope, Run

# Whoever a request comes from: a console user, or nobody signed in.
AnyUser = User | AnonymousUser
DECIDE = BlueprintScope.Action.DECIDE
OPERATE = BlueprintScope.Action.OPERATE


@dataclass(frozen=True)
class Scope:
    """A blueprint pattern and the groups that may act where it matches."""

    pattern: str
    group_ids: frozenset[int]


def scopes_for(user: AnyUser, action: str) -> list[Scope]:
    """Every scope of an action (read once per request: cached on the request's user)."""
    cache: dict[str, list[Scope]] = user.__dict__.setdefault("_console_scopes", {})
    if action not in cache:
        cache[action] = [
            Scope(scope.pattern, frozenset(group.pk for group in scope.groups.all()))
            for scope in BlueprintScope.objects.filter(action=action).prefetch_related("groups")
        ]
    return cache[action]


def _group_ids(user: AnyUser) -> frozenset[int]:
    if "_console_group_ids" not in user.__dict__:
        ids = user.groups.values_list("pk", flat=True) if user.pk else []
        user.__dict__["_console_group_ids"] = frozenset(ids)
    return user.__dict__["_console_group_ids"]


def blueprint_allowed(user: AnyUser, blueprint: str, scopes: Iterable[Scope]) -> bool:
    """Whether no scope keeps ``user`` from acting on ``blueprint``'s runs."""
    if user.is_superuser:
        return True
    matching = [scope for scope in scopes if fnmatchcase(blueprint, scope.pattern)]
    return not matching or any(scope.group_ids & _group_ids(user) for scope in matching)


def allowed_blueprints(user: AnyUser, blueprints: Iterable[str], action: str) -> list[str]:
    """Of ``blueprints``, those whose runs ``user`` may take ``action`` on (scopes only)."""
    scopes = scopes_for(user, action)
    return [name for name in blueprints if blueprint_allowed(user, name, scopes)]


def can_view_runs(user: AnyUser) -> bool:
    """May see runs, their steps and their decisions."""
    return user.is_active and user.has_perm("runs.view_run")


def can_decide(user: AnyUser, run: Run | None = None) -> bool:
    """May approve or reject ``run`` at its gate (or reopen it when rejected); without
    a run, some run."""
    return user.is_active and user.has_perm("runs.approve_run", run)


def can_operate(user: AnyUser, run: Run | None = None) -> bool:
    """May resume, replay and cancel ``run`` (or, without a run, some run)."""
    return user.is_active and user.has_perm("runs.operate_run", run)


def can_delete(user: AnyUser, run: Run | None = None) -> bool:
    """May delete ``run`` and its steps."""
    return user.is_active and user.has_perm("runs.delete_run", run)


def can_administer_access(user: AnyUser) -> bool:
    """May see the audit of users, groups and scopes."""
    return user.is_active and user.is_superuser


def signed_in(user: object) -> User:
    """The console user a request acts as, for a service to record; ``PermissionDenied``
    for anyone else (login is required everywhere, so this is a guard, not a flow)."""
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied("Sign in first.")
    return user
