"""Lockouts and the approval audit see the client's address, and a burst of wrong
passwords gets no more password checks than the lockout allows.

The bursts go to gunicorn with ten worker processes and count the checks its password
hasher makes (tests.password_checks): a burst of 20 or 50 wrong passwords for one
username gets exactly AXES_FAILURE_LIMIT (5) checks, none more, on SQLite and
PostgreSQL alike. Before runs.login serialized attempts, the same bursts got 8 to 13.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client, RequestFactory

from runs.clientip import client_address
from runs.models import Decision
from tests.conftest import PASSWORD, ROOT, database_url, log_in, make_user, start_run
from tests.password_checks import ENV, checks_counted

pytestmark = pytest.mark.django_db(transaction=True)

PROXY = "10.0.0.2"  # the TLS proxy, as the console sees it (REMOTE_ADDR)


# -- the address -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "expected"),
    [
        (0, "", PROXY),
        (0, "198.51.100.7", PROXY),  # no trusted proxy: a client's header is ignored
        (1, "198.51.100.7", "198.51.100.7"),
        (1, "203.0.113.66, 198.51.100.7", "198.51.100.7"),  # the left entry is the client's
        (2, "203.0.113.66, 198.51.100.7, 10.0.0.1", "198.51.100.7"),
        (2, "198.51.100.7", PROXY),  # fewer hops than proxies: not through them
        (1, "", PROXY),
        (1, "not-an-address", PROXY),
        (1, "2001:DB8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_is_read_from_as_many_hops_as_there_are_trusted_proxies(
    settings: Any, proxies: int, forwarded_for: str, expected: str
) -> None:
    settings.TRUSTED_PROXY_COUNT = proxies
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, **headers)
    assert client_address(request) == expected


# -- lockout and the decision's address ----------------------------------------------------


class HiddenInputs(HTMLParser):
    """The hidden fields of the page's forms, as a browser would send them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("type") == "hidden" and found.get("name"):
            self.fields[found["name"] or ""] = found.get("value") or ""


def approve(client: Client, run_id: str, *, forwarded_for: str) -> Decision:
    """Approve a waiting run from its review page, sending the form the page holds."""
    page = client.get(f"/approvals/{run_id}/")
    assert page.status_code == 200
    parser = HiddenInputs()
    parser.feed(page.content.decode())
    data = {**parser.fields, "decision": "approve", "note": "ok"}
    response = client.post(
        f"/approvals/{run_id}/", data, headers={"X-Forwarded-For": forwarded_for}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return Decision.objects.get()


def test_without_a_trusted_proxy_a_forged_forwarded_for_changes_nothing(approver: Any) -> None:
    assert django_settings.TRUSTED_PROXY_COUNT == 0  # the default
    for attempt in range(5):  # a new forged address each time: still one client
        forging = Client(REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR=f"198.51.100.{attempt}")
        log_in(forging, "ada", "wrong")
    forging = Client(REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert log_in(forging, "ada", PASSWORD).status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.5"}

    run = start_run()
    client = Client(REMOTE_ADDR="203.0.113.6")
    client.force_login(approver)
    decision = approve(client, run.run_id, forwarded_for="198.51.100.1")
    assert decision.client_address == "203.0.113.6"


def test_behind_a_trusted_proxy_locks_and_decisions_see_the_client(
    settings: Any, approver: Any
) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    make_user("bob", "Approvers")
    mallory = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.7")
    for _ in range(5):
        log_in(mallory, "ada", "wrong")
    assert log_in(mallory, "ada", PASSWORD).status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.7"}
    # Naming another address to the proxy does not lift the lock: the proxy appends the real one.
    forging = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.7")
    assert log_in(forging, "ada", PASSWORD).status_code == 429
    # Ada, at another address behind the same proxy, is not locked out by Mallory.
    ada = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.8")
    assert log_in(ada, "ada", PASSWORD).status_code == 302
    # Nor is anyone else at Mallory's address.
    assert log_in(mallory, "bob", PASSWORD).status_code == 302

    run = start_run()
    decision = approve(ada, run.run_id, forwarded_for="192.0.2.1, 198.51.100.8")
    assert decision.client_address == "198.51.100.8"


def test_the_login_pages_still_open_without_a_login() -> None:
    assert Client().get("/accounts/login/").status_code == 200
    assert Client().get("/admin/login/").status_code == 200


# -- a burst of wrong passwords against gunicorn -------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gunicorn")


@pytest.fixture(scope="module")
def checks_file(server_dir: Path) -> Path:
    return server_dir / "password-checks"


@pytest.fixture(scope="module")
def gunicorn(
    django_db_setup: None, django_db_blocker: Any, server_dir: Path, checks_file: Path
) -> Iterator[str]:
    """gunicorn with 10 worker processes on the test database, counting password checks."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env = {
        **clean,
        "DJANGO_SETTINGS_MODULE": "tests.password_checks_settings",
        "DJANGO_SECRET_KEY": "production-like-secret-for-this-test-only-0123456789abcdef",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_HTTPS": "0",  # the test talks plain HTTP to gunicorn
        "DJANGO_STATIC_ROOT": str(django_settings.STATIC_ROOT),  # collected for the session
        "DATABASE_URL": database_url(),
        ENV: str(checks_file),
    }
    port = free_port()
    log_path = server_dir / "gunicorn.log"  # a file: a full pipe would stall the workers
    log = log_path.open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "neurocore_console.wsgi",
            "--workers",
            "10",
            "--preload",  # all ten ready at once: the burst meets ten processes
            "--bind",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/accounts/login/", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    server.kill()
                    raise AssertionError(log_path.read_text()) from None
                time.sleep(0.1)
        # Every worker's first request loads templates and connects to the database,
        # which would stagger a burst sent to a cold server: warm them all up first.
        pages = [base + "/accounts/login/", base + "/admin/login/"] * 40
        with ThreadPoolExecutor(max_workers=40) as pool:
            list(pool.map(lambda page: urllib.request.urlopen(page, timeout=30).close(), pages))
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        # Its workers exit without closing their SQLite connections: the last connection
        # closed cleanly folds the write-ahead log back in, so -wal is not left behind.
        with django_db_blocker.unblock():
            connection.ensure_connection()
            connection.close()


def post_login(url: str, csrf: tuple[str, str], username: str, password: str) -> int:
    cookie, token = csrf
    form = {"username": username, "password": password, "csrfmiddlewaretoken": token}
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), headers={"Cookie": f"csrftoken={cookie}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize(
    ("size", "path", "spellings"),
    [
        pytest.param(20, "/accounts/login/", ["ada"], id="20"),
        pytest.param(50, "/accounts/login/", ["ada"], id="50"),
        pytest.param(20, "/admin/login/", ["ada"], id="20-admin"),
        # Spellings the login form cleans to "ada" (stripped, NFKC) share its lock.
        pytest.param(
            20, "/accounts/login/", ["ada", " ada ", "\uff41\uff44\uff41"], id="20-spellings"
        ),
    ],
)
def test_a_parallel_burst_of_wrong_passwords_gets_no_more_checks_than_the_limit(
    gunicorn: str,
    checks_file: Path,
    size: int,
    path: str,
    spellings: list[str],
    record_property: Any,
) -> None:
    """Each attempt for a username waits for the one before (runs.login): the sixth and later
    see five failures and are refused before their password is checked."""
    make_user("ada", "Approvers")
    checks_file.write_text("")
    url = gunicorn + path
    with urllib.request.urlopen(url, timeout=10) as page:
        cookie = re.search(r"csrftoken=([^;]+)", page.headers["Set-Cookie"])
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
    assert cookie
    assert token
    csrf = (cookie.group(1), token.group(1))
    barrier = threading.Barrier(size)

    def attempt(number: int) -> int:
        barrier.wait()
        return post_login(url, csrf, spellings[number % len(spellings)], "wrong")

    with ThreadPoolExecutor(max_workers=size) as pool:
        statuses = list(pool.map(attempt, range(size)))
    checks = checks_counted(checks_file)
    record_property("password_checks_in_burst", checks)
    print(f"\nburst of {size} wrong passwords at {path} as {spellings}: {checks} password checks")
    limit = django_settings.AXES_FAILURE_LIMIT
    assert statuses.count(200) == limit - 1  # refused after a check; the fifth failure locks
    assert statuses.count(429) == size - (limit - 1)
    assert checks == limit, f"{checks} password checks for {size} attempts (limit {limit})"
    assert post_login(url, csrf, "ada", PASSWORD) == 429  # the account stays locked
    assert checks_counted(checks_file) == limit  # without a check
