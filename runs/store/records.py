"""NeuroCore records ⇄ console rows: the one place they are converted."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flowengine import Checkpoint as FlowCheckpoint
from neurocore.persistence import RunRecord, RunStatus, StepRecord, StepStatus

from runs.models import Run, Step, approval_gates

# What NeuroCore's ApprovalSkill raises on a rejection with ``require: true``;
# NeuroCore then records the run ``failed`` with this error.
REJECTION_ERROR = "Run rejected at approval gate '"


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

    PostgreSQL text cannot hold NUL and no database's text a lone surrogate, so
    each becomes U+FFFD on every database alike (NeuroCore's messages never
    contain one on purpose; its own store fails on a surrogate).
    """
    if not value or (value.isprintable() and "\x00" not in value):
        return value
    return UNSTORABLE_TEXT.sub("\ufffd", value)


UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


def identifier(value: str, field: str) -> str:
    """An identifier (run id, names) checked for what no database should hold.

    Raises ``ValueError`` naming the field for an empty run id, a NUL character or
    a lone surrogate (no database's text can hold either).
    """
    if field == "run_id" and not value:
        raise ValueError("run_id must not be empty: pages, links and emails name a run by it.")
    if "\x00" in value:
        raise ValueError(f"{field} must not contain a NUL character: {value!r}")
    if UNSTORABLE_TEXT.search(value):
        raise ValueError(f"{field} must not contain a lone surrogate: {value!r}")
    return value


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
