"""NeuroCore's ``RunStore`` on the Django ORM.

``DjangoRunStore`` behaves exactly like NeuroCore's ``SQLiteRunStore``: the same
upserts (and the same fields an update changes), newest-first listing, cascade
delete, and JSON stored the way ``json.dumps(value, default=str)`` stores it. It
is the only place where ORM rows and NeuroCore's pydantic records meet.

It works wherever NeuroCore calls it:

- from plain threads (the DAG executor, agents' own threads): each thread uses
  its own Django connection, as Django always does;
- from inside a running event loop (NeuroCore's async path, used by every
  blueprint with an approval gate), where Django refuses synchronous queries:
  the work is handed to a helper thread owned by the store and waited for.
  ``close()`` closes that thread's database connection and stops it.

Every write is one statement in its own transaction unless the caller already
holds one, so it is committed (and on SQLite synced) when the call returns.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    models,
)
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from flowengine import Checkpoint as FlowCheckpoint
from flowengine import CheckpointStore
from neurocore.persistence import RunRecord, RunStatus, RunStore, StepRecord, StepStatus

from runs.models import Checkpoint, Decision, Run, Step, approval_gates

logger = logging.getLogger(__name__)

# How long a store keeps retrying a write while its database is unreachable
# (a restart, a failover) before NeuroCore sees the error.
RECONNECT_WITHIN_SECONDS = 60

# What NeuroCore's ApprovalSkill raises on a rejection with ``require: true``;
# NeuroCore then records the run ``failed`` with this error.
REJECTION_ERROR = "Run rejected at approval gate '"

# The fields SQLiteRunStore's ``ON CONFLICT(run_id) DO UPDATE`` changes; the
# identity of a run (blueprint, inputs, creation time) is written once.
RUN_UPDATE_FIELDS = [
    "status",
    "final_context",
    "error",
    "suspended_at_node",
    "suspension_reason",
    "checkpoint_id",
    "updated_at",
    "duration_ms",
    "awaits_decision",
]
STEP_UPDATE_FIELDS = [
    "component",
    "skill_type",
    "status",
    "started_at",
    "duration_ms",
    "error",
    "output_keys",
    "context_snapshot",
]
CHECKPOINT_UPDATE_FIELDS = ["flow_config", "context", "created_at"]


class PreparedUpsert:
    """``INSERT ... ON CONFLICT DO UPDATE`` of a model, compiled once per row count.

    ``bulk_create(update_conflicts=True)`` writes the same statement but, per
    call, builds a model instance, compiles the SQL (three quarters of the
    call's Python time), wraps it in BEGIN/COMMIT and, for models with an auto
    id, reads the id back. A single statement is atomic on its own: in
    autocommit it is committed when it returns; inside a caller's transaction
    it joins it. The SQL comes from Django's insert compiler. JSON and
    datetime values go through their field's ``get_db_prep_save`` as the
    compiler does; the rest are the plain ``str``/``int``/``float``/``None``
    the store takes from validated records, which every driver binds as is.
    """

    PREPARED_FIELD_TYPES = (models.JSONField, models.DateTimeField)
    ROWS_PER_STATEMENT = 500

    def __init__(
        self, model: type[Model], *, unique_fields: list[str], update_fields: list[str]
    ) -> None:
        opts = model._meta
        self.model = model
        self.fields: list[Field] = [
            f for f in opts.concrete_fields if not (f.primary_key and f.db_returning)
        ]
        self.unique_fields = [opts.get_field(name) for name in unique_fields]
        self.update_fields = [opts.get_field(name) for name in update_fields]
        self._preparers = [
            (f.attname, f.get_db_prep_save if isinstance(f, self.PREPARED_FIELD_TYPES) else None)
            for f in self.fields
        ]
        self._sql: dict[tuple[str, int], tuple[str, bool]] = {}

    def compile(self, rows: list[dict[str, Any]], using: str) -> tuple[str, list[Any]]:
        """Django's SQL and parameters for upserting ``rows`` in one statement."""
        query = InsertQuery(
            self.model,
            on_conflict=OnConflict.UPDATE,
            update_fields=self.update_fields,
            unique_fields=self.unique_fields,
        )
        query.insert_values(self.fields, [self.model(**values) for values in rows])
        ((sql, params),) = query.get_compiler(using=using).as_sql()
        return sql, list(params)

    def params(self, values: dict[str, Any], connection: BaseDatabaseWrapper) -> list[Any]:
        """One row's parameters, in the compiled statement's order."""
        return [
            prepare(values[attname], connection) if prepare else values[attname]
            for attname, prepare in self._preparers
        ]

    def execute(self, values: dict[str, Any], using: str) -> None:
        """Upsert one row (keyed by attribute name) in one statement."""
        self._execute([values], using)

    def execute_many(self, rows: list[dict[str, Any]], using: str) -> None:
        """Upsert many rows, ``ROWS_PER_STATEMENT`` to a statement (one round trip each).

        A key must not repeat within ``rows``: PostgreSQL refuses to update one
        row twice in a statement.
        """
        for start in range(0, len(rows), self.ROWS_PER_STATEMENT):
            self._execute(rows[start : start + self.ROWS_PER_STATEMENT], using)

    def statement_params(
        self, rows: list[dict[str, Any]], connection: BaseDatabaseWrapper, *, by_column: bool
    ) -> list[Any]:
        """All rows' parameters as the statement takes them: row after row, or (for
        PostgreSQL's ``INSERT ... SELECT * FROM UNNEST(col1[], col2[], …)``, which
        Django compiles for several rows) one array per column."""
        prepared = [self.params(row, connection) for row in rows]
        if by_column:
            return [list(column) for column in zip(*prepared, strict=True)]
        return [param for row in prepared for param in row]

    def _execute(self, rows: list[dict[str, Any]], using: str) -> None:
        connection = connections[using]
        key = (using, len(rows))
        compiled = self._sql.get(key)
        if compiled is None:
            sql, params = self.compile(rows, using)
            by_column = len(rows) > 1 and len(params) == len(self.fields)
            self._sql[key] = (sql, by_column)
        else:
            sql, by_column = compiled
            params = self.statement_params(rows, connection, by_column=by_column)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


UPSERT_RUN = PreparedUpsert(Run, unique_fields=["run_id"], update_fields=RUN_UPDATE_FIELDS)
UPSERT_STEP = PreparedUpsert(
    Step, unique_fields=["run", "step_index"], update_fields=STEP_UPDATE_FIELDS
)
UPSERT_CHECKPOINT = PreparedUpsert(
    Checkpoint, unique_fields=["checkpoint_id"], update_fields=CHECKPOINT_UPDATE_FIELDS
)


class GateNotDecided(PermissionError):
    """A write would take a run past an approval gate nobody decided in the console."""


class UnknownRunError(LookupError):
    """A step was saved for a run that does not exist."""


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO-8601 timestamp as NeuroCore writes it; naive means UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Not an ISO-8601 timestamp: {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    """Format a stored instant the way NeuroCore writes it (``isoformat`` in UTC)."""
    return value.astimezone(UTC).isoformat()


def free_text(value: str | None) -> str | None:
    """Free text (errors, gate messages) as every database can store it.

    PostgreSQL text cannot hold NUL, so it becomes U+FFFD on every database
    alike; NeuroCore's messages never contain one on purpose.
    """
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


def identifier(value: str, field: str) -> str:
    """An identifier (run id, names) checked for what no database should hold."""
    if "\x00" in value:
        raise ValueError(f"{field} must not contain a NUL character: {value!r}")
    return value


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
        without a ``Decision`` on that suspension: the one rule of approvals holds for
        every writer, agents included."""
        row = run_values(run)
        self._write(self._save_run_row, row)
        return run.run_id

    def load_run(self, run_id: str) -> RunRecord | None:
        row = self._run(self._load_run_row, run_id)
        return run_record(row) if row is not None else None

    def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        blueprint: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        rows = self._run(self._list_run_rows, status, blueprint, limit)
        return [run_record(row) for row in rows]

    def delete_run(self, run_id: str) -> None:
        # Steps go with the run through the database's ON DELETE CASCADE.
        self._write(self._delete_run_row, run_id)

    # -- steps ---------------------------------------------------------------
    def save_step(self, step: StepRecord) -> None:
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
                .filter(run_id=row["run_id"], gate=gate, suspended_at=since)
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
        row = checkpoint_values(checkpoint)
        store = self._run_store
        store._write(UPSERT_CHECKPOINT.execute, row, store._using)
        return checkpoint.checkpoint_id

    def load(self, checkpoint_id: str) -> FlowCheckpoint | None:
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
        self._run_store._write(self._delete_row, checkpoint_id)

    def _load_row(self, checkpoint_id: str) -> Checkpoint | None:
        return Checkpoint.objects.using(self._run_store._using).filter(pk=checkpoint_id).first()

    def _delete_row(self, checkpoint_id: str) -> None:
        Checkpoint.objects.using(self._run_store._using).filter(pk=checkpoint_id).delete()


def stored_status(status: RunStatus, error: str | None) -> str:
    """The console's status for NeuroCore's: a run failed by a rejection is ``rejected``."""
    if status == RunStatus.FAILED and error and error.startswith(REJECTION_ERROR):
        return Run.Status.REJECTED
    return str(status)


def stored_statuses(status: RunStatus) -> list[str]:
    """The console's statuses NeuroCore reads as ``status``."""
    if status == RunStatus.FAILED:
        return [Run.Status.FAILED, Run.Status.REJECTED]
    return [str(status)]


def neurocore_status(status: str) -> RunStatus:
    """NeuroCore's status for the console's (a rejected run is ``failed`` to NeuroCore)."""
    return RunStatus.FAILED if status == Run.Status.REJECTED else RunStatus(status)


def run_values(run: RunRecord) -> dict[str, Any]:
    """A ``Run`` row (by attribute name) from NeuroCore's record."""
    return dict(
        run_id=identifier(run.run_id, "run_id"),
        blueprint_name=identifier(run.blueprint_name, "blueprint_name"),
        blueprint_version=identifier(run.blueprint_version, "blueprint_version"),
        blueprint_path=free_text(run.blueprint_path),
        blueprint_snapshot=run.blueprint_snapshot,
        flow_type=identifier(run.flow_type, "flow_type"),
        status=stored_status(run.status, run.error),
        initial_data=run.initial_data,
        final_context=run.final_context,
        error=free_text(run.error),
        suspended_at_node=free_text(run.suspended_at_node),
        suspension_reason=free_text(run.suspension_reason),
        checkpoint_id=run.checkpoint_id and identifier(run.checkpoint_id, "checkpoint_id"),
        created_at=parse_timestamp(run.created_at),
        updated_at=parse_timestamp(run.updated_at),
        duration_ms=run.duration_ms,
        awaits_decision=run.status == RunStatus.SUSPENDED
        and run.suspended_at_node in approval_gates(run.blueprint_snapshot),
    )


def step_values(step: StepRecord) -> dict[str, Any]:
    """A ``Step`` row (by attribute name) from NeuroCore's record."""
    return dict(
        run_id=identifier(step.run_id, "run_id"),
        step_index=step.step_index,
        component=free_text(step.component),
        skill_type=free_text(step.skill_type),
        status=str(step.status),
        started_at=parse_timestamp(step.started_at),
        duration_ms=step.duration_ms,
        error=free_text(step.error),
        output_keys=step.output_keys,
        context_snapshot=step.context_snapshot,
    )


def checkpoint_values(checkpoint: FlowCheckpoint) -> dict[str, Any]:
    """A ``Checkpoint`` row (by attribute name) from flowengine's checkpoint."""
    return dict(
        checkpoint_id=identifier(checkpoint.checkpoint_id, "checkpoint_id"),
        flow_config=checkpoint.flow_config,
        context=checkpoint.context,
        created_at=parse_timestamp(checkpoint.created_at),
    )


def run_record(row: Run) -> RunRecord:
    return RunRecord(
        run_id=row.run_id,
        blueprint_name=row.blueprint_name,
        blueprint_version=row.blueprint_version,
        blueprint_path=row.blueprint_path,
        blueprint_snapshot=row.blueprint_snapshot,
        flow_type=row.flow_type,
        status=neurocore_status(row.status),
        initial_data=row.initial_data,
        final_context=row.final_context,
        error=row.error,
        suspended_at_node=row.suspended_at_node,
        suspension_reason=row.suspension_reason,
        checkpoint_id=row.checkpoint_id,
        created_at=format_timestamp(row.created_at),
        updated_at=format_timestamp(row.updated_at),
        duration_ms=row.duration_ms,
    )


def step_record(row: Step) -> StepRecord:
    return StepRecord(
        run_id=row.run_id,
        step_index=row.step_index,
        component=row.component,
        skill_type=row.skill_type,
        status=StepStatus(row.status),
        started_at=format_timestamp(row.started_at),
        duration_ms=row.duration_ms,
        error=row.error,
        output_keys=row.output_keys,
        context_snapshot=row.context_snapshot,
    )
