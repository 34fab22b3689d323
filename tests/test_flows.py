"""NeuroCore's own runtime, end to end, on DjangoRunStore.

Every execution path of NeuroCore 0.4: the async path of approval gates (the
store is called from inside a running event loop), two gates, failure then
resume, a concurrent DAG, flowengine's sync checkpoint path resumed in another
process, and replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from neurocore.errors import ExecutionError
from neurocore.persistence import RunRecord, RunStatus, StepStatus
from neurocore.runtime.blueprint import Blueprint
from neurocore.runtime.executor import execute_blueprint_tracked, resume_blueprint

from runs.models import Checkpoint, Decision, Run, Source, Step
from runs.runtime import NeuroCoreProject
from runs.store import DjangoRunStore
from tests.conftest import database_url

ROOT = Path(__file__).resolve().parent.parent


def start(
    project: NeuroCoreProject,
    store: DjangoRunStore,
    blueprint: str,
    initial_data: dict[str, Any] | None = None,
) -> RunRecord:
    """Execute a blueprint through NeuroCore and return its stored run."""
    with contextlib.suppress(ExecutionError):  # a failure is recorded on the run
        execute_blueprint_tracked(
            project.blueprint(blueprint),
            project.registry,
            project.config,
            initial_data=initial_data,
            run_store=store,
        )
    (run,) = store.list_runs(limit=1)
    return run


def decide_through_neurocore(
    project: NeuroCoreProject, store: DjangoRunStore, run_id: str, *, approved: bool, note: str = ""
) -> RunRecord:
    """Record a decision on the run's suspension, then resume it with that decision
    through NeuroCore, as the console's worker does (the store refuses to pass an
    undecided gate)."""
    waiting = Run.objects.get(pk=run_id)
    Decision.objects.create(
        run=waiting,
        gate=waiting.suspended_at_node,
        suspended_at=waiting.updated_at,
        approved=approved,
        note=note,
        decided_by_identity="ada@example.com",
        source=Source.CLI,
        gate_message=waiting.suspension_reason or "",
        evidence_digest="",
    )
    with contextlib.suppress(ExecutionError):
        resume_blueprint(
            run_id,
            project.registry,
            project.config,
            resume_data={"approved": approved, "note": note, "by": "ada@example.com"},
            run_store=store,
        )
    run = store.load_run(run_id)
    assert run is not None
    return run


def step_statuses(store: DjangoRunStore, run_id: str) -> list[tuple[str, StepStatus]]:
    return [(s.component, s.status) for s in store.load_steps(run_id)]


def test_approval_gate_suspends_then_approve_completes(
    project: NeuroCoreProject, django_store: DjangoRunStore
) -> None:
    run = start(project, django_store, "gate.yaml", {"amount": 40})
    assert run.status == RunStatus.SUSPENDED
    assert run.suspended_at_node == "finance_review"
    assert run.suspension_reason == "Approve the payment?"
    assert run.flow_type == "sequential"
    assert run.blueprint_version == "2.1"
    assert step_statuses(django_store, run.run_id) == [
        ("prepare", StepStatus.COMPLETED),
        ("finance_review", StepStatus.SKIPPED),
    ]

    run = decide_through_neurocore(
        project, django_store, run.run_id, approved=True, note="within budget"
    )
    assert run.status == RunStatus.COMPLETED
    # NeuroCore leaves suspended_at_node set after a resume: status tells.
    assert run.final_context is not None
    data = run.final_context["data"]
    assert data["finished"] is True
    assert data["prepared"] == {"amount": 40, "double": 80}
    assert data["approval"] == {"approved": True, "note": "within budget", "by": "ada@example.com"}
    assert step_statuses(django_store, run.run_id) == [
        ("prepare", StepStatus.COMPLETED),
        ("finance_review", StepStatus.COMPLETED),
        ("finish", StepStatus.COMPLETED),
    ]
    # persist_step_snapshots is on in the test project: snapshots are stored.
    assert all(s.context_snapshot for s in django_store.load_steps(run.run_id))


def test_approval_gate_reject_fails_the_run_with_the_note(
    project: NeuroCoreProject, django_store: DjangoRunStore
) -> None:
    run = start(project, django_store, "gate.yaml", {"amount": 10_000})
    run = decide_through_neurocore(
        project, django_store, run.run_id, approved=False, note="over the limit"
    )
    assert run.status == RunStatus.FAILED
    assert run.error is not None
    assert "rejected at approval gate 'finance_review': over the limit" in run.error
    assert ("finish", StepStatus.COMPLETED) not in step_statuses(django_store, run.run_id)


def test_two_gates_are_approved_one_after_the_other(
    project: NeuroCoreProject, django_store: DjangoRunStore
) -> None:
    run = start(project, django_store, "two_gates.yaml", {"amount": 1})
    assert (run.status, run.suspended_at_node) == (RunStatus.SUSPENDED, "editor_review")
    run = decide_through_neurocore(project, django_store, run.run_id, approved=True)
    assert (run.status, run.suspended_at_node) == (RunStatus.SUSPENDED, "legal_review")
    assert run.suspension_reason == "Legal: cleared to publish?"
    run = decide_through_neurocore(project, django_store, run.run_id, approved=True)
    assert run.status == RunStatus.COMPLETED
    assert [c for c, s in step_statuses(django_store, run.run_id)] == [
        "prepare",
        "editor_review",
        "legal_review",
        "finish",
    ]


def test_failed_step_then_resume_after_the_fix_completes(
    project: NeuroCoreProject, django_store: DjangoRunStore, flag_file: Path
) -> None:
    flag_file.touch()
    run = start(project, django_store, "flaky.yaml", {"amount": 3})
    assert run.status == RunStatus.FAILED
    assert run.error is not None
    assert "upstream unavailable" in run.error
    assert ("fetch", StepStatus.FAILED) in step_statuses(django_store, run.run_id)

    flag_file.unlink()
    resume_blueprint(run.run_id, project.registry, project.config, run_store=django_store)
    resumed = django_store.load_run(run.run_id)
    assert resumed is not None
    assert resumed.status == RunStatus.COMPLETED
    assert resumed.error is None
    assert step_statuses(django_store, run.run_id)[-1] == ("finish", StepStatus.COMPLETED)
    assert ("fetch", StepStatus.COMPLETED) in step_statuses(django_store, run.run_id)


def test_dag_branches_run_concurrently_and_every_step_is_stored(
    project: NeuroCoreProject, django_store: DjangoRunStore
) -> None:
    run = start(project, django_store, "dag.yaml", {"amount": 2})
    assert run.status == RunStatus.COMPLETED
    assert run.flow_type == "graph"
    steps = django_store.load_steps(run.run_id)
    assert [s.component for s in steps] == ["prepare", "left", "middle", "right", "finish"]
    assert all(s.status == StepStatus.COMPLETED for s in steps)
    assert run.final_context is not None
    data = run.final_context["data"]
    assert {data["branch_left"], data["branch_middle"], data["branch_right"]} == {
        "left",
        "middle",
        "right",
    }
    # The three branches share a start time: they ran in one concurrent layer.
    assert len({s.started_at for s in steps[1:4]}) == 1


def test_sync_suspension_resumes_in_another_process_with_a_fresh_store(
    project: NeuroCoreProject, django_store: DjangoRunStore
) -> None:
    run = start(project, django_store, "sync_hold.yaml", {"amount": 5})
    assert run.status == RunStatus.SUSPENDED
    assert run.checkpoint_id
    assert Checkpoint.objects.filter(pk=run.checkpoint_id).exists()

    env = {**os.environ, "DATABASE_URL": database_url()}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "resume_in_process.py"), run.run_id, '{"go": 1}'],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "completed"

    finished = Run.objects.get(pk=run.run_id)
    assert finished.status == Run.Status.COMPLETED
    assert finished.checkpoint_id is None
    assert finished.final_context["data"]["finished"] is True
    assert not Checkpoint.objects.exists()  # flowengine deleted it on resume
    assert list(Step.objects.filter(run_id=run.run_id).values_list("component", flat=True)) == [
        "prepare",
        "hold",
        "finish",
    ]


def test_replay_creates_a_new_run_from_the_snapshot_and_inputs(
    project: NeuroCoreProject, django_store: DjangoRunStore
) -> None:
    original = start(project, django_store, "gate.yaml", {"amount": 7})
    original = decide_through_neurocore(project, django_store, original.run_id, approved=True)

    # What `neurocore runs replay` does: the stored snapshot, not the file.
    execute_blueprint_tracked(
        Blueprint(**original.blueprint_snapshot),
        project.registry,
        project.config,
        initial_data=original.initial_data,
        run_store=django_store,
    )
    runs = django_store.list_runs()
    assert len(runs) == 2
    replay = next(r for r in runs if r.run_id != original.run_id)
    assert replay.initial_data == original.initial_data == {"amount": 7}
    assert replay.blueprint_snapshot == original.blueprint_snapshot
    assert replay.status == RunStatus.SUSPENDED  # it waits at the gate again
    assert original.status == RunStatus.COMPLETED


def test_a_second_store_in_the_same_process_sees_the_same_runs(
    project: NeuroCoreProject, django_store: DjangoRunStore
) -> None:
    run = start(project, django_store, "gate.yaml", {"amount": 1})
    other = DjangoRunStore()
    try:
        run = decide_through_neurocore(project, other, run.run_id, approved=True)
    finally:
        other.close()
    assert run.status == RunStatus.COMPLETED


@pytest.mark.parametrize("blueprint", ["gate.yaml", "dag.yaml"])
def test_helper_thread_connection_is_closed_with_the_store(
    project: NeuroCoreProject, transactional_db: None, blueprint: str
) -> None:
    store = DjangoRunStore()
    start(project, store, blueprint, {"amount": 1})
    helper_threads = [t for t in threading.enumerate() if t.name.startswith("django-run-store")]
    assert len(helper_threads) == 1
    helper_connection = _helper_connection(store)
    assert helper_connection.connection is not None
    store.close()
    assert helper_connection.connection is None
    helper_threads[0].join(timeout=5)
    assert not helper_threads[0].is_alive()


def _helper_connection(store: DjangoRunStore) -> Any:
    """The helper thread's own Django connection wrapper."""

    async def inside_loop() -> Any:
        return store._run(lambda: connections["default"])

    return asyncio.run(inside_loop())


def test_resume_data_json_is_stored_verbatim(
    project: NeuroCoreProject, django_store: DjangoRunStore
) -> None:
    run = start(project, django_store, "gate.yaml", {"amount": 1, "memo": "naïve \u2603"})
    run = decide_through_neurocore(project, django_store, run.run_id, approved=True, note="ok ✓")
    assert run.final_context is not None
    assert json.dumps(run.final_context["data"]["memo"]) == json.dumps("naïve \u2603")
