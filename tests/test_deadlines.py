"""Deadlines at approval gates: reminders, escalation and expiry, with the clock driven
by time-machine (never by sleeping)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core import mail
from django.db import connection

from runs.errors import DecisionRefused
from runs.gates import POLICY_SEAT
from runs.models import ApprovalPolicy, Decision, GateDeadline, Run, RunAction, Source
from runs.presentation import due_words, instant_text
from runs.services.deadlines import (
    EXPIRY_IDENTITY,
    deadline_expire,
    deadlines_apply,
    deadlines_recompute,
)
from runs.services.notifications import suspensions_announce
from runs.services.reminders import remind_every
from tests.conftest import decide, make_user, run_queued_tasks, start_run

pytestmark = pytest.mark.django_db(transaction=True)

LOCMEM = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def locmem_mail(settings: Any) -> None:
    settings.MAILERS = LOCMEM


@pytest.fixture
def finance(db: None) -> Any:
    """Fran, an approver in Finance (the gate's approvers)."""
    Group.objects.get_or_create(name="Finance leads")
    user = make_user("fran", "Approvers")
    user.groups.add(Group.objects.get_or_create(name="Finance")[0])
    return user


@pytest.fixture
def lead(db: None) -> Any:
    """Lee, an approver in Finance leads (the gate's escalation group) only."""
    user = make_user("lee", "Approvers")
    user.groups.add(Group.objects.get_or_create(name="Finance leads")[0])
    return user


@pytest.fixture
def clock() -> Iterator[Any]:
    """A clock the test moves: ``clock(to)`` travels to the instant ``to`` (ticking on)."""
    travels: list[Any] = []

    def travel(to: datetime) -> None:
        while travels:
            travels.pop().stop()
        traveller = time_machine.travel(to, tick=True)
        traveller.start()
        travels.append(traveller)

    yield travel
    while travels:
        travels.pop().stop()


def waiting(blueprint: str = "deadline.yaml") -> Run:
    run = start_run(blueprint)
    assert run.status == Run.Status.SUSPENDED
    assert run.suspended_at_node == "finance_review"
    return run


def deadline_of(run: Run) -> GateDeadline:
    return GateDeadline.objects.get(run_id=run.run_id)


def to(addresses: str) -> list[tuple[str, str]]:
    """The outbox as (recipient, subject's first word) pairs, sorted."""
    return sorted((m.to[0], m.subject.split(" ")[0]) for m in mail.outbox if addresses in m.to[0])


def test_a_suspension_gets_the_due_and_expiry_of_its_gate_once() -> None:
    run = waiting()
    assert deadlines_apply().recorded == 1
    assert deadlines_apply().recorded == 0
    deadline = deadline_of(run)
    assert deadline.due_at == run.updated_at + DAY
    assert deadline.expires_at == run.updated_at + 3 * DAY
    assert (deadline.on_expiry, deadline.remind_at) == ("reject", deadline.due_at)
    plain = start_run()  # a gate without times gets a row, read once
    deadlines_apply()
    assert deadline_of(plain).due_at is None
    assert deadline_of(plain).remind_at is None


def test_reminders_go_once_per_period_from_the_due_time_and_escalate_once(
    finance: Any, lead: Any, superuser: Any, clock: Any
) -> None:
    run = waiting()
    deadlines_apply()
    clock(run.updated_at + DAY - MINUTE)
    deadlines_apply()
    assert mail.outbox == []  # not due yet

    clock(run.updated_at + DAY + MINUTE)
    assert deadlines_apply().reminded == 2
    subjects = {m.to[0]: m.subject for m in mail.outbox}
    assert subjects["fran@example.com"].startswith(
        "Reminder — Overdue by 1 minute: purchase-reject"
    )
    assert subjects["lee@example.com"].startswith("Escalated to you — Overdue by 1 minute")
    assert "root@example.com" not in subjects  # not in the gate's groups: may not decide
    lee = next(m for m in mail.outbox if m.to == ["lee@example.com"])
    assert "It was escalated to Finance leads: as a member, you may decide it now." in lee.body
    assert "Overdue by 1 minute (due " in lee.body
    assert "then it is rejected." in lee.body
    deadlines_apply()
    clock(run.updated_at + DAY + 12 * HOUR)
    deadlines_apply()
    assert len(mail.outbox) == 2  # once per period (the gate's 24h)

    clock(run.updated_at + 2 * DAY + 2 * MINUTE)
    deadlines_apply()
    assert to("lee@") == [("lee@example.com", "Escalated"), ("lee@example.com", "Reminder")]
    assert len(to("fran@")) == 2
    deadline = deadline_of(run)
    assert deadline.reminders == 2
    assert deadline.escalated_at is not None
    assert remind_every(timedelta(minutes=30)) == HOUR
    assert remind_every(7 * DAY) == DAY


def test_who_already_decided_a_quorum_gate_is_not_reminded(finance: Any, clock: Any) -> None:
    other = make_user("flo", "Approvers")
    other.groups.add(Group.objects.get(name="Finance"))
    ApprovalPolicy.objects.create(blueprint_pattern="purchase-*", approvals=2)
    run = waiting()
    decide(run, finance)
    deadlines_apply()
    clock(run.updated_at + DAY + MINUTE)
    deadlines_apply()
    assert [m.to[0] for m in mail.outbox] == ["flo@example.com"]


def test_an_escalation_group_may_decide_only_once_overdue(
    finance: Any, lead: Any, clock: Any
) -> None:
    run = waiting()
    clock(run.updated_at + DAY - MINUTE)
    with pytest.raises(DecisionRefused, match=r"Once it is overdue .* Finance leads may decide"):
        decide(run, lead)
    clock(run.updated_at + DAY + MINUTE)
    decision = decide(run, lead, note="covering for Fran")
    assert decision.decided_by == lead
    assert decision.resumption is not None
    run_queued_tasks()
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED


def test_expiry_rejects_through_the_worker_and_the_run_really_ends_rejected(
    finance: Any, clock: Any
) -> None:
    run = waiting()
    deadlines_apply()
    clock(run.updated_at + 3 * DAY - MINUTE)
    assert deadlines_apply().expired == 0
    clock(run.updated_at + 3 * DAY + MINUTE)
    assert deadlines_apply().expired == 1

    decision = Decision.objects.get(run_id=run.run_id)
    assert (decision.approved, decision.decided_by, decision.seat, decision.source) == (
        False,
        None,
        POLICY_SEAT,
        Source.POLICY,
    )
    assert decision.decided_by_identity == EXPIRY_IDENTITY
    assert decision.note == (
        "Undecided for 3 days: rejected by the gate's expiry policy, set by the blueprint's author."
    )
    assert decision.policy["on_expiry"] == "reject"
    assert decision.policy["expires"] == "3d"
    assert decision.resumption.resume_data["by"] == EXPIRY_IDENTITY
    assert deadline_of(run).settled_at is not None
    run_queued_tasks()
    run.refresh_from_db()
    assert run.status == Run.Status.REJECTED
    assert "expiry policy" in (run.error or "")
    deadlines_apply()
    assert Decision.objects.filter(run_id=run.run_id).count() == 1


def test_expiry_approves_and_neurocore_runs_the_rest(clock: Any) -> None:
    run = waiting("deadline_approve.yaml")
    clock(run.updated_at + 3 * DAY + MINUTE)
    assert deadlines_apply().expired == 1  # recorded and expired in one pass
    run_queued_tasks()
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert run.final_context["data"]["finished"] is True
    assert run.final_context["data"]["approval"]["by"] == EXPIRY_IDENTITY
    assert Decision.objects.get(run_id=run.run_id).approved


def test_on_expiry_none_records_the_expiry_and_keeps_waiting(finance: Any, clock: Any) -> None:
    run = waiting("deadline_none.yaml")
    clock(run.updated_at + 3 * DAY + MINUTE)
    assert deadlines_apply().expired == 0
    deadline = deadline_of(run)
    assert deadline.expired_at is not None
    assert deadline.settled_at is None
    assert not Decision.objects.filter(run_id=run.run_id).exists()
    run.refresh_from_db()
    assert run.status == Run.Status.SUSPENDED
    assert [m.to[0] for m in mail.outbox] == ["fran@example.com"]  # reminders go on
    clock(run.updated_at + 4 * DAY + MINUTE)
    deadlines_apply()
    assert deadline_of(run).reminders == 2
    assert decide(run, finance).resumption is not None  # a person still may


def test_an_expiry_waits_for_an_open_action_and_leaves_a_decided_run(
    finance: Any, clock: Any
) -> None:
    run = waiting()
    other = waiting()
    deadlines_apply()
    RunAction.objects.create(run=run, kind=RunAction.Kind.RESUME, requested_by_identity="op")
    decide(other, finance, approved=False, note="no")
    clock(run.updated_at + 3 * DAY + MINUTE)
    assert deadlines_apply().expired == 0
    assert Decision.objects.filter(seat=POLICY_SEAT).count() == 0
    assert deadline_of(other).settled_at is not None
    RunAction.objects.filter(run_id=run.run_id).update(state=RunAction.State.DONE)
    assert deadlines_apply().expired == 1


def test_a_stale_deadline_acts_once(clock: Any) -> None:
    run = waiting()
    deadlines_apply()
    stale = deadline_of(run)
    clock(run.updated_at + 3 * DAY + MINUTE)
    now = datetime.now(UTC)
    assert deadline_expire(deadline=stale, now=now) is not None
    assert deadline_expire(deadline=stale, now=now) is None  # read again under the lock
    assert Decision.objects.filter(run_id=run.run_id).count() == 1


def test_two_workers_sweeping_at_once_act_once(finance: Any, clock: Any) -> None:
    runs = [waiting() for _ in range(3)]
    clock(max(run.updated_at for run in runs) + DAY + MINUTE)
    start = threading.Barrier(2)

    def sweep(_: int) -> None:
        start.wait()
        try:
            deadlines_apply()
        finally:
            connection.close()  # each thread owns its Django connection

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(sweep, range(2)))
    assert GateDeadline.objects.count() == 3
    assert len(mail.outbox) == 3  # one reminder per run
    assert all(d.reminders == 1 for d in GateDeadline.objects.all())

    clock(max(run.updated_at for run in runs) + 3 * DAY + MINUTE)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(sweep, range(2)))
    assert Decision.objects.filter(seat=POLICY_SEAT).count() == 3
    assert RunAction.objects.filter(kind=RunAction.Kind.DECISION).count() == 3


def test_a_console_policy_change_moves_the_deadlines_of_waiting_runs(clock: Any) -> None:
    run = waiting()
    deadlines_apply()
    policy = ApprovalPolicy.objects.create(
        blueprint_pattern="purchase-*", due=timedelta(hours=2), expires=timedelta(hours=5)
    )
    assert deadlines_recompute(policies=[policy]) == 1
    deadline = deadline_of(run)
    assert deadline.due_at == deadline.remind_at == run.updated_at + 2 * HOUR
    assert deadline.expires_at == run.updated_at + 5 * HOUR
    policy.delete()
    assert deadlines_recompute(policies=[policy]) == 1
    assert deadline_of(run).due_at == run.updated_at + DAY
    elsewhere = ApprovalPolicy.objects.create(blueprint_pattern="refund*", due=HOUR)
    assert deadlines_recompute(policies=[elsewhere]) == 0


def test_the_announcement_says_when_it_is_due_and_expires(finance: Any) -> None:
    run = waiting()
    suspensions_announce()
    body = next(m.body for m in mail.outbox if m.to == ["fran@example.com"])
    assert f"Due in 23 hours (due {instant_text(run.updated_at + DAY, UTC)})." in body
    assert "Once overdue, members of Finance leads may decide too." in body
    assert "(in 2 days): then it is rejected." in body


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        (3 * HOUR + MINUTE, "Due in 3 hours"),
        (-(2 * DAY + HOUR), "Overdue by 2 days"),
        (timedelta(seconds=20), "Due now"),
        (-90 * timedelta(seconds=1), "Overdue by 1 minute"),
    ],
)
def test_due_times_in_words(offset: timedelta, words: str) -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert due_words(now + offset, now=now) == words


def test_two_real_workers_expire_a_gate_once_and_the_run_ends_rejected(
    start_worker: Any,
) -> None:
    # A console policy may bring the gate's expiry forward: to a second.
    ApprovalPolicy.objects.create(blueprint_pattern="purchase-*", expires=timedelta(seconds=1))
    run = waiting()
    for name in ("deadlines-a", "deadlines-b"):
        start_worker(
            name,
            DEADLINES_INTERVAL="0.2",
            DJANGO_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        )
    started = time.monotonic()
    while Run.objects.get(pk=run.run_id).status != Run.Status.REJECTED:
        assert time.monotonic() - started < 60, "the workers did not expire the gate"
        time.sleep(0.2)  # waiting for other processes, not for the clock
    decision = Decision.objects.get(run_id=run.run_id)
    assert decision.seat == POLICY_SEAT
    assert decision.note.startswith("Undecided for 1 second: rejected by the gate's expiry policy")
    assert "the console's policy" in decision.note
    assert RunAction.objects.filter(run_id=run.run_id).count() == 1
