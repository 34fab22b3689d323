"""Who may do what: one function per question, used by views, admin, CLI and templates."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from runs.models import Run

User = AbstractBaseUser | AnonymousUser


def can_view_runs(user: User) -> bool:
    """May see runs, their steps and their decisions."""
    return user.is_active and user.has_perm("runs.view_run")


def can_decide(user: User, run: Run | None = None) -> bool:
    """May approve or reject ``run`` (or, without a run, some run) at its gate."""
    return user.is_active and user.has_perm("runs.approve_run")


def can_operate(user: User, run: Run | None = None) -> bool:
    """May resume, replay and cancel ``run`` (or, without a run, some run)."""
    return user.is_active and user.has_perm("runs.operate_run")


def can_delete(user: User, run: Run | None = None) -> bool:
    """May delete ``run`` and its steps."""
    return user.is_active and user.has_perm("runs.delete_run")
