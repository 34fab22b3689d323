"""The real worker (`manage.py db_worker`) in its own process: resumes, and survives a kill."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from runs.models import Decision, Run, RunAction
from runs.services.recovery import run_actions_recover
from runs.worker import LEASE_LOCK_CLASS, MAX_ATTEMPTS
from tests.conftest import decide, start_run

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


def test_the_worker_resumes_a_decided_run(approver: Any, start_worker: Any) -> None:
    run = start_run()
    resumption = decide(run, approver).resumption
    start_worker("worker-a")
    wait_for(
        lambda: RunAction.objects.get(pk=resumption.pk).state == "done",
        timeout=60,
        what="the resume to finish",
    )
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    # The task is marked done by django-tasks-db after the action: a moment later.
    wait_for(
        lambda: DBTaskResult.objects.get(pk=resumption.task_id).status == "SUCCESSFUL",
        timeout=30,
        what="the task to be marked successful",
    )


def test_a_worker_killed_mid_resume_is_replaced_within_a_minute(
    approver: Any, start_worker: Any, hold_file: Path
) -> None:
    run = start_run("slow_after_gate.yaml")
    hold_file.touch()  # the step after the gate blocks until the file goes
    resumption = decide(run, approver).resumption
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


# -- a decision runs once, whatever happens to its worker ------------------------------

FAST = {  # seconds: heartbeat, silence before another worker may take over, watchdog
    "RESUME_HEARTBEAT_INTERVAL": "0.5",
    "RESUME_STALE_AFTER": "2",
    "RESUME_WATCHDOG_INTERVAL": "0.5",
}
MORE_THAN_STALE = 6  # seconds: three stale timeouts, time for a takeover to happen


@pytest.fixture
def count_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the step after the gate (``transfer``) adds a line to each time it starts."""
    counted = tmp_path / "transfer.count"
    monkeypatch.setenv("CONSOLE_TEST_COUNT_FILE", str(counted))
    return counted


def executions(count_file: Path) -> int:
    return len(count_file.read_text().splitlines()) if count_file.exists() else 0


def started_transfer(
    approver: Any, start_worker: Any, hold_file: Path, count_file: Path
) -> tuple[Run, RunAction, Any]:
    """A decided run whose worker A is inside the step after the gate, held there."""
    run = start_run("slow_after_gate.yaml")
    hold_file.touch()
    resumption = decide(run, approver).resumption
    worker_a = start_worker("worker-a", **FAST)
    wait_for(lambda: executions(count_file) == 1, timeout=60, what="worker A to start transfer")
    return run, resumption, worker_a


def finishes_once(run: Run, resumption: RunAction, count_file: Path) -> RunAction:
    wait_for(
        lambda: RunAction.objects.get(pk=resumption.pk).state == "done",
        timeout=60,
        what="the resume to finish",
    )
    resumption.refresh_from_db()
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert resumption.outcome_status == "completed"
    assert executions(count_file) == 1, "the step after the gate ran more than once"
    assert [s.component for s in run.steps.order_by("step_index")] == [
        "prepare",
        "finance_review",
        "transfer",
        "finish",
    ]
    return resumption


def test_a_frozen_worker_keeps_its_resume_and_the_step_runs_once(
    approver: Any, start_worker: Any, hold_file: Path, count_file: Path, record_property: Any
) -> None:
    run, resumption, worker_a = started_transfer(approver, start_worker, hold_file, count_file)
    task_id = RunAction.objects.get(pk=resumption.pk).task_id

    worker_a.send_signal(signal.SIGSTOP)  # frozen past the stale timeout, still alive
    start_worker("worker-b", **FAST)
    time.sleep(MORE_THAN_STALE)
    held = RunAction.objects.get(pk=resumption.pk)
    assert (held.state, held.task_id, held.attempts) == ("running", task_id, 1)

    hold_file.unlink()
    worker_a.send_signal(signal.SIGCONT)
    resumption = finishes_once(run, resumption, count_file)
    assert resumption.attempts == 1
    record_property("post_gate_executions_sigstop", executions(count_file))


def lease_holders(action_id: int) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objid = %s AND granted",
            [LEASE_LOCK_CLASS, action_id],
        )
        return [pid for (pid,) in cursor.fetchall()]


def terminate(where: str, params: list[Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}", params
        )
        return len(cursor.fetchall())


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_lost_heartbeat_session_is_reopened_and_nobody_takes_over(
    approver: Any, start_worker: Any, hold_file: Path, count_file: Path, record_property: Any
) -> None:
    run, resumption, _ = started_transfer(approver, start_worker, hold_file, count_file)
    start_worker("worker-b", **FAST)
    wait_for(lambda: len(lease_holders(resumption.pk)) == 1, timeout=10, what="the lease")
    [heartbeat] = lease_holders(resumption.pk)

    assert terminate("pid = %s", [heartbeat]) == 1  # only the heartbeat's session
    wait_for(
        lambda: lease_holders(resumption.pk) not in ([], [heartbeat]),
        timeout=10,
        what="worker A to reopen its heartbeat session and take its lease again",
    )
    time.sleep(MORE_THAN_STALE)
    held = RunAction.objects.get(pk=resumption.pk)
    assert (held.state, held.attempts) == ("running", 1)

    hold_file.unlink()
    assert finishes_once(run, resumption, count_file).attempts == 1
    record_property("post_gate_executions_heartbeat_terminated", executions(count_file))


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_all_the_workers_sessions_terminated_mid_step_and_the_step_runs_once(
    approver: Any, start_worker: Any, hold_file: Path, count_file: Path, record_property: Any
) -> None:
    run, resumption, worker_a = started_transfer(approver, start_worker, hold_file, count_file)
    start_worker("worker-b", **FAST)
    # As a PostgreSQL restart looks to worker A: every session of it ends, twice.
    for _ in range(2):
        assert terminate("application_name = %s", ["worker-a"]) >= 1
        time.sleep(1)
    hold_file.unlink()
    assert finishes_once(run, resumption, count_file).attempts == 1
    assert worker_a.poll() is None  # the worker lives on
    record_property("post_gate_executions_all_sessions_terminated", executions(count_file))


def test_a_step_completed_before_the_kill_is_not_run_again(
    approver: Any,
    start_worker: Any,
    hold_file: Path,
    count_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    effects = tmp_path / "notify.count"
    monkeypatch.setenv("CONSOLE_TEST_EFFECT_FILE", str(effects))
    run = start_run("effect_after_gate.yaml")
    hold_file.touch()
    resumption = decide(run, approver).resumption
    worker_a = start_worker("worker-a", **FAST)
    # notify (after the gate) is done; transfer, after it, is in flight.
    wait_for(lambda: executions(count_file) == 1, timeout=60, what="worker A in transfer")
    worker_a.send_signal(signal.SIGKILL)
    worker_a.wait()
    hold_file.unlink()
    start_worker("worker-b", **FAST)
    wait_for(
        lambda: RunAction.objects.get(pk=resumption.pk).state == "done",
        timeout=60,
        what="worker B to finish the resume",
    )
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert executions(effects) == 1, "a step completed before the kill ran again"
    assert executions(count_file) == 2  # the one in flight at the kill
    assert run.final_context["data"]["notified"] is True


def test_a_killed_worker_is_replaced_and_only_the_step_in_flight_runs_again(
    approver: Any, start_worker: Any, hold_file: Path, count_file: Path, record_property: Any
) -> None:
    run, resumption, worker_a = started_transfer(approver, start_worker, hold_file, count_file)
    worker_a.send_signal(signal.SIGKILL)
    worker_a.wait()
    hold_file.unlink()
    start_worker("worker-b", **FAST)
    wait_for(
        lambda: RunAction.objects.get(pk=resumption.pk).state == "done",
        timeout=60,
        what="worker B to finish the resume",
    )
    resumption.refresh_from_db()
    run.refresh_from_db()
    assert (run.status, resumption.attempts) == (Run.Status.COMPLETED, 2)
    # The step in flight at the kill ran again (documented: use the decision's id as
    # its idempotency key); no completed step did.
    assert executions(count_file) == 2
    assert [s.component for s in run.steps.order_by("step_index")] == [
        "prepare",
        "finance_review",
        "transfer",
        "finish",
    ]
    assert run.final_context["data"]["approval"]["decision_id"] == resumption.decision_id
    record_property("post_gate_executions_sigkill", executions(count_file))


def test_an_action_whose_workers_keep_dying_is_interrupted_for_an_operator(
    approver: Any,
) -> None:
    run = start_run()
    resumption = decide(run, approver).resumption
    long_ago = timezone.now() - timedelta(hours=1)
    RunAction.objects.filter(pk=resumption.pk).update(
        state="running",
        attempts=MAX_ATTEMPTS,
        heartbeat_at=long_ago,
        lease_owner=f"{socket.gethostname()}:{2**22 + 1}:0",  # a process that is not there
    )
    assert run_actions_recover() == 0
    resumption.refresh_from_db()
    assert resumption.state == RunAction.State.INTERRUPTED
    assert "an operator should look at the run" in resumption.outcome_error
    run.refresh_from_db()
    assert run.status == Run.Status.SUSPENDED  # nothing guessed
