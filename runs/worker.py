"""Carrying out queued actions through NeuroCore, once: claim, lease, fence, outcome.

A worker claims a queued action for its task (a conditional update), then
holds a *lease* on it while NeuroCore runs:

- a heartbeat, refreshed from a side thread on its own database connection;
  a lost connection is opened again (with back-off), never silently given up;
- on PostgreSQL, a session advisory lock held by that connection: while the
  worker's session lives (even if the process is frozen), nobody else may
  take the action over; on SQLite (one host), the worker process itself: its
  host, pid and start time in ``lease_owner``.

The recovery service queues an action again only when its heartbeat is stale
*and* its lease is free (``lease_held``), so a frozen or partitioned worker is
never doubled. Every write NeuroCore makes for the action is fenced: once the
action is no longer this task's, the next write raises ``LeaseLost`` and the
resume stops. Where the console cannot know how far an action got (its
attempts exhausted, or the database lost beyond the store's retries), the
action ends ``interrupted``, for an operator, rather than being guessed at.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import F
from django.utils import timezone
from neurocore.runtime.blueprint import Blueprint
from neurocore.runtime.executor import execute_blueprint_tracked, resume_blueprint

from runs import runtime
from runs.errors import LeaseLost, ProgressUnknown
from runs.models import Run, RunAction, Step
from runs.store import DjangoRunStore, reconnecting

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a resume whose worker was lost this often needs an operator
LEASE_LOCK_CLASS = 0x4E43  # the first key of the console's advisory locks ("NC")


def _process_start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_identity() -> str:
    """This worker process, as ``lease_owner`` names it: ``host:pid:start time``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start_time(pid) or ''}"


def lease_owner_alive(owner: str) -> bool | None:
    """Whether the process named by ``owner`` still lives: None when it is on another host."""
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    return _process_start_time(int(pid)) == started


def lease_held(action_id: int, owner: str) -> bool:
    """Whether a live worker may still be carrying out the action (call inside a transaction).

    On PostgreSQL: whether its advisory lock is held (trying it here takes it
    for this transaction, so the old worker cannot take it back before the
    action is queued again). On SQLite: whether its worker process lives; a
    worker on another host is assumed alive.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_xact_lock(%s, %s)", [LEASE_LOCK_CLASS, action_id]
            )
            return not cursor.fetchone()[0]
    return bool(owner) and lease_owner_alive(owner) is not False


@dataclass(frozen=True)
class Outcome:
    """Where a run stands after a resume or replay."""

    status: str
    gate: str = ""
    error: str = ""


class Lease(threading.Thread):
    """The heartbeat and the lock that say "this worker carries out this action"."""

    def __init__(self, action_id: int, task_id: str) -> None:
        super().__init__(name=f"lease-{action_id}", daemon=True)
        self.action_id = action_id
        self.task_id = task_id
        self.stopped = threading.Event()
        self.acquired = threading.Event()
        self.lost = threading.Event()
        self.locked = False

    def run(self) -> None:
        try:
            reconnecting(f"Lease of action {self.action_id}", self._lock, stop=self.stopped)
            self.acquired.set()
            while not self.stopped.wait(settings.RESUME_HEARTBEAT_INTERVAL):
                reconnecting(f"Heartbeat of action {self.action_id}", self._beat, stop=self.stopped)
        except DatabaseError:
            pass  # stopped while the database was away
        finally:
            self.acquired.set()
            if self.locked:
                # If the session is gone, its lock went with it.
                with contextlib.suppress(DatabaseError):
                    self._unlock()
            connection.close()

    def _lock(self) -> None:
        if connection.vendor != "postgresql":
            self.locked = True
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", [LEASE_LOCK_CLASS, self.action_id]
            )
            self.locked = bool(cursor.fetchone()[0])
        if not self.locked:
            self.lost.set()

    def _unlock(self) -> None:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s, %s)", [LEASE_LOCK_CLASS, self.action_id]
                )

    def _beat(self) -> None:
        if connection.vendor == "postgresql" and not self._holds_lock():
            self._lock()  # a new session after a lost one: take the lock again
        still_ours = RunAction.objects.filter(
            pk=self.action_id, task_id=self.task_id, state=RunAction.State.RUNNING
        ).update(heartbeat_at=timezone.now())
        if not still_ours:
            self.lost.set()

    def _holds_lock(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND classid = %s AND objid = %s AND granted",
                [LEASE_LOCK_CLASS, self.action_id],
            )
            return cursor.fetchone() is not None

    def stop(self) -> None:
        self.stopped.set()
        self.join()


@contextmanager
def _lease(action_id: int, task_id: str) -> Iterator[Lease]:
    lease = Lease(action_id, task_id)
    lease.start()
    lease.acquired.wait()
    try:
        yield lease
    finally:
        lease.stop()


def _fence(action_id: int, task_id: str) -> Callable[[], None]:
    """A check, made before each write NeuroCore makes, that the action is still this task's."""

    def check() -> None:
        if not RunAction.objects.filter(
            pk=action_id, task_id=task_id, state=RunAction.State.RUNNING
        ).exists():
            raise LeaseLost(f"Action {action_id} is no longer task {task_id}'s; stopping.")

    return check


def _close(action_id: int, task_id: str, **fields: Any) -> None:
    """Record how the action ended, if it is still this task's (retried while the
    database is away)."""
    reconnecting(
        f"Closing action {action_id}",
        lambda: RunAction.objects.filter(
            pk=action_id, task_id=task_id, state=RunAction.State.RUNNING
        ).update(finished_at=timezone.now(), **fields),
    )


def run_action_execute(*, action_id: int, task_id: str) -> RunAction | None:
    """Claim a queued action for ``task_id`` and carry it out through NeuroCore.

    Returns the action as it ended, or None when it is not this task's to run
    (done already, or queued again for another task). An action tried
    ``MAX_ATTEMPTS`` times ends ``interrupted`` without running again.
    """
    now = timezone.now()
    claimed = RunAction.objects.filter(
        pk=action_id, state=RunAction.State.QUEUED, task_id=task_id
    ).update(
        state=RunAction.State.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        lease_owner=process_identity(),
    )
    if not claimed:
        logger.info("Action %s was taken over or finished by another task; skipped.", action_id)
        return None
    action = RunAction.objects.select_related("decision").get(pk=action_id)
    if action.attempts > MAX_ATTEMPTS:
        _close(
            action_id,
            task_id,
            state=RunAction.State.INTERRUPTED,
            outcome_error=f"Its worker was lost {MAX_ATTEMPTS} times; an operator should look "
            "at the run before anything is tried again.",
        )
        action.refresh_from_db()
        return action
    execute = (
        _replay_through_neurocore
        if action.kind == RunAction.Kind.REPLAY
        else _resume_through_neurocore
    )
    with _lease(action_id, task_id) as lease:
        if lease.lost.is_set():
            logger.warning("Action %s is leased by another worker; not running it.", action_id)
            return None
        try:
            outcome = execute(action, _fence(action_id, task_id))
        except LeaseLost:
            logger.warning("Action %s was taken over by another worker; stopped.", action_id)
            return None
        except ProgressUnknown as unknown:
            logger.error("Action %s cannot safely be run again: %s", action_id, unknown)
            _close(
                action_id,
                task_id,
                state=RunAction.State.INTERRUPTED,
                outcome_error=f"{unknown} An operator should check the run.",
            )
            action.refresh_from_db()
            return action
        except DatabaseError as error:
            logger.error("Action %s lost the database mid-run: %s", action_id, error)
            _close(
                action_id,
                task_id,
                state=RunAction.State.INTERRUPTED,
                outcome_error=f"The database was lost while NeuroCore ran ({error}); whether "
                "the step in flight ran is unknown. An operator should check the run.",
            )
            action.refresh_from_db()
            return action
    _close(
        action_id,
        task_id,
        state=RunAction.State.DONE,
        outcome_status=outcome.status,
        outcome_gate=outcome.gate,
        outcome_error=outcome.error,
    )
    action.refresh_from_db()
    return action


def _outcome_of(run: Run, error: str = "") -> Outcome:
    suspension = run.suspension
    return Outcome(
        status=run.status, gate=suspension.gate if suspension else "", error=run.error or error
    )


def _resume_through_neurocore(action: RunAction, fence: Callable[[], None]) -> Outcome:
    run = Run.objects.filter(pk=action.run_id).first()
    if run is None:
        return Outcome(status="", error="The run no longer exists.")
    decision = action.decision
    if decision is not None:
        suspension = run.suspension
        if suspension is None or (suspension.gate, suspension.since) != (
            decision.gate,
            decision.suspended_at,
        ):  # an earlier attempt applied the decision already
            return _outcome_of(run)
    elif action.kind == RunAction.Kind.REOPEN and run.status != Run.Status.REJECTED:
        return _outcome_of(run)  # an earlier attempt reopened it already
    elif action.kind == RunAction.Kind.RESUME and not run.is_resumable:
        return Outcome(status=run.status, error=f"The run is {run.status}; nothing to resume.")

    resume_data = action.resume_data
    if action.attempts > 1 and _restore_progress(run, since=action.requested_at):
        resume_data = None  # the gate is among the steps done: it has its answer
    project = runtime.current_project()
    store = DjangoRunStore(fence=fence)
    error = ""
    try:
        resume_blueprint(
            run.run_id,
            project.registry,
            project.config,
            resume_data=resume_data,
            run_store=store,
        )
    except (LeaseLost, DatabaseError):
        raise
    except Exception as exc:  # a failing resume is an outcome; NeuroCore records it on the run
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, LeaseLost | DatabaseError):
            raise cause from exc
        logger.warning("Resume of run %s ended in an error: %s", run.run_id, exc)
        error = str(exc)
    finally:
        store.close()
    run.refresh_from_db()
    return _outcome_of(run, error)


def _restore_progress(run: Run, *, since: datetime) -> bool:
    """Before an attempt after a lost worker: make the steps it completed count as done.

    NeuroCore's async resume saves the run (its checkpoint) only when it ends,
    so a resume started again would run every step after the suspension again.
    The steps themselves are saved as they complete, each with a snapshot of the
    context after it: the last one becomes the run's checkpoint, and NeuroCore
    skips what it lists as completed. Returns whether there was progress to keep.
    Raises ``ProgressUnknown`` when steps completed but cannot be skipped safely
    (no snapshots kept, or a graph whose branches finish in any order).
    """
    done = Step.objects.filter(
        run_id=run.run_id, status=Step.Status.COMPLETED, started_at__gte=since
    ).order_by("-step_index")
    last = done.first()
    if last is None:
        return False
    if run.flow_type != "sequential" or not isinstance(last.context_snapshot, dict):
        raise ProgressUnknown(
            f"{done.count()} step(s) completed before the worker was lost, and NeuroCore "
            "kept no context to continue from (persist_step_snapshots off, or a graph "
            "flow): running the resume again would repeat them."
        )
    Run.objects.filter(pk=run.run_id).update(final_context=last.context_snapshot)
    return True


def _replay_through_neurocore(action: RunAction, fence: Callable[[], None]) -> Outcome:
    original = Run.objects.filter(pk=action.run_id).first()
    if original is None:
        return Outcome(status="", error="The run to replay no longer exists.")
    project = runtime.current_project()
    store = DjangoRunStore(fence=fence)
    error = ""
    try:
        # What `neurocore runs replay` does: the stored snapshot, the original inputs.
        execute_blueprint_tracked(
            Blueprint(**original.blueprint_snapshot),
            project.registry,
            project.config,
            initial_data=original.initial_data,
            run_store=store,
            run_id=action.result_run_id,
        )
    except (LeaseLost, DatabaseError):
        raise
    except Exception as exc:  # a failing replay is an outcome, recorded on the new run
        logger.warning("Replay of run %s failed: %s", original.run_id, exc)
        error = str(exc)
    finally:
        store.close()
    replay = Run.objects.filter(pk=action.result_run_id).first()
    if replay is None:
        return Outcome(status="", error=error or "The replay did not start.")
    return _outcome_of(replay, error)
