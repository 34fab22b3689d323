"""Deadlines on the pages: the inbox sorts by due time and says it in words; the
dashboard shows the time to decision per blueprint and what is overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runs.models import Decision, GateDeadline, Run, RunAction, Source
from runs.presentation import instant_text
from runs.selectors import decision_times

pytestmark = pytest.mark.django_db

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def stored_run(run_id: str, *, blueprint: str = "payments", since: datetime) -> Run:
    """A run waiting at an approval gate since ``since``, as the store records one."""
    return Run.objects.create(
        run_id=run_id,
        blueprint_name=blueprint,
        status=Run.Status.SUSPENDED,
        awaits_decision=True,
        suspended_at_node="finance_review",
        suspension_reason=f"Pay {run_id}?",
        created_at=since,
        updated_at=since,
    )


def deadline(run: Run, due_at: datetime | None) -> GateDeadline:
    return GateDeadline.objects.create(
        run=run,
        gate="finance_review",
        suspended_at=run.updated_at,
        blueprint_name=run.blueprint_name,
        due_at=due_at,
        remind_at=due_at,
    )


def test_the_inbox_lists_the_soonest_due_first_and_says_overdue_in_words(
    approver_client: Any, django_assert_max_num_queries: Any
) -> None:
    now = datetime.now(UTC)
    no_times = stored_run("no-times", since=now - 5 * DAY)
    stored_run("unswept", since=now - 6 * DAY)  # the worker did not look yet
    later = stored_run("due-later", since=now - HOUR)
    overdue = stored_run("overdue", since=now - 4 * DAY)
    deadline(no_times, None)
    deadline(later, now + 3 * HOUR + 5 * MINUTE)
    deadline(overdue, now - 2 * DAY - HOUR)

    # session (and its idle write), user, time zone, permissions, delegations, scopes,
    # blueprints, count, page, reopenings, console policies, decisions: none per row
    with django_assert_max_num_queries(16) as first:
        response = approver_client.get("/approvals/")
    rows = [run.run_id for run, *_ in response.context["rows"]]
    assert rows == ["overdue", "due-later", "unswept", "no-times"]
    html = response.content.decode()
    assert '<span class="overdue">Overdue by 2 days</span>' in html
    assert '<span class="due-soon">Due in 3 hours</span>' in html
    assert instant_text(now - 2 * DAY - HOUR, UTC) in html

    for number in range(20):
        deadline(stored_run(f"more-{number}", since=now - DAY), now + number * HOUR)
    with django_assert_max_num_queries(len(first.captured_queries)):
        assert len(approver_client.get("/approvals/").context["rows"]) == 24  # no query a row


def settled(run: Run, *, waited: timedelta, decided_at: datetime, resumed: bool = True) -> None:
    """A decision on ``run``'s suspension after ``waited`` that settled it and queued a
    resume (or, not ``resumed``, a quorum's first approval)."""
    decision = Decision.objects.create(
        settles=resumed,
        run=run,
        gate="finance_review",
        suspended_at=decided_at - waited,
        approved=True,
        decided_by_identity="ada@example.com",
        seat=f"test:{run.run_id}:{waited}",
        decided_at=decided_at,
        source=Source.WEB,
        gate_message="Pay?",
        evidence_digest="0" * 64,
    )
    if resumed:
        RunAction.objects.create(
            run=run,
            kind=RunAction.Kind.DECISION,
            decision=decision,
            requested_by_identity="ada@example.com",
            state=RunAction.State.DONE,
        )


def test_the_dashboard_shows_time_to_decision_per_blueprint_and_what_is_overdue(
    superuser: Any, client: Any
) -> None:
    now = datetime.now(UTC)
    decided = stored_run("decided", since=now - 40 * DAY)
    for hours in range(1, 11):
        settled(decided, waited=hours * HOUR, decided_at=now - DAY - hours * MINUTE)
    settled(decided, waited=100 * HOUR, decided_at=now - 31 * DAY)  # too long ago
    settled(decided, waited=200 * HOUR, decided_at=now - DAY, resumed=False)  # a quorum's first
    one = stored_run("one", blueprint="refunds", since=now - 40 * DAY)
    settled(one, waited=30 * MINUTE, decided_at=now - HOUR)
    late = stored_run("late", since=now - 2 * DAY)
    deadline(late, now - DAY)
    deadline(stored_run("not-yet", since=now - HOUR), now + HOUR)
    gone = stored_run("gone", since=now - 3 * DAY)
    deadline(gone, now - DAY)
    Run.objects.filter(pk="gone").update(status=Run.Status.CANCELLED)

    times = {t.blueprint: t for t in decision_times(now=now)}
    assert (times["payments"].decisions, times["payments"].overdue) == (10, 1)
    assert times["payments"].median == pytest.approx(5 * 3600, abs=1)
    assert times["payments"].p90 == pytest.approx(9 * 3600, abs=1)
    assert times["refunds"].median == times["refunds"].p90 == pytest.approx(1800, abs=1)
    assert times["refunds"].overdue == 0

    client.force_login(superuser)
    html = client.get("/admin/").content.decode()
    assert "<strong>1</strong> overdue" in html
    assert (
        "<tr><td>payments</td><td>10</td><td>5 h 0 min</td><td>9 h 0 min</td><td>1</td></tr>"
        in html
    )
