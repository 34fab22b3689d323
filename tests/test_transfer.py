"""`manage.py runs import` (NeuroCore runs.db, console exports) and `runs export`."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from neurocore.errors import ExecutionError
from neurocore.persistence import RunStatus, SQLiteRunStore
from neurocore.runtime.executor import execute_blueprint_tracked

from runs.models import Checkpoint, Decision, Run, Step
from runs.runtime import current_project
from runs.store import DjangoRunStore
from runs.transfer import export_line
from tests.conftest import make_user, run_queued_tasks, start_run

pytestmark = pytest.mark.django_db(transaction=True)


def runs(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("runs", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def runs_db(tmp_path: Path) -> Path:
    """A runs.db written by NeuroCore itself: a waiting, a completed, a sync-suspended run."""
    path = tmp_path / "runs.db"
    store = SQLiteRunStore(path)
    project = current_project()
    for blueprint in ("gate.yaml", "dag.yaml", "sync_hold.yaml"):
        with contextlib.suppress(ExecutionError):
            execute_blueprint_tracked(
                project.blueprint(blueprint),
                project.registry,
                project.config,
                initial_data={"amount": 3},
                run_store=store,
            )
    store.close()
    return path


def test_import_brings_runs_steps_and_checkpoints_and_is_idempotent(runs_db: Path) -> None:
    peer = SQLiteRunStore(runs_db)
    expected = {r.run_id: r for r in peer.list_runs(limit=100)}

    step_count = sum(len(peer.load_steps(run_id)) for run_id in expected)
    out, _ = runs("import", str(runs_db))
    assert out.strip() == (
        f"Imported 3 runs, updated 0, skipped 0 unchanged; {step_count} steps, 1 checkpoints, "
        "0 decisions."
    )
    ours = DjangoRunStore()
    for run_id, record in expected.items():
        assert ours.load_run(run_id) == record
        assert ours.load_steps(run_id) == peer.load_steps(run_id)
    assert Checkpoint.objects.count() == 1

    out, _ = runs("import", str(runs_db))
    assert out.startswith("Imported 0 runs, updated 0, skipped 3 unchanged")
    assert Run.objects.count() == 3
    assert Step.objects.count() == step_count


def test_a_run_changed_since_the_last_import_is_updated(runs_db: Path) -> None:
    runs("import", str(runs_db))
    with sqlite3.connect(runs_db) as db:
        db.execute(
            "UPDATE runs SET status='failed', error='later', updated_at='2030-01-01T00:00:00+00:00'"
            " WHERE blueprint_name='data-cleanup'"
        )
    out, _ = runs("import", str(runs_db))
    assert out.startswith("Imported 0 runs, updated 1, skipped 2 unchanged")
    run = Run.objects.get(blueprint_name="data-cleanup")
    assert (run.status, run.error) == ("failed", "later")


def test_dry_run_reports_and_writes_nothing(runs_db: Path) -> None:
    out, _ = runs("import", str(runs_db), "--dry-run")
    assert out.startswith("Dry run, nothing written: would import 3 runs")
    assert not Run.objects.exists()
    assert not Checkpoint.objects.exists()


def test_an_imported_waiting_run_can_be_approved_here(runs_db: Path) -> None:
    runs("import", str(runs_db))
    make_user("ada", "Approvers")
    waiting = Run.objects.get(blueprint_name="payment")
    runs("approve", waiting.run_id[:10], "--by", "ada")
    run_queued_tasks()
    waiting.refresh_from_db()
    assert waiting.status == "completed"


def test_batches_are_any_size(runs_db: Path) -> None:
    runs("import", str(runs_db), "--batch-size", "1")
    assert Run.objects.count() == 3
    assert (
        Step.objects.count()
        == sqlite3.connect(runs_db).execute("SELECT count(*) FROM steps").fetchone()[0]
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"run_id,status\nabc,done\n",
            r"is not a NeuroCore runs database \(runs\.db\) nor a console export",
        ),
        (b"SQLite format 3\x00" + b"\x00" * 200, "is not a readable NeuroCore runs database"),
    ],
)
def test_foreign_or_corrupt_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "file.db"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=message) as caught:
        runs("import", str(path))
    assert caught.value.returncode == 1
    assert not Run.objects.exists()


def test_an_sqlite_file_of_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(CommandError, match="an SQLite database but not a NeuroCore runs database"):
        runs("import", str(path))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="Cannot read"):
        runs("import", str(tmp_path / "nope.db"))


def test_a_malformed_run_aborts_the_whole_import(runs_db: Path) -> None:
    with sqlite3.connect(runs_db) as db:
        db.execute("UPDATE runs SET status='exploded' WHERE blueprint_name='sync-hold'")
    with pytest.raises(CommandError, match=r"is malformed: .*Nothing was imported\."):
        runs("import", str(runs_db), "--batch-size", "1")
    assert not Run.objects.exists()
    assert not Step.objects.exists()


# -- export --------------------------------------------------------------------------------


def test_export_streams_runs_with_steps_and_decisions_and_imports_back(tmp_path: Path) -> None:
    approver = make_user("ada", "Approvers")
    decided = start_run(amount=1)
    from runs.models import Source
    from runs.services.decisions import decision_record

    decision_record(
        run_id=decided.run_id,
        approved=True,
        note="ok",
        shown_gate=decided.suspended_at_node,
        shown_suspended_at=decided.updated_at,
        actor=approver,
        source=Source.WEB,
    )
    run_queued_tasks()
    start_run("dag.yaml")

    out, _ = runs("export", "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [set(line) for line in lines] == [{"run", "steps", "decisions"}] * 2
    first = next(line for line in lines if line["run"]["run_id"] == decided.run_id)
    assert [s["component"] for s in first["steps"]] == ["prepare", "finance_review", "finish"]
    assert first["decisions"][0]["decided_by_identity"] == "ada@example.com"

    export = tmp_path / "runs.jsonl"
    export.write_text(out)
    snapshot = {r.run_id: (r.status, r.updated_at) for r in Run.objects.all()}
    call_command("flush", interactive=False, verbosity=0)
    assert not Decision.objects.exists()

    result, _ = runs("import", str(export))
    assert result.startswith(
        "Imported 2 runs, updated 0, skipped 0 unchanged; 8 steps, 0 checkpoints, 1 decisions."
    )
    assert {r.run_id: (r.status, r.updated_at) for r in Run.objects.all()} == snapshot
    assert Decision.objects.get().note == "ok"


def test_export_filters_by_status_and_date() -> None:
    start_run()
    start_run("dag.yaml")
    out, _ = runs("export", "--status", "completed")
    assert [json.loads(line)["run"]["blueprint_name"] for line in out.splitlines()] == [
        "data-cleanup"
    ]
    out, _ = runs("export", "--since", "2999-01-01")
    assert out == ""
    with pytest.raises(CommandError, match="--since must be an ISO date or time"):
        runs("export", "--since", "last tuesday")


def test_a_malformed_export_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"run": {"run_id": "x"}}\n')
    with pytest.raises(CommandError, match=r"line 1 is not an exported run"):
        runs("import", str(path))
    assert not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_import_does_not_take_a_waiting_run_past_its_gate(tmp_path: Path) -> None:
    """The one rule of approvals holds for imports: a file is not a decision."""
    waiting = start_run()
    record = DjangoRunStore().load_run(waiting.run_id)
    passed = record.model_copy(
        update={
            "status": RunStatus.COMPLETED,
            "suspended_at_node": None,
            "updated_at": "2099-01-01T00:00:00+00:00",
        }
    )
    exported = tmp_path / "runs.jsonl"
    exported.write_text(export_line(passed, [], []) + "\n")
    out = StringIO()
    call_command("runs", "import", str(exported), stdout=out)
    assert "Kept 1 runs waiting for a decision here" in out.getvalue()
    assert Run.objects.get(pk=waiting.run_id).status == "suspended"
