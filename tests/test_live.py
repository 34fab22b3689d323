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
from django.contrib.auth.models import Group

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


def test_twenty_people_racing_on_a_two_of_five_gate_count_two_approvals(
    live_server: Any,
) -> None:
    """Five Finance members may decide a gate needing two of them; fifteen other
    approvers click too. Exactly two approvals count, one resume is queued, and
    everyone else is told why: who already approved, or that Finance decides."""
    finance = Group.objects.create(name="Finance")
    run = start_run("policy.yaml", amount=420, requested_by="rita@example.com")
    review = f"/approvals/{run.run_id}/"
    sessions = []
    for i in range(CLIENTS):
        person = make_user(f"person{i}", "Approvers")
        if i < 5:
            person.groups.add(finance)
        session = Browserless(live_server.url)
        session.log_in(f"person{i}")
        page = session.get(review)
        form = {
            "csrfmiddlewaretoken": TOKEN.search(page).group(1),
            "gate": run.suspended_at_node,
            "suspended_at": run.updated_at.isoformat(),
            "decision": "approve",
            "note": f"click {i}",
            "input_cost_center": f"CC-{i}",
        }
        sessions.append((session, form))
    barrier = threading.Barrier(CLIENTS)

    def click(session_and_form: tuple[Browserless, dict[str, str]]) -> str:
        session, form = session_and_form
        barrier.wait()
        message, *_ = MESSAGE.findall(session.post(review, form))
        return unescape(message)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        messages = list(pool.map(click, sessions))

    approvals = Decision.objects.filter(run=run, approved=True).order_by("decided_at", "pk")
    assert approvals.count() == 2
    assert {d.decided_by.groups.filter(name="Finance").exists() for d in approvals} == {True}
    assert messages.count("Approved. The gate needs more approvals: the run waits for them.") == 1
    assert messages.count("Approved. The run continues in the background.") == 1
    first, second = (d.decided_by_identity for d in approvals)
    already = f"Already decided: approved by {first} and {second}"
    winners = {d.decided_by.username for d in approvals}
    for i, message in enumerate(messages):
        if f"person{i}" in winners:
            continue
        if i < 5:  # the other Finance members: who already approved
            assert message.startswith(already), message
        else:  # the others: not theirs to decide (or, once settled, already decided)
            assert message.startswith(("Only members of Finance may decide", already)), message
    (resume,) = RunAction.objects.filter(run=run)
    assert resume.decision == approvals.last()
    assert resume.resume_data["by"] == f"{first}, {second}"
