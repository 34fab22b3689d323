"""Shared fixtures: the test NeuroCore project and run stores."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django_tasks_db.management.commands.db_worker import Worker
from neurocore.errors import ExecutionError

from runs import runtime
from runs.models import Run
from runs.runtime import NeuroCoreProject, current_project, load_project
from runs.store import DjangoRunStore

ROOT = Path(__file__).resolve().parent.parent
TEST_PROJECT_ROOT = Path(__file__).parent / "project"


@pytest.fixture(scope="session", autouse=True)
def collected_static_files(django_db_blocker: Any) -> None:
    """Static files as production serves them: collected, hashed, compressed (whitenoise)."""
    call_command("collectstatic", interactive=False, verbosity=0)


@pytest.fixture(scope="session")
def project() -> NeuroCoreProject:
    """The small NeuroCore project under tests/project (local skills only)."""
    return load_project(TEST_PROJECT_ROOT)


@pytest.fixture
def django_store(transactional_db: None) -> Iterator[DjangoRunStore]:
    """A DjangoRunStore on a committed database, as an agent process uses it.

    Transactional: NeuroCore's async path writes from the store's helper thread,
    which must see (and not wait for) the test's writes.
    """
    store = DjangoRunStore()
    yield store
    store.close()


@pytest.fixture
def flag_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file whose presence makes the ``flaky`` test skill fail."""
    flag = tmp_path / "upstream.down"
    monkeypatch.setenv("CONSOLE_TEST_FLAG_FILE", str(flag))
    return flag


def database_url() -> str:
    """A DATABASE_URL for the test database, for processes the tests start."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or ""
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"


# -- people and runs -------------------------------------------------------------


@pytest.fixture(autouse=True)
def test_project_settings(settings: Any) -> Iterator[None]:
    """The console resumes runs with the test NeuroCore project; passwords hash fast."""
    settings.NEUROCORE_PROJECT_ROOT = TEST_PROJECT_ROOT
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    current_project.cache_clear()
    yield
    current_project.cache_clear()


def make_user(username: str, *roles: str, **fields: Any) -> Any:
    """A user in the given role groups (Viewers, Approvers, Operators)."""
    fields.setdefault("email", f"{username}@example.com")
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, **fields)
    user.groups.set(Group.objects.filter(name__in=roles))
    return user


PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def viewer(db: None) -> Any:
    return make_user("vera", "Viewers")


@pytest.fixture
def approver(db: None) -> Any:
    return make_user("ada", "Approvers")


@pytest.fixture
def operator(db: None) -> Any:
    return make_user("otto", "Operators")


@pytest.fixture
def superuser(db: None) -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


@pytest.fixture
def approver_client(client: Client, approver: Any) -> Client:
    client.force_login(approver)
    return client


def start_run(blueprint: str = "gate.yaml", **initial_data: Any) -> Run:
    """A run made by NeuroCore itself on DjangoRunStore (suspended at a gate for gate.yaml)."""
    with contextlib.suppress(ExecutionError):  # a failure is recorded on the run
        runtime.execute(blueprint, initial_data or {"amount": 120})
    return Run.objects.order_by("-created_at").first()


def run_queued_tasks() -> None:
    """Run every queued background task in this process, as `db_worker --batch` does."""
    Worker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    ).run()


class FailingEmailBackend(BaseEmailBackend):
    """An email backend whose server is down."""

    def send_messages(self, email_messages: Any) -> int:
        raise ConnectionRefusedError("SMTP server unreachable")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start `manage.py db_worker` processes on the test database; stop them after."""
    workers: list[subprocess.Popen[bytes]] = []

    def start(worker_id: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start a worker; ``extra_env`` adds environment variables (settings)."""
        url = database_url()
        if connection.vendor == "postgresql":  # its sessions, named after it
            url += f"?application_name={worker_id}"
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "NEUROCORE_PROJECT_ROOT": str(TEST_PROJECT_ROOT),
            **extra_env,
        }
        log = (tmp_path / f"{worker_id}.log").open("wb")
        worker = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "db_worker",
                "--no-reload",
                "--no-startup-delay",
                "--interval=0.2",
                f"--worker-id={worker_id}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGCONT)  # a test may have frozen it
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def log_in(client: Client, username: str, password: str = PASSWORD) -> Any:
    """Log in through the login page, as a person does (CSRF token and all)."""
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    return client.post(
        "/accounts/login/",
        {"username": username, "password": password, "csrfmiddlewaretoken": token},
    )


def decide(
    run: Run, actor: Any, *, approved: bool = True, note: str = "ok", **overrides: Any
) -> Any:
    """Approve (or reject) the suspension ``run`` waits at, as ``actor``, through the
    service; returns the Decision (its ``resumption`` is the queued resume)."""
    from runs.models import Source
    from runs.services.decisions import decision_record

    return decision_record(
        run_id=run.run_id,
        approved=approved,
        note=note,
        shown_gate=overrides.pop("shown_gate", run.suspended_at_node),
        shown_suspended_at=overrides.pop("shown_suspended_at", run.updated_at),
        actor=actor,
        source=overrides.pop("source", Source.WEB),
        **overrides,
    )


def form_data(run: Run, decision: str = "approve", note: str = "fine") -> dict[str, str]:
    """The review page's form for the suspension ``run`` waits at, as a browser posts it."""
    return {
        "decision": decision,
        "note": note,
        "gate": run.suspended_at_node or "",
        "suspended_at": run.updated_at.isoformat(),
    }
