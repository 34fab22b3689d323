"""The real worker (`manage.py db_worker`) in its own process: resumes, and survives a kill."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django_tasks_db.models import DBTaskResult

from runs import services
from runs.models import Decision, Run, RunAction, Source
from tests.conftest import start_run

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll until ``condition`` holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


@pytest.fixture
def hold_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    flag = tmp_path / "hold"
    monkeypatch.setenv("CONSOLE_TEST_HOLD_FILE", str(flag))
    return flag


def decide(run: Run, approver: Any) -> RunAction:
    decision = services.decision_record(
        run_id=run.run_id,
        approved=True,
        note="go",
        shown_gate=run.suspended_at_node,
        shown_suspended_at=run.updated_at,
        actor=approver,
        source=Source.WEB,
    )
    return decision.resumption


def test_the_worker_resumes_a_decided_run(approver: Any, start_worker: Any) -> None:
    run = start_run()
    resumption = decide(run, approver)
    start_worker("worker-a")
    wait_for(
        lambda: RunAction.objects.get(pk=resumption.pk).state == "done",
        timeout=60,
        what="the resume to finish",
    )
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert DBTaskResult.objects.get(pk=resumption.task_id).status == "SUCCESSFUL"


def test_a_worker_killed_mid_resume_is_replaced_within_a_minute(
    approver: Any, start_worker: Any, hold_file: Path
) -> None:
    run = start_run("slow_after_gate.yaml")
    hold_file.touch()  # the step after the gate blocks until the file goes
    resumption = decide(run, approver)
    first_task = resumption.task_id
    worker_a = start_worker("worker-a")
    wait_for(
        lambda: RunAction.objects.get(pk=resumption.pk).state == "running",
        timeout=60,
        what="worker A to start the resume",
    )
    time.sleep(1)  # well inside NeuroCore's resume, blocked in the transfer step

    worker_a.send_signal(signal.SIGKILL)
    worker_a.wait()
    hold_file.unlink()
    start_worker("worker-b")

    # The promise: another worker detects the loss and re-runs the resume within 60 s.
    wait_for(
        lambda: RunAction.objects.get(pk=resumption.pk).state == "done",
        timeout=60,
        what="worker B to finish the resume",
    )

    resumption.refresh_from_db()
    run.refresh_from_db()
    assert resumption.attempts == 2
    assert resumption.outcome_status == "completed"
    assert run.status == Run.Status.COMPLETED
    assert run.final_context["data"]["held"] is True
    assert Decision.objects.filter(run=run).count() == 1
    lost = DBTaskResult.objects.get(pk=first_task)
    assert lost.status == "FAILED"
    assert "WorkerLost" in lost.exception_class_path
    assert [s.component for s in run.steps.order_by("step_index")] == [
        "prepare",
        "finance_review",
        "transfer",
        "finish",
    ]
