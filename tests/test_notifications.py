"""Approver notifications: back-off per suspension, values that cannot be mailed, any run id."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from runs.models import Run, SuspensionNotice
from runs.services import notifications
from runs.services.notifications import suspensions_announce
from tests.conftest import FailingEmailBackend, make_user, start_run

pytestmark = pytest.mark.django_db(transaction=True)

FAILING = {"default": {"BACKEND": "tests.conftest.FailingEmailBackend"}}
LOCMEM = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}


class CountingFailingBackend(FailingEmailBackend):
    """A mail server that is down, counting how often it was tried."""

    attempts = 0

    def send_messages(self, email_messages: Any) -> int:
        CountingFailingBackend.attempts += 1
        return super().send_messages(email_messages)


class ExplodingBackend(LocmemBackend):
    """Delivers to ``mail.outbox``, but raises on a subject mentioning "explodes"."""

    def send_messages(self, messages: Any) -> int:
        if any("explodes" in message.subject for message in messages):
            raise RuntimeError("the backend cannot cope with this one")
        return super().send_messages(messages)


@pytest.fixture(autouse=True)
def mail_answers() -> None:
    """Each test starts with the mail server last seen working (module state per process)."""
    notifications._mail_outage.since = None


def waiting_run(run_id: str, *, blueprint: str = "payments", question: str = "Pay?") -> Run:
    """A run waiting at an approval gate, as the store records one."""
    now = timezone.now()
    return Run.objects.create(
        run_id=run_id,
        blueprint_name=blueprint,
        status=Run.Status.SUSPENDED,
        awaits_decision=True,
        suspended_at_node="finance_review",
        suspension_reason=question,
        created_at=now,
        updated_at=now,
    )


def notice_of(run: Run) -> SuspensionNotice:
    return SuspensionNotice.objects.get(run_id=run.run_id)


def test_a_failed_send_backs_off_per_suspension_doubling_to_an_hour(
    approver: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    run = start_run()
    settings.MAILERS = FAILING
    started = timezone.now()

    assert suspensions_announce(now=started) == 0
    notice = notice_of(run)
    assert (notice.attempts, notice.retry_at) == (1, started + timedelta(minutes=1))
    assert "SMTP server unreachable" in notice.last_error

    # Not before its time: however often the worker looks.
    for seconds in (5, 10, 30, 59):
        suspensions_announce(now=started + timedelta(seconds=seconds))
    assert notice_of(run).attempts == 1

    gaps = []
    now: datetime = notice.retry_at
    for _ in range(8):
        suspensions_announce(now=now)
        notice = notice_of(run)
        gaps.append((notice.retry_at - now) / timedelta(minutes=1))
        now = notice.retry_at
    assert gaps == [2, 4, 8, 16, 32, 60, 60, 60]
    assert notice.attempts == 9

    settings.MAILERS = LOCMEM
    assert suspensions_announce(now=now - timedelta(seconds=1)) == 0  # still not due
    assert suspensions_announce(now=now) == 1
    notice = notice_of(run)
    assert (notice.attempts, notice.retry_at, notice.last_error, notice.recipients) == (
        10,
        None,
        "",
        1,
    )
    assert suspensions_announce(now=now + timedelta(hours=2)) == 0
    assert [m.to for m in mail.outbox] == [[approver.email]]

    # Ten failures, one warning; and one line when mail goes out again.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warnings if w.startswith("Cannot send email")]) == 1
    assert len([w for w in warnings if w.startswith("Email goes out again")]) == 1
    assert len(warnings) == 2


def test_an_unreachable_server_is_waited_for_once_per_sweep(approver: Any, settings: Any) -> None:
    runs = [waiting_run(f"run-{i}") for i in range(3)]
    settings.MAILERS = {"default": {"BACKEND": f"{__name__}.CountingFailingBackend"}}
    CountingFailingBackend.attempts = 0
    now = timezone.now()

    suspensions_announce(now=now)
    assert CountingFailingBackend.attempts == 1
    for run in runs:  # each suspension keeps its own notice and schedule
        notice = notice_of(run)
        assert (notice.attempts, notice.retry_at) == (1, now + timedelta(minutes=1))
        assert "SMTP server unreachable" in notice.last_error

    suspensions_announce(now=now + timedelta(seconds=30))
    assert CountingFailingBackend.attempts == 1


def test_a_retry_stops_when_the_run_stops_waiting(approver: Any, settings: Any) -> None:
    run = waiting_run("run-decided-elsewhere")
    settings.MAILERS = FAILING
    now = timezone.now()
    suspensions_announce(now=now)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.CANCELLED, awaits_decision=False)

    suspensions_announce(now=now + timedelta(minutes=1))
    notice = notice_of(run)
    assert (notice.attempts, notice.retry_at) == (1, None)


def test_a_question_with_line_breaks_is_mailed_on_one_line(approver: Any) -> None:
    waiting_run(
        "run-multiline",
        blueprint="pay\nments",
        question="Pay the supplier?\r\nAmount: 120 EUR\u2028(urgent)",
    )

    assert suspensions_announce() == 1
    message = mail.outbox[0]
    assert message.subject == (
        "Approval needed: pay ments — Pay the supplier? Amount: 120 EUR (urgent)"
    )
    assert "Pay the supplier?\r\nAmount: 120 EUR" in message.body  # the body keeps them
    notice = SuspensionNotice.objects.get()
    assert (notice.retry_at, notice.last_error, notice.recipients) == (None, "", 1)


def test_an_address_that_cannot_be_mailed_is_reported_once_not_retried(
    approver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    make_user("broken", "Approvers", email="broken\n@example.com")
    run = waiting_run("run-with-a-broken-approver")
    now = timezone.now()

    assert suspensions_announce(now=now) == 1  # the others are still told
    assert [m.to for m in mail.outbox] == [[approver.email]]
    notice = notice_of(run)
    assert notice.retry_at is None
    assert notice.recipients == 1
    assert "not sent, for good" in notice.last_error
    assert "broken\\n@example.com" in notice.last_error

    for hours in (1, 2, 12):
        suspensions_announce(now=now + timedelta(hours=hours))
    assert notice_of(run).attempts == 1
    assert len(mail.outbox) == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "cannot be emailed" in errors[0].getMessage()


def test_a_notice_nobody_can_receive_is_not_retried(db: None) -> None:
    make_user("broken", "Approvers", email="broken\r\n@example.com")
    run = waiting_run("run-only-broken")
    now = timezone.now()

    assert suspensions_announce(now=now) == 0
    notice = notice_of(run)
    assert (notice.attempts, notice.retry_at) == (1, None)
    assert "not sent, for good" in notice.last_error
    suspensions_announce(now=now + timedelta(hours=3))
    assert notice_of(run).attempts == 1


RUN_IDS = ["team/2026/run 1", "what?x=1#frag", "100%/done", "ünï côdé"]


def test_links_reach_the_review_page_for_any_run_id(
    approver: Any, client: Client, settings: Any
) -> None:
    settings.CONSOLE_BASE_URL = "https://console.example.com"
    for run_id in RUN_IDS:
        waiting_run(run_id)

    assert suspensions_announce() == len(RUN_IDS)
    links = {
        "https://console.example.com" + reverse("approvals:review", args=[run_id]): run_id
        for run_id in RUN_IDS
    }
    assert sorted(message.body.splitlines()[-1].rsplit(" ", 1)[1] for message in mail.outbox) == (
        sorted(links)
    )

    # Every id, '/' and all, is one quoted path segment that reaches its page.
    client.force_login(approver)
    for link, run_id in links.items():
        assert "/" not in urlsplit(link).path.removeprefix("/approvals/").rstrip("/")
        page = client.get(urlsplit(link).path)
        assert page.status_code == 200, run_id
        assert page.context["run"].run_id == run_id


def test_one_run_that_raises_does_not_stop_the_sweep(
    approver: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first = waiting_run("a/first", question="This one explodes")
    second = waiting_run("b/second?", question="This one is fine")
    settings.MAILERS = {"default": {"BACKEND": f"{__name__}.ExplodingBackend"}}
    now = timezone.now()

    assert suspensions_announce(now=now) == 1
    assert [m.subject for m in mail.outbox] == ["Approval needed: payments — This one is fine"]
    assert reverse("approvals:review", args=[second.run_id]) in mail.outbox[0].body
    failed = notice_of(first)
    assert (failed.attempts, failed.retry_at) == (1, now + timedelta(minutes=1))
    assert failed.last_error == "RuntimeError: the backend cannot cope with this one"
    assert notice_of(second).retry_at is None
    assert any(r.exc_info and first.run_id in r.getMessage() for r in caplog.records)

    # It backs off like any failed send, and goes out once the fault is gone.
    settings.MAILERS = LOCMEM
    assert suspensions_announce(now=now + timedelta(seconds=30)) == 0
    assert suspensions_announce(now=now + timedelta(minutes=1)) == 1
    assert notice_of(first).retry_at is None
