"""``DjangoRunStore`` and its flowengine checkpoint store."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
)
from flowengine import Checkpoint as FlowCheckpoint
from flowengine import CheckpointStore
from neurocore.persistence import RunRecord, RunStatus, RunStore, StepRecord

from runs.models import Checkpoint, Decision, Run, Step
from runs.store.records import (
    checkpoint_values,
    format_timestamp,
    run_record,
    run_values,
    step_record,
    step_values,
    stored_statuses,
)
from runs.store.upserts import UPSERT_CHECKPOINT, UPSERT_RUN, UPSERT_STEP

logger = logging.getLogger(__name__)

# How long a store keeps retrying a write while its database is unreachable
# (a restart, a failover) before NeuroCore sees the error.
RECONNECT_WITHIN_SECONDS = 60


class GateNotDecided(PermissionError):
    """A write would take a run past an approval gate nobody decided in the console."""


class UnknownRunError(LookupError):
    """A step was saved for a run that does not exist."""


RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between tries; then every 5 s


def connection_lost(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether this thread's connection is gone (server restarted, session terminated)."""
    wrapper = connections[using]
    return wrapper.connection is None or not wrapper.is_usable()


def reconnecting[T](
    what: str,
    work: Callable[[], T],
    *,
    using: str = DEFAULT_DB_ALIAS,
    give_up_after: float | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Run database ``work``; while the connection is lost, open it again and retry.

    Only for idempotent work outside a transaction. Another database error
    (a constraint, a bad query) is raised at once, as is the loss itself after
    ``give_up_after`` seconds or once ``stop`` is set. Logs once per outage.
    """
    started = time.monotonic()
    for attempt in itertools.count():
        try:
            return work()
        except (OperationalError, InterfaceError) as error:
            if connections[using].in_atomic_block or not connection_lost(using):
                raise
            connections[using].close()
            if give_up_after is not None and time.monotonic() - started > give_up_after:
                raise
            if attempt == 0:
                logger.warning("%s: the database is unreachable (%s); retrying.", what, error)
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            if stop is not None and stop.wait(delay):
                raise
            if stop is None:
                time.sleep(delay)
    raise AssertionError("unreachable")


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _stop_helper(executor: ThreadPoolExecutor) -> None:
    """Close the helper thread's database connections, then stop the thread."""
    executor.submit(connections.close_all).result()
    executor.shutdown(wait=True)


class DjangoRunStore(RunStore):
    """A NeuroCore ``RunStore`` backed by the console's database.

    ``DjangoRunStore()`` needs no arguments once Django is set up. Pass
    ``using`` to write to another configured database alias. ``fence``, when
    given, is called before every write and raises to stop it (the worker's
    check that it still holds the run's action). A lost connection is opened
    again and the call retried for up to ``RECONNECT_WITHIN_SECONDS``: every
    write is an idempotent upsert.
    """

    def __init__(
        self, *, using: str = DEFAULT_DB_ALIAS, fence: Callable[[], None] | None = None
    ) -> None:
        self._using = using
        self._fence = fence
        self._helper: ThreadPoolExecutor | None = None
        self._stop_helper: weakref.finalize | None = None
        self._helper_lock = threading.Lock()
        # neurocore.persistence.checkpoint_store_for() picks this up, so
        # flowengine's sync suspend/resume keeps checkpoints in the database.
        self._checkpoint_store = DjangoCheckpointStore(self)

    # -- threading -----------------------------------------------------------
    def _run[T](self, work: Callable[..., T], *args: Any) -> T:
        """Run ORM work here, or on the helper thread when inside an event loop."""
        if not _in_event_loop():
            return self._reconnecting(work, *args)
        with self._helper_lock:
            if self._helper is None:
                self._helper = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="django-run-store"
                )
                # Stop it when the store is closed or garbage-collected; at
                # interpreter exit the process takes its connection with it.
                self._stop_helper = weakref.finalize(self, _stop_helper, self._helper)
                self._stop_helper.atexit = False
            helper = self._helper
        return helper.submit(self._reconnecting, work, *args).result()

    def _reconnecting[T](self, work: Callable[..., T], *args: Any) -> T:
        return reconnecting(
            "Run store",
            lambda: work(*args),
            using=self._using,
            give_up_after=RECONNECT_WITHIN_SECONDS,
        )

    def _write[T](self, work: Callable[..., T], *args: Any) -> T:
        """Run a write, after the fence (if any) lets it through."""
        if self._fence is None:
            return self._run(work, *args)
        fence = self._fence

        def fenced() -> T:
            fence()
            return work(*args)

        return self._run(fenced)

    def close(self) -> None:
        """Close the helper thread's database connection and stop the thread."""
        with self._helper_lock:
            stop, self._helper, self._stop_helper = self._stop_helper, None, None
        if stop is not None:
            stop()

    # -- runs ----------------------------------------------------------------
    def save_run(self, run: RunRecord) -> str:
        """Upsert the run (as ``SQLiteRunStore``). Raises ``GateNotDecided`` when the run
        waits at an approval gate here and this write would take it past the gate
        without a ``Decision`` settling that suspension: the one rule of approvals holds for
        every writer, agents included."""
        row = run_values(run)
        self._write(self._save_run_row, row)
        return run.run_id

    def load_run(self, run_id: str) -> RunRecord | None:
        """The run ``run_id`` as NeuroCore's record (a rejected run reads ``failed``), or None."""
        row = self._run(self._load_run_row, run_id)
        return run_record(row) if row is not None else None

    def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        blueprint: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Runs newest first (``created_at``), optionally of one status or blueprint; at most
        ``limit`` (negative: all), as ``SQLiteRunStore`` lists them."""
        rows = self._run(self._list_run_rows, status, blueprint, limit)
        return [run_record(row) for row in rows]

    def delete_run(self, run_id: str) -> None:
        """Delete the run and its steps (a run that does not exist is not an error)."""
        # Steps go with the run through the database's ON DELETE CASCADE.
        self._write(self._delete_run_row, run_id)

    # -- steps ---------------------------------------------------------------
    def save_step(self, step: StepRecord) -> None:
        """Upsert the step by ``(run_id, step_index)``. Raises ``UnknownRunError`` when
        its run was never saved."""
        row = step_values(step)
        try:
            self._write(UPSERT_STEP.execute, row, self._using)
        except IntegrityError as exc:
            if not self._run(self._run_exists, step.run_id):
                raise UnknownRunError(
                    f"Cannot save step {step.step_index} of run {step.run_id!r}: "
                    "no such run. Save the run first."
                ) from exc
            raise

    def load_steps(self, run_id: str) -> list[StepRecord]:
        """The run's steps in order (``step_index``); empty for an unknown run."""
        rows = self._run(self._load_step_rows, run_id)
        return [step_record(row) for row in rows]

    # -- ORM work (runs on the calling or the helper thread) -------------------
    def _save_run_row(self, row: dict[str, Any]) -> None:
        waiting = (
            Run.objects.using(self._using)
            .filter(pk=row["run_id"], awaits_decision=True, status=Run.Status.SUSPENDED)
            .values_list("suspended_at_node", "updated_at")
            .first()
        )
        if waiting is not None:
            gate, since = waiting
            same_suspension = (row["status"], row["suspended_at_node"], row["updated_at"]) == (
                Run.Status.SUSPENDED,
                gate,
                since,
            )
            decided = (
                Decision.objects.using(self._using)
                # Settled: a quorum's first approvals do not open the gate.
                .filter(run_id=row["run_id"], gate=gate, suspended_at=since, settles=True)
                .exists()
            )
            if not (same_suspension or decided):
                raise GateNotDecided(
                    f"Run {row['run_id']} waits for a decision at the approval gate "
                    f"'{gate}'. Only a decision recorded in the console (its review page, "
                    "or manage.py runs approve) passes it. Nothing was saved."
                )
        UPSERT_RUN.execute(row, self._using)

    def _load_run_row(self, run_id: str) -> Run | None:
        return Run.objects.using(self._using).filter(run_id=run_id).first()

    def _run_exists(self, run_id: str) -> bool:
        return Run.objects.using(self._using).filter(run_id=run_id).exists()

    def _list_run_rows(
        self, status: RunStatus | None, blueprint: str | None, limit: int
    ) -> list[Run]:
        runs = Run.objects.using(self._using).order_by("-created_at")
        if status is not None:
            runs = runs.filter(status__in=stored_statuses(status))
        if blueprint is not None:
            runs = runs.filter(blueprint_name=blueprint)
        # A negative limit means no limit, as SQLite's LIMIT -1 does.
        return list(runs[:limit] if limit >= 0 else runs)

    def _delete_run_row(self, run_id: str) -> None:
        Run.objects.using(self._using).filter(run_id=run_id).delete()

    def _load_step_rows(self, run_id: str) -> list[Step]:
        return list(Step.objects.using(self._using).filter(run_id=run_id).order_by("step_index"))


class DjangoCheckpointStore(CheckpointStore):
    """flowengine's ``CheckpointStore`` in the console's database.

    Shares its run store's threading rules, so it is safe inside an event loop.
    """

    def __init__(self, run_store: DjangoRunStore) -> None:
        self._run_store = run_store

    def save(self, checkpoint: FlowCheckpoint) -> str:
        """Upsert a flowengine checkpoint; returns its id."""
        row = checkpoint_values(checkpoint)
        store = self._run_store
        store._write(UPSERT_CHECKPOINT.execute, row, store._using)
        return checkpoint.checkpoint_id

    def load(self, checkpoint_id: str) -> FlowCheckpoint | None:
        """The checkpoint, or None."""
        row = self._run_store._run(self._load_row, checkpoint_id)
        if row is None:
            return None
        return FlowCheckpoint(
            checkpoint_id=row.checkpoint_id,
            flow_config=row.flow_config,
            context=row.context,
            created_at=format_timestamp(row.created_at),
        )

    def delete(self, checkpoint_id: str) -> None:
        """Delete the checkpoint (flowengine does on resume)."""
        self._run_store._write(self._delete_row, checkpoint_id)

    def _load_row(self, checkpoint_id: str) -> Checkpoint | None:
        return Checkpoint.objects.using(self._run_store._using).filter(pk=checkpoint_id).first()

    def _delete_row(self, checkpoint_id: str) -> None:
        Checkpoint.objects.using(self._run_store._using).filter(pk=checkpoint_id).delete()
