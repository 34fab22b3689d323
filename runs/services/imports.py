"""Importing runs in bulk from NeuroCore ``runs.db`` files and ``runs export`` files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, transaction

from runs.models import Decision, Run
from runs.store import UPSERT_CHECKPOINT, UPSERT_RUN, UPSERT_STEP, checkpoint_values
from runs.transfer import RunBundle, RunsFile


@dataclass
class ImportSummary:
    """What an import did (or, dry, would do)."""

    imported: int = 0
    updated: int = 0
    skipped: int = 0
    steps: int = 0
    checkpoints: int = 0
    decisions: int = 0
    held: int = 0  # runs waiting at a gate here that the file would take past it


def runs_import(
    *,
    runs_file: RunsFile,
    dry_run: bool,
    batch_size: int = 1000,
    on_batch: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import runs, steps, checkpoints (and exported decisions) from a file, idempotently.

    A run not here is imported; one here with another ``updated_at`` is updated
    the way NeuroCore's ``save_run`` updates (its outcome, not its identity) and
    its steps upserted; one here unchanged is skipped. Everything happens in one
    transaction: a malformed record anywhere leaves the console unchanged.
    """
    summary = ImportSummary()
    with transaction.atomic():
        for batch in runs_file.batches(batch_size):
            _import_batch(batch, summary, dry_run=dry_run)
            if on_batch is not None:
                on_batch(len(batch))
        checkpoints = [checkpoint_values(c) for c in runs_file.checkpoints()]
        summary.checkpoints = len(checkpoints)
        if not dry_run:
            UPSERT_CHECKPOINT.execute_many(checkpoints, DEFAULT_DB_ALIAS)
    if not dry_run and connection.vendor == "postgresql":
        # Fresh statistics after a bulk load, or the planner guesses badly.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE runs_run, runs_step")
        run_tallies_compact()
    return summary


def run_tallies_compact() -> None:
    """Rewrite the run tallies without the dead row versions a bulk load leaves.

    On PostgreSQL each run written in one transaction leaves a dead version of
    its tally row, which every count then reads past (a million-run load: 50 MB
    for 1,830 rows, 15 ms per count); single writes are pruned as they go.
    SQLite updates in place. A brief exclusive lock on the small table.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("CLUSTER runs_runtally USING runs_runtally_pkey")


def _import_batch(batch: list[RunBundle], summary: ImportSummary, *, dry_run: bool) -> None:
    rows = {bundle.run["run_id"]: (bundle, bundle.run) for bundle in batch}
    existing = dict(Run.objects.filter(pk__in=rows).values_list("run_id", "updated_at"))
    undecided = _waiting_undecided(list(existing))
    changed: list[tuple[RunBundle, dict[str, Any]]] = []
    for run_id, (bundle, row) in rows.items():
        if run_id not in existing:
            summary.imported += 1
        elif existing[run_id] == row["updated_at"]:
            summary.skipped += 1
            continue
        elif run_id in undecided and not _decides(bundle, undecided[run_id]):
            summary.held += 1  # the one rule of approvals: only a decision passes a gate
            continue
        else:
            summary.updated += 1
        changed.append((bundle, row))
    # Keyed, so a step repeated in an export is written once (its last version).
    steps = list(
        {
            (step["run_id"], step["step_index"]): step
            for bundle, _ in changed
            for step in bundle.steps
        }.values()
    )
    decisions = [
        # Each counts for the person named, as known where it was exported (a user id
        # of another console names nobody here).
        Decision(run_id=bundle.run["run_id"], seat=_imported_seat(decision), **decision)
        for bundle, _ in changed
        for decision in bundle.decisions
    ]
    summary.steps += len(steps)
    if dry_run:
        summary.decisions += len(decisions)
        return
    UPSERT_RUN.execute_many([row for _, row in changed], DEFAULT_DB_ALIAS)
    UPSERT_STEP.execute_many(steps, DEFAULT_DB_ALIAS)
    if decisions:
        before = Decision.objects.count()
        Decision.objects.bulk_create(decisions, ignore_conflicts=True)
        summary.decisions += Decision.objects.count() - before


def _imported_seat(decision: dict[str, Any]) -> str:
    """Whom an imported decision counts for: the person named in the file."""
    person = decision.get("on_behalf_of_identity") or decision.get("decided_by_identity")
    return f"imported:{person or 'unknown'}"[:200]


def _waiting_undecided(run_ids: list[str]) -> dict[str, tuple[str | None, Any]]:
    """Of these runs, those waiting here at an approval gate nobody decided: their
    (gate, since)."""
    waiting = {
        run_id: (gate, since)
        for run_id, gate, since in Run.objects.filter(
            pk__in=run_ids, status=Run.Status.SUSPENDED, awaits_decision=True
        ).values_list("run_id", "suspended_at_node", "updated_at")
    }
    decided = set(
        Decision.objects.filter(run_id__in=list(waiting), settles=True).values_list(
            "run_id", "gate", "suspended_at"
        )
    )
    return {
        run_id: suspension
        for run_id, suspension in waiting.items()
        if (run_id, *suspension) not in decided
    }


def _decides(bundle: RunBundle, suspension: tuple[str | None, Any]) -> bool:
    """Whether the file carries the decision on that suspension (an export of ours)."""
    gate, since = suspension
    return any(
        decision.get("gate") == gate
        and decision.get("suspended_at") == since
        and decision.get("settles", True)
        for decision in bundle.decisions
    )
