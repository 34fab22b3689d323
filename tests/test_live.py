"""Concurrent clients against a live console over HTTP (on SQLite and PostgreSQL)."""

from __future__ import annotations

import http.cookiejar
import re
import threading
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from typing import Any

import pytest

from runs.models import Decision, Run, RunAction
from tests.conftest import PASSWORD, make_user, start_run

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 20
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
MESSAGE = re.compile(r'<li class="message [a-z]+" role="status">([^<]*)</li>')


class Browserless:
    """A person's HTTP session: cookies, CSRF token, form posts."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self.opener.open(self.base_url + path, timeout=30) as response:
            return response.read().decode()

    def post(self, path: str, form: dict[str, str]) -> str:
        data = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, headers={"Referer": self.base_url + path}
        )
        try:
            with self.opener.open(request, timeout=30) as response:  # follows the redirect
                return response.read().decode()
        except urllib.error.HTTPError as refused:  # 409: refused, the page says why
            return refused.read().decode()

    def log_in(self, username: str) -> None:
        page = self.get("/accounts/login/")
        token = TOKEN.search(page).group(1)
        self.post(
            "/accounts/login/",
            {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        )


def test_twenty_clients_clicking_approve_at_once_make_one_decision(live_server: Any) -> None:
    run = start_run()
    review = f"/approvals/{run.run_id}/"
    sessions = []
    for i in range(CLIENTS):
        make_user(f"approver{i}", "Approvers")
        session = Browserless(live_server.url)
        session.log_in(f"approver{i}")
        page = session.get(review)
        form = {
            "csrfmiddlewaretoken": TOKEN.search(page).group(1),
            "gate": re.search(r'name="gate" value="([^"]+)"', page).group(1),
            "suspended_at": re.search(r'name="suspended_at" value="([^"]+)"', page).group(1),
            "decision": "approve",
            "note": f"click {i}",
        }
        sessions.append((session, form))
    barrier = threading.Barrier(CLIENTS)

    def click(session_and_form: tuple[Browserless, dict[str, str]]) -> str:
        session, form = session_and_form
        barrier.wait()
        message, *_ = MESSAGE.findall(session.post(review, form))  # then the note given back
        return unescape(message)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        messages = list(pool.map(click, sessions))

    assert messages.count("Approved. The run continues in the background.") == 1
    assert sum(m.startswith("Already decided: ") for m in messages) == CLIENTS - 1
    assert Decision.objects.filter(run=run).count() == 1
    assert RunAction.objects.filter(run=run).count() == 1
    assert Run.objects.get(pk=run.pk).status == Run.Status.SUSPENDED  # the worker resumes it
