"""Recovering actions whose worker was lost: queued again, or handed to an operator."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from runs.errors import WorkerLost
from runs.models import RunAction
from runs.tasks import execute_run_action
from runs.worker import MAX_ATTEMPTS, lease_held

logger = logging.getLogger(__name__)


def run_actions_recover(*, now: datetime | None = None) -> int:
    """Queue again every background action whose worker is gone, or whose task never ran.

    A running action is taken over only when its heartbeat is older than
    ``RESUME_STALE_AFTER`` seconds *and* its lease is free (the worker's
    database session or process is gone): a frozen or slow worker keeps it.
    A queued one that old whose task is no longer waiting (its worker died
    between taking the task and claiming the action) is queued again too.
    One that has had ``MAX_ATTEMPTS`` workers ends ``interrupted``. Each is
    handed over in one conditional update, so among many watchdogs one wins.
    Returns how many were queued again.
    """
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.RESUME_STALE_AFTER)
    candidates = RunAction.objects.filter(
        Q(state=RunAction.State.RUNNING, heartbeat_at__lt=stale_before)
        | Q(state=RunAction.State.QUEUED, requested_at__lt=stale_before)
    ).values_list("pk", "state", "task_id", "attempts", "lease_owner")
    recovered = 0
    for pk, state, old_task_id, attempts, owner in candidates:
        if state == RunAction.State.QUEUED and _task_waiting(old_task_id):
            continue  # its task waits for a free worker: nothing is lost
        with transaction.atomic():
            if state == RunAction.State.RUNNING and lease_held(pk, owner):
                continue  # its worker may still be running it: never two at once
            if attempts >= MAX_ATTEMPTS:
                _interrupt(pk, state, old_task_id, attempts)
                continue
            new_task_id = execute_run_action.enqueue(pk).id
            taken = RunAction.objects.filter(pk=pk, state=state, task_id=old_task_id).update(
                state=RunAction.State.QUEUED, task_id=new_task_id
            )
            if not taken:  # another watchdog, or the worker itself, got there first
                transaction.set_rollback(True)
                continue
            _fail_lost_task(old_task_id)
        logger.warning("Action %s lost its worker; queued again as task %s", pk, new_task_id)
        recovered += 1
    return recovered


def _interrupt(pk: int, state: str, task_id: str, attempts: int) -> None:
    ended = RunAction.objects.filter(pk=pk, state=state, task_id=task_id).update(
        state=RunAction.State.INTERRUPTED,
        finished_at=timezone.now(),
        outcome_error=f"Its worker was lost {attempts} times; an operator should look at the "
        "run before anything is tried again.",
    )
    if ended:
        _fail_lost_task(task_id)
        logger.error("Action %s lost %s workers; interrupted for an operator.", pk, attempts)


def _fail_lost_task(task_id: str) -> None:
    lost = DBTaskResult.objects.filter(pk=task_id, status=TaskResultStatus.RUNNING).first()
    if lost is not None:
        lost.set_failed(WorkerLost(f"worker {lost.worker_ids[-1:]} stopped answering"))


def _task_waiting(task_id: str) -> bool:
    return DBTaskResult.objects.filter(pk=task_id, status=TaskResultStatus.READY).exists()
