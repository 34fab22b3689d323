"""Services: decisions, resumptions through NeuroCore, recovery, notices."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from neurocore.persistence import RunStatus

from runs import selectors, worker
from runs.errors import (
    ActionInFlight,
    AlreadyDecided,
    ConsoleError,
    DecisionRefused,
    RunNotFound,
)
from runs.models import Decision, Run, RunAction, Source, SuspensionNotice
from runs.services.notifications import suspensions_announce
from runs.services.operations import run_cancel, run_delete, run_replay_request, run_resume_request
from runs.services.recovery import run_actions_recover
from runs.store import DjangoRunStore
from tests.conftest import decide, make_user, run_queued_tasks, start_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_approval_is_recorded_with_its_evidence_and_resumes_the_run(approver: Any) -> None:
    run = start_run(amount=40)
    decision = decide(run, approver, note="within budget", client_address="10.1.2.3")

    assert decision.gate == "finance_review"
    assert decision.suspended_at == run.updated_at
    assert decision.decided_by == approver
    assert decision.decided_by_identity == "ada@example.com"
    assert decision.gate_message == "Approve the payment?"
    assert len(decision.evidence_digest) == 64
    assert decision.client_address == "10.1.2.3"
    resumption = decision.resumption
    assert resumption.state == RunAction.State.QUEUED
    assert resumption.kind == RunAction.Kind.DECISION
    assert resumption.resume_data == {
        "approved": True,
        "note": "within budget",
        "by": "ada@example.com",
        "decision_id": decision.pk,
        "approvals": [
            {
                "by": "ada@example.com",
                "note": "within budget",
                "at": decision.decided_at.isoformat(),
                "inputs": {},
            }
        ],
        "inputs": {},
    }
    assert decision.seat == f"user:{approver.pk}"
    assert DBTaskResult.objects.filter(pk=resumption.task_id, status="READY").exists()

    run_queued_tasks()

    run.refresh_from_db()
    resumption.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert run.final_context["data"]["approval"]["by"] == "ada@example.com"
    assert (resumption.state, resumption.outcome_status, resumption.attempts) == (
        RunAction.State.DONE,
        "completed",
        1,
    )


def test_a_rejection_ends_the_run_rejected_which_neurocore_reads_as_failed(
    approver: Any,
) -> None:
    run = start_run()
    decide(run, approver, approved=False, note="not budgeted")
    run_queued_tasks()
    run.refresh_from_db()
    assert run.status == Run.Status.REJECTED
    assert "not budgeted" in run.error
    resumption = RunAction.objects.get(run=run)
    assert resumption.outcome_status == "rejected"
    assert "not budgeted" in resumption.outcome_error
    store = DjangoRunStore()
    assert store.load_run(run.run_id).status == RunStatus.FAILED
    assert [r.run_id for r in store.list_runs(status=RunStatus.FAILED)] == [run.run_id]
    assert selectors.dashboard().failures_24h == 0
    assert selectors.run_count(status=Run.Status.REJECTED) == 1


def test_two_gates_get_one_decision_each(approver: Any) -> None:
    run = start_run("two_gates.yaml")
    decide(run, approver)
    run_queued_tasks()
    run.refresh_from_db()
    assert (run.status, run.suspended_at_node) == ("suspended", "legal_review")
    assert RunAction.objects.get(run=run).outcome_gate == "legal_review"
    decide(run, approver)
    run_queued_tasks()
    run.refresh_from_db()
    assert run.status == "completed"
    assert list(
        Decision.objects.filter(run=run).order_by("decided_at").values_list("gate", flat=True)
    ) == [
        "editor_review",
        "legal_review",
    ]


def test_second_decision_on_the_same_suspension_names_the_first(approver: Any) -> None:
    run = start_run()
    decide(run, approver)
    other = make_user("bob", "Approvers")
    with pytest.raises(
        AlreadyDecided,
        match=r"Already decided: ada@example.com approved this at "
        r"\d{1,2} \w{3} \d{4}, \d\d:\d\d UTC "
        r'\("ok"\)',
    ):
        decide(run, other)
    assert Decision.objects.count() == 1
    assert RunAction.objects.count() == 1


def test_twenty_approvers_at_once_make_one_decision_and_one_resume() -> None:
    run = start_run()
    approvers = [make_user(f"approver{i}", "Approvers") for i in range(20)]
    barrier = threading.Barrier(20)

    def attempt(user: Any) -> str:
        barrier.wait()
        try:
            decide(run, user, approved=user.username.endswith("0"), note="n")
            return "decided"
        except AlreadyDecided:
            return "already"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, approvers))

    assert outcomes.count("decided") == 1
    assert outcomes.count("already") == 19
    assert Decision.objects.count() == 1
    assert RunAction.objects.count() == 1
    assert DBTaskResult.objects.count() == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("completed", "This run is completed, not waiting"),
        ("cancelled", "This run is cancelled, not waiting"),
    ],
)
def test_runs_that_are_not_waiting_are_refused(approver: Any, status: str, message: str) -> None:
    run = start_run()
    Run.objects.filter(pk=run.pk).update(status=status)
    with pytest.raises(DecisionRefused, match=message):
        decide(run, approver)
    assert not Decision.objects.exists()


def test_unknown_run_is_refused(approver: Any) -> None:
    run = start_run()
    run.run_id = "no-such-run"
    with pytest.raises(RunNotFound, match="No run has the id 'no-such-run'"):
        decide(run, approver)


def test_a_decision_for_an_older_suspension_is_stale(approver: Any) -> None:
    run = start_run("two_gates.yaml")
    shown_gate, shown_at = run.suspended_at_node, run.updated_at
    decide(run, approver)
    run_queued_tasks()  # now waits at legal_review
    with pytest.raises(
        AlreadyDecided,
        match=r"ada@example.com approved this .* The run has moved on: it now waits at "
        r"'legal_review', a new question",
    ):
        decide(run, approver, shown_gate=shown_gate, shown_suspended_at=shown_at)
    assert Decision.objects.count() == 1


def test_rejection_needs_a_note_and_notes_are_bounded(approver: Any) -> None:
    run = start_run()
    with pytest.raises(DecisionRefused, match="a note is required to reject"):
        decide(run, approver, approved=False, note="   ")
    with pytest.raises(DecisionRefused, match="at most 2000"):
        decide(run, approver, note="x" * 2001)
    assert not Decision.objects.exists()


def test_only_approvers_may_decide(viewer: Any, operator: Any) -> None:
    run = start_run()
    for user in (viewer, operator):
        with pytest.raises(PermissionDenied):
            decide(run, user)
    assert not Decision.objects.exists()


def test_the_database_refuses_to_change_or_delete_a_decision(approver: Any) -> None:
    run = start_run()
    decision = decide(run, approver)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        Decision.objects.filter(pk=decision.pk).update(note="rewritten")
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        Decision.objects.filter(pk=decision.pk).delete()
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM runs_decision")
    assert Decision.objects.get(pk=decision.pk).note == "ok"


def test_deleting_a_run_or_the_decider_keeps_the_decision(approver: Any) -> None:
    run = start_run()
    decision = decide(run, approver)
    Run.objects.filter(pk=run.pk).delete()
    approver.delete()
    kept = Decision.objects.get(pk=decision.pk)
    assert kept.run_id == run.run_id
    assert kept.decided_by_identity == "ada@example.com"


def test_the_evidence_digest_changes_with_what_was_shown(approver: Any) -> None:
    first, second = start_run(amount=1), start_run(amount=2)
    d1, d2 = decide(first, approver), decide(second, approver)
    assert d1.evidence_digest != d2.evidence_digest


# -- recovery ------------------------------------------------------------------------


def test_a_resumption_whose_worker_died_is_queued_again_and_applied_once(approver: Any) -> None:
    run = start_run()
    decision = decide(run, approver)
    resumption = decision.resumption
    lost_task = DBTaskResult.objects.get(pk=resumption.task_id)
    lost_task.claim("killed-worker")  # a worker took the task ...
    long_ago = timezone.now() - timedelta(minutes=5)
    RunAction.objects.filter(pk=resumption.pk).update(  # ... claimed it, then went silent
        state=RunAction.State.RUNNING, attempts=1, heartbeat_at=long_ago, started_at=long_ago
    )

    assert run_actions_recover() == 1
    assert run_actions_recover() == 0  # once

    lost_task.refresh_from_db()
    assert lost_task.status == "FAILED"
    resumption.refresh_from_db()
    assert resumption.state == RunAction.State.QUEUED
    assert resumption.task_id != str(lost_task.pk)
    run_queued_tasks()
    resumption.refresh_from_db()
    run.refresh_from_db()
    assert (resumption.state, resumption.attempts, resumption.outcome_status) == (
        "done",
        2,
        "completed",
    )
    assert run.status == "completed"
    assert Decision.objects.count() == 1


def test_a_resumption_whose_task_never_ran_is_picked_up(approver: Any) -> None:
    run = start_run()
    resumption = decide(run, approver).resumption
    DBTaskResult.objects.filter(pk=resumption.task_id).update(
        status="RUNNING"
    )  # taken, never claimed
    RunAction.objects.filter(pk=resumption.pk).update(
        requested_at=timezone.now() - timedelta(minutes=5)
    )
    assert run_actions_recover() == 1
    run_queued_tasks()
    run.refresh_from_db()
    assert run.status == "completed"


def test_a_queued_resumption_with_a_waiting_task_is_left_alone(approver: Any) -> None:
    run = start_run()
    resumption = decide(run, approver).resumption
    RunAction.objects.filter(pk=resumption.pk).update(
        requested_at=timezone.now() - timedelta(minutes=5)
    )
    assert run_actions_recover() == 0


def test_a_retry_after_the_run_moved_on_does_not_apply_the_decision_again(approver: Any) -> None:
    run = start_run("two_gates.yaml")
    resumption = decide(run, approver).resumption
    run_queued_tasks()  # applied: the run waits at the second gate
    steps_before = run.steps.count()
    # The worker died after NeuroCore finished but before it recorded the outcome.
    RunAction.objects.filter(pk=resumption.pk).update(
        state=RunAction.State.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    run_actions_recover()
    run_queued_tasks()
    run.refresh_from_db()
    resumption.refresh_from_db()
    assert (run.status, run.suspended_at_node) == ("suspended", "legal_review")
    assert run.steps.count() == steps_before
    assert resumption.outcome_gate == "legal_review"


def test_a_stale_task_cannot_claim_a_requeued_resumption(approver: Any) -> None:
    run = start_run()
    resumption = decide(run, approver).resumption
    assert worker.run_action_execute(action_id=resumption.pk, task_id="some-other-task") is None
    resumption.refresh_from_db()
    assert resumption.state == RunAction.State.QUEUED


# -- notices -------------------------------------------------------------------------


def test_approvers_are_emailed_once_per_suspension(approver: Any, viewer: Any) -> None:
    second_approver = make_user("bea", "Approvers")
    make_user("noemail", "Approvers", email="")
    run = start_run("two_gates.yaml")

    assert suspensions_announce() == 2
    assert suspensions_announce() == 0
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@example.com", "bea@example.com"]
    message = mail.outbox[0]
    assert "Editor: publish this draft?" in message.subject
    assert f"/approvals/{run.run_id}/" in message.body
    assert second_approver.email != viewer.email

    decide(run, approver)
    run_queued_tasks()  # second gate: a new suspension, a new notice
    assert suspensions_announce() == 2
    assert SuspensionNotice.objects.count() == 2


def test_a_failed_send_is_kept_and_retried_later(approver: Any, settings: Any) -> None:
    start_run()
    settings.MAILERS = {"default": {"BACKEND": "tests.conftest.FailingEmailBackend"}}
    assert suspensions_announce() == 0
    notice = SuspensionNotice.objects.get()
    assert notice.retry_at is not None
    assert "SMTP server unreachable" in notice.last_error
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    assert suspensions_announce() == 0  # not before its time
    assert suspensions_announce(now=notice.retry_at) == 1
    notice.refresh_from_db()
    assert (notice.retry_at, notice.recipients) == (None, 1)


# -- operators -------------------------------------------------------------------------


def test_an_operator_resumes_a_failed_run_after_the_fix(operator: Any, flag_file: Any) -> None:
    flag_file.touch()
    run = start_run("flaky.yaml")
    assert run.status == Run.Status.FAILED
    flag_file.unlink()
    action = run_resume_request(
        run_id=run.run_id, resume_data=None, actor=operator, source=Source.CLI
    )
    assert (action.kind, action.from_status, action.source) == ("resume", "failed", "cli")
    run_queued_tasks()
    action.refresh_from_db()
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert (action.state, action.outcome_status) == ("done", "completed")


def test_a_replay_makes_a_new_run_linked_to_the_original(operator: Any) -> None:
    run = start_run(amount=9)
    action = run_replay_request(run_id=run.run_id, actor=operator, source=Source.WEB)
    assert action.result_run_id
    run_queued_tasks()
    replay = Run.objects.get(pk=action.result_run_id)
    assert replay.initial_data == {"amount": 9}
    assert replay.blueprint_snapshot == run.blueprint_snapshot
    assert replay.status == Run.Status.SUSPENDED  # at the gate again
    action.refresh_from_db()
    assert action.outcome_status == "suspended"


def test_cancel_ends_a_waiting_run_for_good(operator: Any, approver: Any) -> None:
    run = start_run()
    action = run_cancel(run_id=run.run_id, actor=operator, source=Source.WEB)
    assert (action.kind, action.from_status, action.outcome_status) == (
        "cancel",
        "suspended",
        "cancelled",
    )
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    with pytest.raises(ConsoleError, match="only waiting or failed runs can be resumed"):
        run_resume_request(run_id=run.run_id, resume_data=None, actor=operator, source=Source.WEB)
    with pytest.raises(DecisionRefused, match="cancelled, not waiting"):
        decide(run, approver)
    with pytest.raises(ConsoleError, match="only waiting or running runs can be cancelled"):
        run_cancel(run_id=run.run_id, actor=operator, source=Source.WEB)


def test_one_background_action_at_a_time(operator: Any) -> None:
    run = start_run("sync_hold.yaml")
    run_resume_request(run_id=run.run_id, resume_data=None, actor=operator, source=Source.WEB)
    with pytest.raises(
        ActionInFlight,
        match=r"A resume of this run, asked by otto@example\.com at "
        r"\d{1,2} \w{3} \d{4}, \d\d:\d\d UTC, is "
        "queued",
    ):
        run_cancel(run_id=run.run_id, actor=operator, source=Source.WEB)


def test_delete_needs_the_delete_permission_and_is_recorded(operator: Any, superuser: Any) -> None:
    run = start_run()
    with pytest.raises(PermissionDenied):
        run_delete(run_id=run.run_id, actor=operator, source=Source.WEB)
    action = run_delete(run_id=run.run_id, actor=superuser, source=Source.WEB)
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not run.steps.exists()
    assert (action.kind, action.from_status, action.requested_by_identity) == (
        "delete",
        "suspended",
        "root@example.com",
    )


def test_operators_actions_need_the_operate_permission(approver: Any) -> None:
    run = start_run()
    for request in (run_resume_request, run_replay_request, run_cancel):
        kwargs: dict[str, Any] = {"run_id": run.run_id, "actor": approver, "source": Source.WEB}
        if request is run_resume_request:
            kwargs["resume_data"] = None
        with pytest.raises(PermissionDenied):
            request(**kwargs)
    assert not RunAction.objects.exists()
