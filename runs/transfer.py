"""Runs in and out of the console: NeuroCore ``runs.db`` files and JSON Lines.

Readers turn a file into batches of NeuroCore records (rows of a ``runs.db``
become ``RunRecord``s, as ``SQLiteRunStore`` reads them back); the export writes
one JSON object per run: ``{"run": …, "steps": […], "decisions": […]}``, the
shape ``neurocore runs inspect --json`` prints, plus the run's decisions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowengine import Checkpoint as FlowCheckpoint
from neurocore.persistence import RunRecord, StepRecord, StepStatus
from pydantic import ValidationError

from runs.presentation import displayable
from runs.store import free_text, identifier, parse_timestamp, run_values, step_values

SQLITE_HEADER = b"SQLite format 3\x00"
STEP_STATUSES = frozenset(status.value for status in StepStatus)
RUNS_DB_TABLES = {
    "runs": {"run_id", "blueprint_name", "status", "created_at", "updated_at"},
    "steps": {"run_id", "step_index", "component", "status", "started_at"},
}
DECISION_FIELDS = [
    "gate",
    "suspended_at",
    "approved",
    "note",
    "decided_by_identity",
    "decided_at",
    "source",
    "client_address",
    "gate_message",
    "evidence_digest",
    "on_behalf_of_identity",
    "answers",
    "policy",
    "settles",
]


class UnreadableFile(ValueError):
    """The file is not a NeuroCore runs database nor a console export, or is corrupt."""


@dataclass
class RunBundle:
    """One run with its steps (and, from an export, its decisions), as console rows."""

    run: dict[str, Any]
    steps: list[dict[str, Any]]
    decisions: list[dict[str, Any]] = field(default_factory=list)


class RunsFile:
    """A file to import from: its runs in batches, and its checkpoints."""

    total: int

    def batches(self, size: int) -> Iterator[list[RunBundle]]:
        raise NotImplementedError

    def checkpoints(self) -> Iterator[FlowCheckpoint]:
        return iter(())

    def close(self) -> None:
        """Release the file."""


def open_runs_file(path: Path) -> RunsFile:
    """Open a NeuroCore ``runs.db`` or a console JSON Lines export, by its content."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise UnreadableFile(f"Cannot read {path}: {error.strerror or error}.") from None
    if head == SQLITE_HEADER:
        return RunsDatabase(path)
    if head.lstrip()[:1] == b"{" or not head:
        return JsonLinesExport(path)
    raise UnreadableFile(
        f"{path} is not a NeuroCore runs database (runs.db) nor a console export (JSON Lines)."
    )


class RunsDatabase(RunsFile):
    """A ``runs.db`` written by NeuroCore's ``SQLiteRunStore``, read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            self.connection.row_factory = sqlite3.Row
            self._check_schema()
            self.total = self.connection.execute("SELECT count(*) FROM runs").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise UnreadableFile(
                f"{path} is not a readable NeuroCore runs database: {error}."
            ) from None

    def _check_schema(self) -> None:
        for table, needed in RUNS_DB_TABLES.items():
            columns = {
                row["name"] for row in self.connection.execute(f"PRAGMA table_info({table})")
            }
            if not needed <= columns:
                raise UnreadableFile(
                    f"{self.path} is an SQLite database but not a NeuroCore runs database "
                    f"(no '{table}' table with {', '.join(sorted(needed))})."
                )
        tables = {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master")}
        self.has_checkpoints = "checkpoints" in tables

    def batches(self, size: int) -> Iterator[list[RunBundle]]:
        last_rowid = 0
        while True:
            try:
                rows = self.connection.execute(
                    "SELECT rowid, * FROM runs WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (last_rowid, size),
                ).fetchall()
                if not rows:
                    return
                last_rowid = rows[-1]["rowid"]
                ids = [row["run_id"] for row in rows]
                steps: dict[str, list[dict[str, Any]]] = {run_id: [] for run_id in ids}
                marks = ",".join("?" * len(ids))
                for step_row in self.connection.execute(
                    f"SELECT * FROM steps WHERE run_id IN ({marks}) ORDER BY run_id, step_index",  # noqa: S608 — placeholders only
                    ids,
                ):
                    steps[step_row["run_id"]].append(_converted(step_row, step_row_values))
            except sqlite3.DatabaseError as error:
                raise UnreadableFile(f"{self.path} is corrupt: {error}.") from None
            yield [
                RunBundle(_converted(row, _run_row_values), steps[row["run_id"]]) for row in rows
            ]

    def checkpoints(self) -> Iterator[FlowCheckpoint]:
        if not self.has_checkpoints:
            return
        for row in self.connection.execute("SELECT * FROM checkpoints"):
            yield FlowCheckpoint(
                checkpoint_id=row["checkpoint_id"],
                flow_config=json.loads(row["flow_config"]),
                context=json.loads(row["context"]),
                created_at=row["created_at"],
            )

    def close(self) -> None:
        self.connection.close()


class JsonLinesExport(RunsFile):
    """A ``manage.py runs export --format jsonl`` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as handle:
            self.total = sum(1 for line in handle if line.strip())

    def batches(self, size: int) -> Iterator[list[RunBundle]]:
        batch: list[RunBundle] = []
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                batch.append(self._bundle(line, number))
                if len(batch) == size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _bundle(self, line: str, number: int) -> RunBundle:
        try:
            item = json.loads(line)
            return RunBundle(
                run=run_values(RunRecord(**item["run"])),
                steps=[step_values(StepRecord(**step)) for step in item.get("steps", [])],
                decisions=[
                    {name: decision[name] for name in DECISION_FIELDS if name in decision}
                    for decision in item.get("decisions", [])
                ],
            )
        except (ValueError, KeyError, TypeError, ValidationError) as error:
            problem = str(error).splitlines()[0]
            raise UnreadableFile(
                f"{self.path} line {number} is not an exported run: {problem}"
            ) from None


RUN_JSON_COLUMNS = ("blueprint_snapshot", "initial_data", "final_context")


def _run_row_values(row: sqlite3.Row) -> dict[str, Any]:
    """A console run row from a ``runs`` row of NeuroCore's ``runs.db``: its columns are
    ``RunRecord``'s fields, its JSON columns text (as ``SQLiteRunStore`` writes them;
    an empty ``final_context`` is None). Through the public record, not the store's
    private row mapping."""
    fields = {key: row[key] for key in row.keys() if key in RunRecord.model_fields}  # noqa: SIM118 — a Row iterates values
    for column in RUN_JSON_COLUMNS:
        fields[column] = json.loads(fields[column]) if fields.get(column) else None
    fields["blueprint_snapshot"] = fields["blueprint_snapshot"] or {}
    fields["initial_data"] = fields["initial_data"] or {}
    return run_values(RunRecord(**fields))


def step_row_values(row: sqlite3.Row) -> dict[str, Any]:
    """A console step row from a ``steps`` row of a runs.db.

    What ``SQLiteRunStore._row_to_step`` then ``step_values`` produce, without
    building a pydantic record per step: steps are most of an import's rows.
    """
    status = row["status"]
    if status not in STEP_STATUSES:
        raise ValueError(f"unknown step status {status!r}")
    snapshot = row["context_snapshot"]
    return {
        "run_id": identifier(row["run_id"], "run_id"),
        "step_index": int(row["step_index"]),
        "component": free_text(row["component"]),
        "skill_type": free_text(row["skill_type"]),
        "status": status,
        "started_at": parse_timestamp(row["started_at"]),
        "duration_ms": row["duration_ms"],
        "error": free_text(row["error"]),
        "output_keys": json.loads(row["output_keys"]),
        "context_snapshot": json.loads(snapshot) if snapshot else None,
    }


def _converted(row: sqlite3.Row, convert: Any) -> Any:
    try:
        return convert(row)
    except (ValueError, TypeError, ValidationError) as error:
        problem = str(error).splitlines()[0]
        raise UnreadableFile(
            f"Run {row['run_id']} in the runs database is malformed: {problem}"
        ) from None


def export_line(run: RunRecord, steps: list[StepRecord], decisions: list[dict[str, Any]]) -> str:
    """One run as a JSON Lines record."""
    payload = {
        "run": run.model_dump(),
        "steps": [step.model_dump() for step in steps],
        "decisions": decisions,
    }
    # A lone surrogate becomes its JSON escape: the line stays valid UTF-8, same value.
    return displayable(json.dumps(payload, default=str, ensure_ascii=False))
