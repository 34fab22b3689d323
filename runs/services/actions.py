"""What every action on a run shares: the run's row lock, who acts, one open action.

At most one action per run is open (queued or running), which the database
enforces (``action_one_open_per_run``): whoever comes second is told who came
first. Background actions are enqueued in the transaction that records them.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from runs.errors import ActionInFlight, RunNotFound
from runs.models import Run, RunAction
from runs.tasks import execute_run_action


def actor_identity(user: User) -> str:
    """How a person is named in audits and in NeuroCore's ``resume_data["by"]``."""
    return getattr(user, "email", "") or user.get_username()


def who(actor: User | None, identity: str | None) -> str:
    """The identity to record: given explicitly (the CLI's --by), else the actor's.

    Raises ``ValueError`` when there is neither.
    """
    if identity:
        return identity
    if actor is None:
        raise ValueError("An action needs an actor or an identity.")
    return actor_identity(actor)


def locked_run(run_id: str) -> Run:
    """The run, its row locked until the transaction ends; ``RunNotFound`` if none."""
    run = Run.objects.select_for_update().filter(pk=run_id).first()
    if run is None:
        raise RunNotFound(f"No run has the id {run_id!r}.")
    return run


def open_action(run_id: str) -> RunAction | None:
    """The run's queued or running action, if any."""
    return RunAction.objects.filter(run_id=run_id, state__in=RunAction.OPEN_STATES).first()


def action_open(action: RunAction) -> RunAction:
    """Insert ``action`` as the run's one open action; ``ActionInFlight`` if another is."""
    try:
        with transaction.atomic():
            action.save()
    except IntegrityError:
        first = open_action(action.run_id)
        if first is None:
            raise
        raise ActionInFlight(first) from None
    return action


def action_enqueue(action: RunAction) -> RunAction:
    """Open a background action and enqueue the task that may claim it (same transaction)."""
    action.state = RunAction.State.QUEUED
    action_open(action)
    action.task_id = execute_run_action.enqueue(action.pk).id
    action.save(update_fields=["task_id"])
    return action
