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
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections
from flowengine import Checkpoint as FlowCheckpoint
from flowengine import CheckpointStore
from neurocore.persistence import RunRecord, RunStatus, RunStore, StepRecord, StepStatus

from runs.models import Checkpoint, Run, Step

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
    ``using`` to write to another configured database alias.
    """

    def __init__(self, *, using: str = DEFAULT_DB_ALIAS) -> None:
        self._using = using
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
            return work(*args)
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
        return helper.submit(work, *args).result()

    def close(self) -> None:
        """Close the helper thread's database connection and stop the thread."""
        with self._helper_lock:
            stop, self._helper, self._stop_helper = self._stop_helper, None, None
        if stop is not None:
            stop()

    # -- runs ----------------------------------------------------------------
    def save_run(self, run: RunRecord) -> str:
        row = Run(
            run_id=identifier(run.run_id, "run_id"),
            blueprint_name=identifier(run.blueprint_name, "blueprint_name"),
            blueprint_version=identifier(run.blueprint_version, "blueprint_version"),
            blueprint_path=free_text(run.blueprint_path),
            blueprint_snapshot=run.blueprint_snapshot,
            flow_type=identifier(run.flow_type, "flow_type"),
            status=str(run.status),
            initial_data=run.initial_data,
            final_context=run.final_context,
            error=free_text(run.error),
            suspended_at_node=free_text(run.suspended_at_node),
            suspension_reason=free_text(run.suspension_reason),
            checkpoint_id=run.checkpoint_id and identifier(run.checkpoint_id, "checkpoint_id"),
            created_at=parse_timestamp(run.created_at),
            updated_at=parse_timestamp(run.updated_at),
            duration_ms=run.duration_ms,
        )
        self._run(self._upsert, Run, row, ["run_id"], RUN_UPDATE_FIELDS)
        return run.run_id

    def load_run(self, run_id: str) -> RunRecord | None:
        row = self._run(self._load_run_row, run_id)
        return _run_record(row) if row is not None else None

    def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        blueprint: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        rows = self._run(self._list_run_rows, status, blueprint, limit)
        return [_run_record(row) for row in rows]

    def delete_run(self, run_id: str) -> None:
        # Steps go with the run through the database's ON DELETE CASCADE.
        self._run(self._delete_run_row, run_id)

    # -- steps ---------------------------------------------------------------
    def save_step(self, step: StepRecord) -> None:
        row = Step(
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
        try:
            self._run(self._upsert, Step, row, ["run", "step_index"], STEP_UPDATE_FIELDS)
        except IntegrityError as exc:
            if not self._run(self._run_exists, step.run_id):
                raise UnknownRunError(
                    f"Cannot save step {step.step_index} of run {step.run_id!r}: "
                    "no such run. Save the run first."
                ) from exc
            raise

    def load_steps(self, run_id: str) -> list[StepRecord]:
        rows = self._run(self._load_step_rows, run_id)
        return [_step_record(row) for row in rows]

    # -- ORM work (runs on the calling or the helper thread) -------------------
    def _upsert(
        self,
        model: type[Run] | type[Step] | type[Checkpoint],
        row: Run | Step | Checkpoint,
        unique_fields: list[str],
        update_fields: list[str],
    ) -> None:
        # One INSERT ... ON CONFLICT DO UPDATE statement, atomic on its own.
        model.objects.using(self._using).bulk_create(
            [row],
            update_conflicts=True,
            unique_fields=unique_fields,
            update_fields=update_fields,
        )

    def _load_run_row(self, run_id: str) -> Run | None:
        return Run.objects.using(self._using).filter(run_id=run_id).first()

    def _run_exists(self, run_id: str) -> bool:
        return Run.objects.using(self._using).filter(run_id=run_id).exists()

    def _list_run_rows(
        self, status: RunStatus | None, blueprint: str | None, limit: int
    ) -> list[Run]:
        runs = Run.objects.using(self._using).order_by("-created_at")
        if status is not None:
            runs = runs.filter(status=str(status))
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
        row = Checkpoint(
            checkpoint_id=checkpoint.checkpoint_id,
            flow_config=checkpoint.flow_config,
            context=checkpoint.context,
            created_at=parse_timestamp(checkpoint.created_at),
        )
        store = self._run_store
        store._run(store._upsert, Checkpoint, row, ["checkpoint_id"], CHECKPOINT_UPDATE_FIELDS)
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
        self._run_store._run(self._delete_row, checkpoint_id)

    def _load_row(self, checkpoint_id: str) -> Checkpoint | None:
        return Checkpoint.objects.using(self._run_store._using).filter(pk=checkpoint_id).first()

    def _delete_row(self, checkpoint_id: str) -> None:
        Checkpoint.objects.using(self._run_store._using).filter(pk=checkpoint_id).delete()


def _run_record(row: Run) -> RunRecord:
    return RunRecord(
        run_id=row.run_id,
        blueprint_name=row.blueprint_name,
        blueprint_version=row.blueprint_version,
        blueprint_path=row.blueprint_path,
        blueprint_snapshot=row.blueprint_snapshot,
        flow_type=row.flow_type,
        status=RunStatus(row.status),
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


def _step_record(row: Step) -> StepRecord:
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
