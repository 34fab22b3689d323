"""The README's production recipe, command by command: collectstatic, gunicorn serving
the WSGI app with whitenoise and DEBUG off, a db_worker, and an agent process."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runs.models import Run
from tests.conftest import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def production_env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return {
        **clean,
        "DJANGO_SETTINGS_MODULE": "neurocore_console.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "production-like-secret-for-this-test-only-0123456789abcdef",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_HTTPS": "0",  # the test talks plain HTTP to gunicorn
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": database_url(),
        "NEUROCORE_PROJECT_ROOT": str(ROOT / "examples" / "demo"),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def gunicorn(production_env: dict[str, str]) -> Iterator[str]:
    collected = manage(production_env, "collectstatic", "--no-input")
    assert collected.returncode == 0, collected.stderr
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "neurocore_console.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=production_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    output = server.stdout.read().decode() if server.stdout else ""
                    raise AssertionError(output) from None
                time.sleep(0.3)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def fetch(url: str, **headers: str) -> Any:
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)


def test_gunicorn_serves_the_console_and_compressed_hashed_static_files(gunicorn: str) -> None:
    with fetch(gunicorn + "/healthz") as response:
        report = json.loads(response.read())
    assert report["ok"] is True
    with fetch(gunicorn + "/accounts/login/") as response:
        page = response.read().decode()
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    stylesheet = re.search(r'href="(/static/runs/console\.[0-9a-f]{12}\.css)"', page)
    assert stylesheet, "the stylesheet's name carries its hash"
    with fetch(gunicorn + stylesheet.group(1), **{"Accept-Encoding": "gzip"}) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert "immutable" in response.headers["Cache-Control"]
    with fetch(gunicorn + "/approvals/") as response:  # redirected to the login page
        assert response.url.startswith(gunicorn + "/accounts/login/")


def test_an_agent_process_writes_runs_that_a_db_worker_resumes(
    production_env: dict[str, str], tmp_path: Path
) -> None:
    agent = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "agent.py")],
        env=production_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert agent.returncode == 0, agent.stderr
    run_id, status, *_ = agent.stdout.split()
    assert status == "suspended"
    run = Run.objects.get(pk=run_id)
    assert run.suspended_at_node == "finance_approval"

    added = manage(
        production_env, "createuser", "ops", "--role", "approver", "--email", "ops@example.com"
    )
    assert added.returncode == 0, added.stderr
    approved = manage(production_env, "runs", "approve", run_id, "--by", "ops@example.com")
    assert approved.returncode == 0, approved.stderr
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "db_worker", "--batch", "--no-startup-delay"],
        env=production_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert worker.wait(timeout=120) == 0
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert run.final_context["data"]["transfer"]["status"] == "sent"
