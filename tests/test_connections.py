"""Database connections stay within what the database allows, under parallel bursts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.conftest import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sessions(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return cursor.fetchone()[0]


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_runserver_keeps_no_connection_per_request_thread() -> None:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url() + "?application_name=runserver-burst",
        "DJANGO_CONN_MAX_AGE": "600",  # what make run inherits by default
    }
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)

        def get(_: int) -> int:
            with urllib.request.urlopen(url, timeout=30) as response:
                return response.status

        for _ in range(3):  # parallel bursts, each request on its own thread
            with ThreadPoolExecutor(max_workers=20) as pool:
                assert set(pool.map(get, range(40))) == {200}
        time.sleep(0.5)
        # Each request closed its connection: none is left behind per thread.
        assert sessions("runserver-burst") <= 1
    finally:
        server.terminate()
        server.wait(timeout=20)
