"""The real worker (`manage.py db_worker`) survives its surroundings.

A mail server that accepts connections and never answers does not delay the
recovery of a killed worker's resume; losing the database (sessions terminated,
connections refused for a while) does not stop the worker, and is logged once
per outage.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from runs.models import Run, RunAction
from tests.conftest import ROOT, TEST_PROJECT_ROOT, database_url, decide, start_run

pytestmark = pytest.mark.django_db(transaction=True)

# Small intervals, so a lost worker is noticed in seconds.
STALE_AFTER = 4
WATCHDOG_INTERVAL = 1
QUICK_RECOVERY = {
    "RESUME_HEARTBEAT_INTERVAL": "1",
    "RESUME_STALE_AFTER": str(STALE_AFTER),
    "RESUME_WATCHDOG_INTERVAL": str(WATCHDOG_INTERVAL),
}
# Starting a worker process (Django, NeuroCore, the test project) takes a second or two.
PROCESS_START = 5


def wait_for(condition: Callable[[], object], *, timeout: float, what: str) -> float:
    """Poll until ``condition`` holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def action_state(action: RunAction) -> str:
    return RunAction.objects.get(pk=action.pk).state


@pytest.fixture
def hold_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """While this file exists, the step after the gate of slow_after_gate.yaml blocks."""
    flag = tmp_path / "hold"
    monkeypatch.setenv("CONSOLE_TEST_HOLD_FILE", str(flag))
    return flag


class Worker:
    """A `manage.py db_worker` process and its log."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def lines(self, text: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if text in line]


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start `manage.py db_worker` processes with extra environment; stop them after."""
    workers: list[Worker] = []

    def spawn(worker_id: str, *, db_url: str | None = None, **env: str) -> Worker:
        log = tmp_path / f"{worker_id}.log"
        process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "db_worker",
                "--no-reload",
                "--no-startup-delay",
                "--interval=0.2",
                f"--worker-id={worker_id}",
            ],
            env={
                **os.environ,
                "DATABASE_URL": db_url or database_url(),
                "NEUROCORE_PROJECT_ROOT": str(TEST_PROJECT_ROOT),
                **QUICK_RECOVERY,
                **env,
            },
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        workers.append(Worker(process, log))
        return workers[-1]

    yield spawn
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


class SilentSMTP(threading.Thread):
    """A "mail server" on loopback that accepts connections and never says a word."""

    def __init__(self) -> None:
        super().__init__(name="silent-smtp", daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []

    def run(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted.append(client)

    def waiting(self) -> int:
        """How many clients are still connected, waiting for the greeting."""
        count = 0
        for client in self.accepted:
            try:
                still_open = client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
            except BlockingIOError:
                still_open = True
            except OSError:
                still_open = False
            count += still_open
        return count

    def close(self) -> None:
        self.listener.close()
        for client in self.accepted:
            client.close()


@pytest.fixture
def silent_smtp() -> Iterator[SilentSMTP]:
    server = SilentSMTP()
    server.start()
    yield server
    server.close()


def test_a_silent_mail_server_does_not_delay_recovery(
    approver: Any, hold_file: Path, silent_smtp: SilentSMTP, spawn_worker: Callable[..., Worker]
) -> None:
    mail_env = {
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(silent_smtp.port),
        # Longer than this test: a thread sending mail is stuck for all of it.
        "EMAIL_TIMEOUT": "60",
    }
    for _ in range(3):  # waiting runs: each worker's notifications thread mails one, and waits
        start_run()
    run = start_run("slow_after_gate.yaml")
    hold_file.touch()
    resumption = decide(run, approver).resumption
    first_task = resumption.task_id

    worker_a = spawn_worker("worker-a", **mail_env)
    wait_for(lambda: action_state(resumption) == "running", timeout=20, what="A to start")
    wait_for(lambda: silent_smtp.waiting() == 1, timeout=10, what="A to wait on the mail server")
    worker_a.process.send_signal(signal.SIGKILL)
    worker_a.process.wait()
    killed = time.monotonic()
    hold_file.unlink()
    worker_b = spawn_worker("worker-b", **mail_env)

    wait_for(  # A's connection closed with A; B's is open, unanswered
        lambda: len(silent_smtp.accepted) == 2 and silent_smtp.waiting() == 1,
        timeout=10,
        what="B to wait on the mail server",
    )
    wait_for(
        lambda: RunAction.objects.get(pk=resumption.pk).task_id != first_task,
        timeout=STALE_AFTER + WATCHDOG_INTERVAL + PROCESS_START + 10,
        what="B to queue the lost resume again",
    )
    requeued = time.monotonic() - killed
    wait_for(lambda: action_state(resumption) == "done", timeout=20, what="B to finish the resume")
    completed = time.monotonic() - killed
    print(
        f"\nsilent SMTP: resume queued again {requeued:.1f} s after the kill, done after "
        f"{completed:.1f} s; B's mail thread still waiting: {silent_smtp.waiting() >= 1}"
    )

    # The documented promise: within RESUME_STALE_AFTER + RESUME_WATCHDOG_INTERVAL
    # (here plus the time a new worker process takes to start).
    assert requeued <= STALE_AFTER + WATCHDOG_INTERVAL + PROCESS_START
    assert silent_smtp.waiting() >= 1, "B's notifications thread should still be waiting"
    resumption.refresh_from_db()
    run.refresh_from_db()
    assert (resumption.attempts, run.status) == (2, Run.Status.COMPLETED)

    # And SIGTERM still stops B promptly, its mail thread waiting or not.
    stopping = time.monotonic()
    worker_b.process.terminate()
    assert worker_b.process.wait(timeout=10) == 0
    assert time.monotonic() - stopping < 5


# -- the database goes away ----------------------------------------------------------


def terminate_sessions(application_name: str) -> int:
    """End every database session of the worker, as a failover or a restart does."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            [application_name],
        )
        return cursor.fetchone()[0]


def sessions(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return cursor.fetchone()[0]


def allow_connections(allowed: bool) -> None:
    """Let new sessions into the test database, or refuse them (those open stay).

    Said from another database: PostgreSQL does not let a session shut its own out.
    """
    settings = connection.settings_dict
    name = connection.ops.quote_name(settings["NAME"])
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as maintenance:
        maintenance.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {str(allowed).lower()}")


OUTAGE = "Database unavailable"
BACK = "Database answers again"


def test_the_worker_outlives_its_database_going_away(
    approver: Any, hold_file: Path, spawn_worker: Callable[..., Worker]
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("terminates PostgreSQL sessions")
    name = f"worker-{uuid.uuid4().hex[:12]}"
    worker = spawn_worker(
        "worker-db",
        db_url=f"{database_url()}?application_name={name}",
        DJANGO_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    )
    # The task loop and both threads are connected.
    wait_for(lambda: sessions(name) >= 3, timeout=15, what="the worker to connect")

    # Sessions ended while it is idle: it reconnects (no outage: the next try works).
    for _ in range(3):
        assert terminate_sessions(name) >= 1
        wait_for(lambda: sessions(name) >= 3, timeout=10, what="the worker to reconnect")

    # Two outages: sessions ended and new ones refused for a few seconds.
    for _ in range(2):
        allow_connections(False)
        try:
            terminate_sessions(name)
            wait_for(
                lambda: len(worker.lines(OUTAGE)) > len(worker.lines(BACK)),
                timeout=10,
                what="the worker to notice the outage",
            )
            time.sleep(3)  # several failed tries with back-off
            terminate_sessions(name)
        finally:
            allow_connections(True)
        wait_for(
            lambda: len(worker.lines(BACK)) == len(worker.lines(OUTAGE)),
            timeout=40,
            what="the worker to say the database is back",
        )

    # Sessions ended in the middle of a resume.
    run = start_run("slow_after_gate.yaml")
    hold_file.touch()
    resumption = decide(run, approver).resumption
    wait_for(lambda: action_state(resumption) == "running", timeout=15, what="the resume")
    time.sleep(0.5)
    terminate_sessions(name)
    hold_file.unlink()
    # The store and the lease reconnect (runs.store.reconnecting); where the loss
    # cannot be ruled harmless the action ends "interrupted" for an operator.
    wait_for(
        lambda: action_state(resumption) in {"done", "interrupted"},
        timeout=20,
        what="the resume to end",
    )

    # And a newly queued resume is carried out.
    resumption = decide(start_run(), approver).resumption
    wait_for(lambda: action_state(resumption) == "done", timeout=15, what="the new resume")
    assert Run.objects.get(pk=resumption.run_id).status == Run.Status.COMPLETED
    assert worker.process.poll() is None, worker.log.read_text()

    log = worker.log.read_text()
    print(f"\n--- worker log ({len(log.splitlines())} lines) ---\n{log}")
    # One warning per outage (and one line when it ends), not one per try: each
    # 3-second outage saw several failed tries of the task loop and both threads.
    # A session ended in the middle of a query is an outage of its own, however short.
    outages = worker.lines(OUTAGE)
    assert 2 <= len(outages) <= 2 + 3 + 1, outages
    assert len(worker.lines(BACK)) == len(outages)

    # SIGTERM stops it at once, even while it waits for the database.
    allow_connections(False)
    try:
        terminate_sessions(name)
        wait_for(
            lambda: len(worker.lines(OUTAGE)) > len(worker.lines(BACK)),
            timeout=10,
            what="the worker to notice the outage",
        )
        stopping = time.monotonic()
        worker.process.terminate()
        assert worker.process.wait(timeout=10) == 0
        assert time.monotonic() - stopping < 3
    finally:
        allow_connections(True)
