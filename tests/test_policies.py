"""Approval policies: quorum, groups, separation of duties, inputs, console policies,
delegation — enforced by the one decision service, on the web and the command line."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from runs.answers import answers_validate
from runs.errors import AlreadyDecided, ConsoleError, DecisionRefused
from runs.gates import gate_policy
from runs.models import AccessChange, ApprovalPolicy, Decision, Delegation, Run, RunAction
from runs.policies import (
    GatePolicy,
    OnExpiry,
    declared_policy,
    parse_duration,
    stricter,
)
from runs.services.delegations import delegation_create, delegation_end
from runs.services.operations import run_resume_request
from tests.conftest import decide, form_data, make_user, run_queued_tasks, start_run

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = {"cost_center": "CC-7"}


def finance(*names: str, group: str = "Finance") -> list[Any]:
    """Approvers who are members of ``group`` (created if need be)."""
    team, _ = Group.objects.get_or_create(name=group)
    people = [make_user(name, "Approvers") for name in names]
    for person in people:
        person.groups.add(team)
    return people


def invoice(requested_by: str = "rita@example.com", **data: Any) -> Run:
    """A run of the invoice blueprint: 2 Finance approvals, not by its requester."""
    return start_run("policy.yaml", amount=420, requested_by=requested_by, **data)


# --- reading and combining policies -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", 86400), ("30m", 1800), ("3d", 259200), ("1w", 604800), ("90s", 90), (60, 60)],
)
def test_durations_are_read_as_policies_write_them(text: Any, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "0h", "-1h", "24 parsecs", True, None, "1e9"])
def test_what_is_not_a_duration_is_refused(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "config",
    [
        {"approvals": "many"},
        {"approvals": 0},
        {"on_expiry": "maybe"},
        {"due": "tomorrow"},
        {"not_by": "the boss"},
        {"inputs": {"cost center": {"type": "string"}}},
        {"inputs": {"x": {"type": "date"}}},
        {"approvers": [""]},
    ],
)
def test_a_policy_that_cannot_be_read_holds_the_gate_shut(config: dict[str, Any]) -> None:
    policy = declared_policy(config, source="The blueprint")
    assert policy.fault.startswith("The blueprint: ")
    assert "nobody can decide it" in policy.summary()[0]


def test_other_config_keys_are_not_a_policy() -> None:
    policy = declared_policy({"message": "Pay?", "require": True}, source="x")
    assert policy.is_default
    assert not policy.fault
    assert policy.reasons == ()


def test_the_stricter_of_two_policies_holds_key_by_key() -> None:
    blueprint = declared_policy(
        {
            "approvals": 2,
            "approvers": ["Finance", "Legal"],
            "due": "24h",
            "expires": "72h",
            "on_expiry": "approve",
            "escalate_to": ["Leads", "Directors"],
        },
        source="blueprint",
    )
    console = declared_policy(
        {
            "approvals": 3,
            "approvers": ["Finance"],
            "due": "48h",
            "on_expiry": "none",
            "not_by": "started_by",
            "escalate_to": ["Directors"],
        },
        source="console",
    )
    both = stricter(blueprint, console)
    assert both.approvals == 3
    assert both.approvers == {"Finance"}
    assert both.due == timedelta(hours=24)
    assert both.expires == timedelta(hours=72)
    assert both.on_expiry == OnExpiry.NONE  # keep waiting beats approving by itself
    assert both.not_by == ("started_by",)
    assert both.escalate_to == {"Directors"}
    assert both.reasons == ("blueprint", "console")


def test_answers_are_validated_and_typed() -> None:
    policy = declared_policy(
        {
            "inputs": {
                "cost_center": {"type": "string", "required": True, "max_length": 5},
                "amount_approved": {"type": "number", "minimum": 0},
                "copies": {"type": "integer"},
                "urgent": {"type": "boolean"},
                "tier": {"type": "string", "choices": ["gold", "silver"]},
            }
        },
        source="x",
    )
    assert answers_validate(
        policy,
        {"cost_center": "CC-1", "amount_approved": "12.5", "copies": "3", "urgent": "true"},
        approving=True,
    ) == {"cost_center": "CC-1", "amount_approved": 12.5, "copies": 3, "urgent": True}
    for bad, said in [
        ({}, "Cost center: required to approve."),
        ({"cost_center": "CC-123456"}, "Cost center: string should have at most 5 characters."),
        ({"cost_center": "C", "amount_approved": "-1"}, "Amount approved: input should be"),
        ({"cost_center": "C", "amount_approved": "lots"}, "Amount approved: give a number."),
        ({"cost_center": "C", "copies": "2.5"}, "Copies: give a whole number."),
        ({"cost_center": "C", "amount_approved": "1e309"}, "Amount approved: give a finite"),
        ({"cost_center": "C", "amount_approved": "NaN"}, "Amount approved: give a finite"),
        ({"cost_center": "C", "amount_approved": "-inf"}, "Amount approved: give a finite"),
        ({"cost_center": "C", "copies": "9" * 5000}, "Copies: give a whole number."),
        ({"cost_center": "C", "tier": "bronze"}, "Tier: choose one of the offered values."),
        ({"cost_center": "C", "color": "red"}, "This gate does not ask for 'color'."),
    ]:
        with pytest.raises(ValueError, match=re.escape(said)):
            answers_validate(policy, bad, approving=True)
    assert answers_validate(policy, {}, approving=False) == {}  # a rejection need not answer


# --- quorum ---------------------------------------------------------------------------


def test_two_approvals_from_different_people_resume_the_run_once_with_both() -> None:
    ada, bob = finance("ada", "bob")
    run = invoice()
    first = decide(run, ada, note="checked", answers={"cost_center": "CC-7"})
    assert not RunAction.objects.filter(run_id=run.run_id).exists()  # no resume yet
    assert first.seat == f"user:{ada.pk}"
    run.refresh_from_db()
    assert run.status == Run.Status.SUSPENDED  # still waiting for the second person

    with pytest.raises(DecisionRefused, match=r"You already approved this"):
        decide(run, ada, answers=ANSWER)
    second = decide(run, bob, note="ok", answers={"cost_center": "CC-7", "amount_approved": "400"})
    resumption = second.resumption
    assert resumption.resume_data["by"] == "ada@example.com, bob@example.com"
    assert resumption.resume_data["inputs"] == {"cost_center": "CC-7", "amount_approved": 400.0}
    assert [a["by"] for a in resumption.resume_data["approvals"]] == [
        "ada@example.com",
        "bob@example.com",
    ]
    assert Decision.objects.filter(run_id=run.run_id).count() == 2

    run_queued_tasks()
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    # NeuroCore's gate received one resume_data naming every approver and note.
    approval = run.final_context["data"]["approval"]
    assert approval["approved"] is True
    assert approval["note"] == "ada@example.com: checked; bob@example.com: ok"
    assert [a["note"] for a in approval["approvals"]] == ["checked", "ok"]

    carl = finance("carl")[0]
    with pytest.raises(DecisionRefused, match="completed, not waiting"):
        decide(run, carl, answers=ANSWER)


def test_one_rejection_rejects_the_gate_even_before_the_quorum() -> None:
    ada, bob, carl = finance("ada", "bob", "carl")
    run = invoice()
    decide(run, ada, answers=ANSWER)
    rejection = decide(run, bob, approved=False, note="wrong vendor")
    assert rejection.resumption.resume_data["approved"] is False
    with pytest.raises(AlreadyDecided, match=r"bob@example\.com rejected this"):
        decide(run, carl, answers=ANSWER)
    run_queued_tasks()
    run.refresh_from_db()
    assert run.status == Run.Status.REJECTED


def test_after_the_quorum_the_others_are_told_who_approved() -> None:
    ada, bob, carl = finance("ada", "bob", "carl")
    run = invoice()
    decide(run, ada, answers=ANSWER)
    decide(run, bob, answers=ANSWER)
    with pytest.raises(AlreadyDecided) as refused:
        decide(run, carl, answers=ANSWER)
    assert "approved by ada@example.com and bob@example.com" in str(refused.value)


# --- who may decide -------------------------------------------------------------------


def test_only_the_policys_groups_may_decide_superusers_included() -> None:
    outsider = make_user("olga", "Approvers")
    root = make_user("root", is_superuser=True)
    run = invoice()
    for person in (outsider, root):
        with pytest.raises(DecisionRefused, match="Only members of Finance may decide"):
            decide(run, person, answers=ANSWER)
    assert not Decision.objects.exists()


@pytest.mark.parametrize(
    "requested_by",
    [
        "Rita Lovelace <rita@example.com>",
        "\uff52\uff49\uff54\uff41",  # full-width letters
        "  RITA@Example.COM\t",
        ["someone", "Rita"],
    ],
)
def test_the_requester_is_recognised_however_written(requested_by: Any) -> None:
    (rita,) = finance("rita")
    run = invoice(requested_by=requested_by)
    with pytest.raises(DecisionRefused, match="rita requested this run"):
        decide(run, rita, answers=ANSWER)


def test_the_requester_may_not_decide_their_own_run() -> None:
    (rita,) = finance("rita")
    run = invoice(requested_by="RITA@example.com")  # matched without case
    with pytest.raises(DecisionRefused, match="rita requested this run"):
        decide(run, rita, answers=ANSWER)
    by_name = invoice(requested_by="rita")  # a username works as well as an email
    with pytest.raises(DecisionRefused, match="separation of duties"):
        decide(by_name, rita, answers=ANSWER)


def test_whoever_replayed_a_run_may_not_decide_it_under_started_by(operator: Any) -> None:
    (otto,) = finance("otto2")
    otto.groups.add(Group.objects.get(name="Operators"))
    ApprovalPolicy.objects.create(blueprint_pattern="payment", requester_field="started_by")
    original = start_run()
    from runs.services.operations import run_replay_request

    action = run_replay_request(run_id=original.run_id, actor=otto, source="web")
    run_queued_tasks()
    action.refresh_from_db()
    replay = Run.objects.get(pk=action.result_run_id)
    assert replay.status == Run.Status.SUSPENDED
    with pytest.raises(DecisionRefused, match="otto2 requested this run"):
        decide(replay, otto)
    decide(replay, make_user("ada", "Approvers"))  # someone else may


def test_nobody_decides_two_gates_of_a_run_where_the_policy_says_so() -> None:
    ada, bob = make_user("ada", "Approvers"), make_user("bob", "Approvers")
    run = start_run("two_policy_gates.yaml")
    decide(run, ada)
    run_queued_tasks()
    run.refresh_from_db()
    assert run.suspended_at_node == "finance_review"
    with pytest.raises(DecisionRefused, match="decided the gate 'legal_review'"):
        decide(run, ada)
    decide(run, bob)


def test_a_console_policy_tightens_a_blueprint_and_says_why() -> None:
    ada, bob, carl = finance("ada", "bob", "carl")
    ApprovalPolicy.objects.create(blueprint_pattern="inv*", gate_pattern="finance_*", approvals=3)
    run = invoice()
    policy = gate_policy(run, "finance_approval")
    assert policy.approvals == 3
    assert policy.reasons == (
        "the blueprint's author",
        "the console's policy 'inv* / finance_*'",
    )
    decide(run, ada, answers=ANSWER)
    second = decide(run, bob, answers=ANSWER)
    assert not RunAction.objects.filter(decision=second).exists()
    assert decide(run, carl, answers=ANSWER).resumption is not None


def test_a_console_policy_cannot_loosen_a_blueprint() -> None:
    (ada,) = finance("ada")
    ApprovalPolicy.objects.create(blueprint_pattern="invoice", approvals=1)
    run = invoice()
    decide(run, ada, answers=ANSWER)
    assert not RunAction.objects.filter(run_id=run.run_id).exists()  # still 2 needed


def test_an_unreadable_blueprint_policy_lets_nobody_decide(superuser: Any) -> None:
    run = start_run()
    snapshot = dict(run.blueprint_snapshot)
    snapshot["components"] = [
        {**component, "config": {**component.get("config", {}), "approvals": "all"}}
        if component["name"] == "finance_review"
        else component
        for component in snapshot["components"]
    ]
    Run.objects.filter(pk=run.pk).update(blueprint_snapshot=snapshot)
    run.refresh_from_db()
    with pytest.raises(DecisionRefused, match="cannot be read, so nobody can decide it"):
        decide(run, superuser)


def test_answers_are_required_to_approve_and_bound_to_the_evidence() -> None:
    ada, bob = finance("ada", "bob")
    run = invoice()
    with pytest.raises(DecisionRefused, match="Cost center: required to approve"):
        decide(run, ada)
    with pytest.raises(DecisionRefused, match="Amount approved: input should be greater"):
        decide(run, ada, answers={"cost_center": "CC-1", "amount_approved": "-5"})
    one = decide(run, ada, answers={"cost_center": "CC-1"})
    two = decide(run, bob, answers={"cost_center": "CC-2"})
    assert one.answers == {"cost_center": "CC-1"}
    assert one.evidence_digest != two.evidence_digest  # same evidence, other answers


def test_an_operator_resume_cannot_forge_a_quorum(operator: Any) -> None:
    waiting = start_run()
    with pytest.raises((ConsoleError, PermissionDenied)):
        run_resume_request(
            run_id=waiting.run_id,
            actor=operator,
            resume_data={"approvals": [{"by": "ada"}]},
            source="web",
        )
    assert not RunAction.objects.exists()


# --- delegation -----------------------------------------------------------------------


def test_a_delegate_decides_for_the_principal_and_counts_as_them() -> None:
    ada, bob = finance("ada", "bob")
    dora = make_user("dora", "Approvers")  # not in Finance: ada's delegate while she is away
    now = timezone.now()
    delegation_create(
        principal=ada, delegate=dora, starts_at=now, ends_at=now + timedelta(days=7), actor=ada
    )
    run = invoice()
    for_ada = decide(run, dora, answers=ANSWER, on_behalf_of=ada)
    assert for_ada.decider == "dora@example.com for ada@example.com"
    assert for_ada.seat == f"user:{ada.pk}"
    with pytest.raises(DecisionRefused, match="already approved"):
        decide(run, ada, answers=ANSWER)  # ada counted once, through dora
    with pytest.raises(DecisionRefused, match="Only members of Finance"):
        decide(run, dora, answers=ANSWER)  # dora alone may not decide
    assert decide(run, bob, answers=ANSWER).resumption.resume_data["by"] == (
        "dora@example.com for ada@example.com, bob@example.com"
    )
    assert AccessChange.objects.filter(kind=AccessChange.Kind.DELEGATION_SAVED).count() == 1


def test_separation_of_duties_applies_to_the_delegate() -> None:
    (ada,) = finance("ada")
    rita = make_user("rita", "Approvers")
    now = timezone.now()
    delegation_create(
        principal=ada, delegate=rita, starts_at=now, ends_at=now + timedelta(days=1), actor=ada
    )
    run = invoice(requested_by="rita@example.com")
    with pytest.raises(DecisionRefused, match="rita requested this run"):
        decide(run, rita, answers=ANSWER, on_behalf_of=ada)


def test_a_delegation_holds_only_for_its_period_and_can_be_ended() -> None:
    (ada,) = finance("ada")
    dora = make_user("dora", "Approvers")
    now = timezone.now()
    later = delegation_create(
        principal=ada,
        delegate=dora,
        starts_at=now + timedelta(days=1),
        ends_at=now + timedelta(days=2),
        actor=ada,
    )
    run = invoice()
    with pytest.raises(DecisionRefused, match="no delegation of theirs to you holds now"):
        decide(run, dora, answers=ANSWER, on_behalf_of=ada)
    delegation_end(delegation_id=later.pk, actor=dora)
    assert Delegation.objects.get().ends_at <= timezone.now() + timedelta(days=1)
    assert AccessChange.objects.filter(kind=AccessChange.Kind.DELEGATION_ENDED).exists()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"delegate": "self"}, "your own delegate"),
        ({"ends": -2}, "end after it starts"),
        ({"starts": -3, "ends": -2}, "already over"),
        ({"ends": 400}, "at most a year"),
    ],
)
def test_delegations_that_make_no_sense_are_refused(change: dict[str, Any], said: str) -> None:
    (ada,) = finance("ada")
    dora = make_user("dora", "Approvers")
    now = timezone.now()
    with pytest.raises(ConsoleError, match=said):
        delegation_create(
            principal=ada,
            delegate=ada if change.get("delegate") == "self" else dora,
            starts_at=now + timedelta(days=change.get("starts", 0)),
            ends_at=now + timedelta(days=change.get("ends", 1)),
            actor=ada,
        )


def test_a_delegate_must_be_an_approver_and_periods_may_not_overlap() -> None:
    """A viewer named as Ada's delegate would count as one of Finance's approvals."""
    (ada,) = finance("ada")
    now = timezone.now()
    with pytest.raises(ConsoleError, match="vera cannot approve or reject runs"):
        delegation_create(
            principal=ada,
            delegate=make_user("vera", "Viewers"),
            starts_at=now,
            ends_at=now + timedelta(days=1),
            actor=ada,
        )
    dora = make_user("dora", "Approvers")
    delegation_create(
        principal=ada, delegate=dora, starts_at=now, ends_at=now + timedelta(days=3), actor=ada
    )
    with pytest.raises(ConsoleError, match="dora already decides for ada from"):
        delegation_create(
            principal=ada,
            delegate=dora,
            starts_at=now + timedelta(days=1),
            ends_at=now + timedelta(days=5),
            actor=ada,
        )
    assert Delegation.objects.count() == 1


def test_nobody_names_delegates_for_someone_else() -> None:
    ada, bob = finance("ada", "bob")
    now = timezone.now()
    with pytest.raises(PermissionDenied):
        delegation_create(
            principal=ada, delegate=bob, starts_at=now, ends_at=now + timedelta(1), actor=bob
        )


# --- the review page and the command line ---------------------------------------------


def test_the_review_page_says_how_the_gate_is_decided_and_asks_the_inputs(client: Client) -> None:
    ada, bob = finance("ada", "bob")
    run = invoice()
    client.force_login(ada)
    page = client.get(f"/approvals/{run.run_id}/").content.decode()
    assert "How this gate is decided" in page
    assert "Needs 2 approvals from different people." in page
    assert "Only members of Finance may decide." in page
    assert "Due 1 day after it began to wait; then Finance leads may decide too." in page
    assert "Expires 3 days after it began to wait: then it is rejected." in page
    assert "<strong>Due in 23 hours</strong>" in page
    assert 'name="input_cost_center"' in page
    assert "Required to approve." in page

    missing = client.post(f"/approvals/{run.run_id}/", form_data(run))
    assert missing.status_code == 409
    assert "Cost center: required to approve." in missing.content.decode()
    assert not Decision.objects.exists()

    done = client.post(
        f"/approvals/{run.run_id}/",
        {**form_data(run), "input_cost_center": "CC-9", "input_amount_approved": "420"},
        follow=True,
    ).content.decode()
    assert "The gate needs more approvals" in done
    assert "1 of 2 approvals — ada@example.com approved" in done
    assert "You already approved this" in done  # no second form for ada

    client.force_login(bob)
    page = client.get(f"/approvals/{run.run_id}/").content.decode()
    assert 'name="input_cost_center"' in page  # bob may still decide
    inbox = client.get("/approvals/").content.decode()
    assert "1 of 2 approvals — ada@example.com approved" in inbox
    assert "Finance decides (Finance leads once overdue)" in inbox


def test_the_requester_sees_why_they_cannot_decide(client: Client) -> None:
    (rita,) = finance("rita")
    run = invoice(requested_by="rita@example.com")
    client.force_login(rita)
    page = client.get(f"/approvals/{run.run_id}/").content.decode()
    assert "rita requested this run, so may not decide it" in page
    assert 'name="decision"' not in page


def test_a_delegate_chooses_whom_they_decide_for_on_the_page(client: Client) -> None:
    (ada,) = finance("ada")
    dora = make_user("dora", "Approvers")
    now = timezone.now()
    delegation_create(
        principal=ada, delegate=dora, starts_at=now, ends_at=now + timedelta(days=1), actor=ada
    )
    run = invoice()
    client.force_login(dora)
    page = client.get(f"/approvals/{run.run_id}/").content.decode()
    assert "For ada" in page
    assert "Myself" not in page  # dora is not in Finance herself
    client.post(
        f"/approvals/{run.run_id}/",
        {**form_data(run), "input_cost_center": "CC-1", "on_behalf_of": str(ada.pk)},
    )
    assert Decision.objects.get().decider == "dora@example.com for ada@example.com"
    forged = client.post(
        f"/approvals/{run.run_id}/",
        {**form_data(run), "input_cost_center": "CC-1", "on_behalf_of": "999999"},
    )
    assert forged.status_code in (400, 403, 409)
    assert Decision.objects.count() == 1


def test_runs_approve_takes_inputs_and_a_principal(capsys: Any) -> None:
    _, bob = finance("ada", "bob")
    dora = make_user("dora", "Approvers")
    now = timezone.now()
    delegation_create(
        principal=bob, delegate=dora, starts_at=now, ends_at=now + timedelta(days=1), actor=bob
    )
    run = invoice()
    call_command(
        "runs", "approve", run.run_id, "--by", "ada", "--input", "cost_center=CC-3",
        "--input", "amount_approved=99.5",
    )  # fmt: skip
    assert "needs more approvals" in capsys.readouterr().out
    assert Decision.objects.get().answers == {"cost_center": "CC-3", "amount_approved": 99.5}
    with pytest.raises(CommandError, match="name the person you decide for with --for"):
        call_command("runs", "approve", run.run_id, "--by", "dora", "--for", "nobody")
    with pytest.raises(CommandError, match="Use KEY=VALUE"):
        call_command("runs", "approve", run.run_id, "--by", "dora", "--input", "nonsense")
    with pytest.raises(CommandError, match="Cost center: required to approve"):
        call_command("runs", "approve", run.run_id, "--by", "dora", "--for", "bob")
    call_command(
        "runs", "approve", run.run_id, "--by", "dora", "--for", "bob", "-i", "cost_center=X"
    )
    assert Decision.objects.filter(on_behalf_of=bob, decided_by=dora).exists()
    assert RunAction.objects.filter(run_id=run.run_id).count() == 1


def test_policy_changes_in_the_admin_are_audited(admin_client: Client) -> None:
    Group.objects.create(name="Finance")
    response = admin_client.post(
        "/admin/runs/approvalpolicy/add/",
        {
            "blueprint_pattern": "payments*",
            "gate_pattern": "*",
            "approvals": "2",
            "approvers": [Group.objects.get(name="Finance").pk],
            "due": "1 00:00:00",
            "on_expiry": "reject",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    change = AccessChange.objects.get(kind=AccessChange.Kind.POLICY_SAVED)
    assert change.after["approvals"] == 2
    assert change.after["approvers"] == ["Finance"]
    assert change.target_type == "approval policy"


def test_the_default_policy_is_one_approval_by_anyone_allowed() -> None:
    assert GatePolicy().is_default
    run = start_run()
    assert gate_policy(run, "finance_review").is_default


def test_a_delegate_finds_the_principals_runs_in_the_inbox(
    client: Client,
) -> None:
    (ada,) = finance("ada")
    dora = make_user("dora", "Approvers")
    now = timezone.now()
    delegation_create(
        principal=ada, delegate=dora, starts_at=now, ends_at=now + timedelta(days=1), actor=ada
    )
    run = invoice()
    client.force_login(dora)
    inbox = client.get("/approvals/")
    assert inbox.status_code == 200
    assert [r.run_id for r, *_ in inbox.context["rows"]] == [run.run_id]
    assert ">Approvals" in inbox.content.decode()  # the header leads there
    away = client.get("/away/").content.decode()
    assert "Whom you decide for" in away
    assert "ada" in away


def test_the_out_of_office_page_names_and_ends_a_delegate(client: Client) -> None:
    (ada,) = finance("ada")
    make_user("dora", "Approvers")
    client.force_login(ada)
    assert "Out of office" in client.get("/approvals/").content.decode()
    page = client.get("/away/")
    assert page.status_code == 200
    assert "Nobody: you decide your runs yourself." in page.content.decode()
    start = timezone.localtime()
    form = {
        "delegate": "DORA@example.com",
        "starts_at": start.strftime("%Y-%m-%d %H:%M"),
        "ends_at": (start + timedelta(days=3)).strftime("%Y-%m-%d %H:%M"),
        "note": "Holiday",
    }
    done = client.post("/away/", form, follow=True).content.decode()
    assert "dora decides for you until then." in done
    delegation = Delegation.objects.get()
    assert (delegation.principal, delegation.delegate.username) == (ada, "dora")
    for bad, said in [
        ({"delegate": "nobody"}, "No active console user is “nobody”."),
        ({"delegate": "ada"}, "you cannot be your own delegate"),
        ({"ends_at": "garbage"}, "Enter a valid date/time."),
        ({"ends_at": form["starts_at"]}, "must end after it starts"),
    ]:
        refused = client.post("/away/", {**form, **bad})
        assert refused.status_code in (400, 409)
        assert said in refused.content.decode()
    assert Delegation.objects.count() == 1
    client.post(f"/away/{delegation.pk}/end/")
    assert Delegation.objects.get().ends_at <= timezone.now()
    gone = client.post("/away/999999/end/", follow=True)
    assert "No such delegation." in gone.content.decode()


def test_people_with_nothing_to_decide_have_no_out_of_office_page(
    client: Client, viewer: Any
) -> None:
    client.force_login(viewer)
    assert client.get("/away/").status_code == 403
    assert "Out of office" not in client.get("/approvals/").content.decode()


# --- several runs at once -------------------------------------------------------------


def test_an_approver_decides_runs_at_the_same_gate_together(client: Client) -> None:
    ada, bob = finance("ada", "bob")
    mine = invoice(requested_by="ada@example.com")  # ada requested it: refused
    first, second = invoice(), invoice()
    decide(second, bob, answers=ANSWER)  # bob's approval in: ada's completes it
    client.force_login(ada)
    ids = [first.run_id, second.run_id, mine.run_id]
    page = client.get("/decide/", {"run": ids})
    assert page.status_code == 200
    text = page.content.decode()
    assert "Decide 3 runs together" in text
    assert "ada requested this run, so may not decide it" in text
    assert "1 of 2 approvals — bob@example.com approved" in text
    assert "Approve 2" in text
    form = page.context["form"]
    done = client.post(
        "/decide/",
        {
            "selection": form.initial["selection"],
            "decision": "approve",
            "note": "Batch checked",
            "input_cost_center": "CC-5",
        },
        follow=True,
    ).content.decode()
    assert "Approved 2 runs. 1 of them still needs more approvals from other people." in done
    made = Decision.objects.filter(decided_by=ada).order_by("run_id")
    assert sorted(d.run_id for d in made) == sorted([first.run_id, second.run_id])
    assert {d.note for d in made} == {"Batch checked"}
    assert {d.answers["cost_center"] for d in made} == {"CC-5"}
    assert RunAction.objects.filter(run_id=second.run_id).count() == 1  # its quorum is done
    assert not RunAction.objects.filter(run_id=first.run_id).exists()  # needs one more
    assert not Decision.objects.filter(run_id=mine.run_id).exists()


def test_deciding_together_refuses_runs_at_different_gates_and_damaged_posts(
    client: Client,
) -> None:
    (ada,) = finance("ada")
    client.force_login(ada)
    mixed = client.get("/decide/", {"run": [invoice().run_id, start_run().run_id]}, follow=True)
    assert "Choose runs waiting for a decision at the same gate" in mixed.content.decode()
    nothing = client.get("/decide/", follow=True)
    assert "Choose runs waiting for a decision at the same gate" in nothing.content.decode()
    for selection in ["not json", "[]", '[["a"]]', '[["x", "g", "yesterday"]]', "{}"]:
        refused = client.post(
            "/decide/", {"selection": selection, "decision": "approve", "note": "x"}, follow=True
        )
        assert refused.status_code == 200
        assert "choose the runs again" in refused.content.decode() or (
            "Choose between 1 and" in refused.content.decode()
        )
    missing = client.post(
        "/decide/",
        {"selection": '[["nope", "g", "2026-11-30T10:00:00+00:00"]]', "decision": "approve"},
        follow=True,
    )
    assert "nope: No run has the id" in missing.content.decode()
    assert not Decision.objects.exists()


def test_a_quorum_half_way_travels_through_export_and_import(tmp_path: Any) -> None:
    from io import StringIO

    ada, bob = finance("ada", "bob")
    run = invoice()
    decide(run, ada, note="first", answers={"cost_center": "CC-1"})
    out = StringIO()
    call_command("runs", "export", "--format", "jsonl", stdout=out)
    export = tmp_path / "runs.jsonl"
    export.write_text(out.getvalue())
    (line,) = [json.loads(text) for text in out.getvalue().splitlines()]
    assert line["decisions"][0]["answers"] == {"cost_center": "CC-1"}
    assert line["decisions"][0]["settles"] is False
    call_command("flush", interactive=False, verbosity=0)
    ada, bob = finance("ada", "bob")

    call_command("runs", "import", str(export), stdout=StringIO())
    run.refresh_from_db()
    (imported,) = Decision.objects.all()
    assert imported.seat == "imported:ada@example.com"
    with pytest.raises(DecisionRefused, match="already approved"):
        decide(run, ada, answers=ANSWER)  # counted once, by the name in the file
    assert decide(run, bob, answers=ANSWER).resumption is not None


def test_an_agent_cannot_walk_past_a_gate_with_half_its_quorum(project: Any) -> None:
    """One approval of two is a decision, not a settled gate: the store still refuses."""
    from neurocore.runtime.executor import resume_blueprint

    from runs.store import DjangoRunStore, GateNotDecided

    (ada,) = finance("ada")
    run = invoice()
    decide(run, ada, answers=ANSWER)
    store = DjangoRunStore()
    with pytest.raises(GateNotDecided, match="Only a decision recorded in the console"):
        resume_blueprint(
            run.run_id,
            project.registry,
            project.config,
            resume_data={"approved": True, "by": "ada@example.com"},
            run_store=store,
        )
    store.close()
    run.refresh_from_db()
    assert run.status == Run.Status.SUSPENDED


@pytest.mark.parametrize("requested_by", [None, "", "  ", {"nested": "x"}])
def test_a_run_that_does_not_name_its_requester_cannot_be_decided(requested_by: Any) -> None:
    """Separation of duties fails closed: leaving the requester out does not open the gate."""
    (ada,) = finance("ada")
    data = {} if requested_by is None else {"requested_by": requested_by}
    run = start_run("policy.yaml", amount=420, **data)
    with pytest.raises(DecisionRefused, match="does not say who requested it"):
        decide(run, ada, answers=ANSWER)


def test_a_console_policy_saved_in_the_admin_moves_the_due_times_of_waiting_runs(
    admin_client: Client,
) -> None:
    from runs.models import GateDeadline
    from runs.services.deadlines import deadlines_apply

    finance("ada")
    run = invoice()  # due 24h after it began to wait, by its blueprint
    deadlines_apply()
    deadline = GateDeadline.objects.get(run_id=run.run_id)
    assert deadline.due_at == run.updated_at + timedelta(hours=24)
    response = admin_client.post(
        "/admin/runs/approvalpolicy/add/",
        {"blueprint_pattern": "invoice", "gate_pattern": "*", "due": "01:00:00"},
    )
    assert response.status_code == 302
    deadline.refresh_from_db()
    assert deadline.due_at == run.updated_at + timedelta(hours=1)  # the stricter, at once
    policy = ApprovalPolicy.objects.get()
    admin_client.post(f"/admin/runs/approvalpolicy/{policy.pk}/delete/", {"post": "yes"})
    deadline.refresh_from_db()
    assert deadline.due_at == run.updated_at + timedelta(hours=24)


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("due", "-1 00:00:00", "A duration above zero"),
        ("expires", "0", "A duration above zero"),
        ("due", "tomorrow", "Enter a valid duration"),
        ("approvals", "0", "greater than or equal to 1"),
        ("requester_field", "the boss", "Write initial_data.&lt;field&gt;"),
    ],
)
def test_the_admin_refuses_a_policy_that_would_lock_its_gates(
    admin_client: Client, field: str, value: str, said: str
) -> None:
    response = admin_client.post(
        "/admin/runs/approvalpolicy/add/",
        {"blueprint_pattern": "invoice", "gate_pattern": "*", field: value},
    )
    assert response.status_code == 200
    assert said in response.content.decode()
    assert not ApprovalPolicy.objects.exists()


def test_the_admin_takes_durations_as_blueprints_write_them(admin_client: Client) -> None:
    admin_client.post(
        "/admin/runs/approvalpolicy/add/",
        {"blueprint_pattern": "invoice", "gate_pattern": "*", "due": "24h", "expires": "3d"},
    )
    policy = ApprovalPolicy.objects.get()
    assert (policy.due, policy.expires) == (timedelta(hours=24), timedelta(days=3))


def test_a_gates_question_and_answers_are_shown_inert(client: Client) -> None:
    """A right-to-left override in what a blueprint or a decider wrote reverses nothing."""
    ada, bob = finance("ada", "bob")
    run = invoice()
    snapshot = dict(run.blueprint_snapshot)
    snapshot["components"] = [
        {**c, "config": {**c["config"], "message": "Pay \u202eRTL?"}}
        if c["name"] == "finance_approval"
        else c
        for c in snapshot["components"]
    ]
    Run.objects.filter(pk=run.pk).update(
        blueprint_snapshot=snapshot, suspension_reason="Pay \u202eRTL?"
    )
    decide(run, ada, answers={"cost_center": "CC\u202e-1"})
    client.force_login(bob)
    page = client.get(f"/approvals/{run.run_id}/").content.decode()
    assert "\u202e" not in page
    assert "Pay \\u202eRTL?" in page
    assert "CC\\u202e-1" in page


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59.999999-23:59", "0001-01-01T00:00:00+14:00"])
def test_instants_no_database_can_hold_are_a_damaged_form_not_an_error(
    client: Client, since: str
) -> None:
    (ada,) = finance("ada")
    run = invoice()
    client.force_login(ada)
    one = client.post(f"/approvals/{run.run_id}/", {**form_data(run), "suspended_at": since})
    assert one.status_code == 400
    assert "The form is incomplete: reload the page." in one.content.decode()
    many = client.post(
        "/decide/",
        {"selection": json.dumps([[run.run_id, "g", since]]), "decision": "approve"},
        follow=True,
    )
    assert "choose the runs again" in many.content.decode()
    deep = client.post(
        "/decide/",
        {"selection": "[" * 100_000 + "]" * 100_000, "decision": "approve"},
        follow=True,
    )
    assert deep.status_code == 200
    long_id = client.post(
        "/decide/",
        {"selection": json.dumps([["x" * 100_000 + "\x00", "g", "2026-11-30T10:00:00+00:00"]])},
        follow=True,
    )
    assert "choose the runs again" in long_id.content.decode()
    surrogate = client.post(
        "/decide/",
        {"selection": '[["x\\ud800", "g", "2026-11-30T10:00:00+00:00"]]', "decision": "approve"},
        follow=True,
    )
    assert "choose the runs again" in surrogate.content.decode()
    long_name = client.post(
        "/decide/",
        {"selection": json.dumps([["x" * 100_000, "g", "2026-11-30T10:00:00+00:00"]])},
        follow=True,
    )
    assert len(long_name.content) < 50_000
    assert not Decision.objects.exists()


def test_the_announcement_goes_to_whom_the_policy_lets_decide_and_says_how() -> None:
    from django.core import mail

    from runs.services.notifications import suspensions_announce

    finance("ada", "rita")
    make_user("olga", "Approvers")  # not in Finance
    invoice(requested_by="rita@example.com")
    suspensions_announce()
    assert [message.to for message in mail.outbox] == [["ada@example.com"]]
    body = mail.outbox[0].body
    assert "How it is decided:\n    0 of 2 approvals\n" in body
    assert "    Needs 2 approvals from different people.\n" in body
    assert "    Only members of Finance may decide.\n" in body


def test_an_answer_with_a_nul_character_is_kept_on_both_databases() -> None:
    """PostgreSQL's jsonb cannot hold NUL: the console's JSON field keeps it anyway."""
    (ada,) = finance("ada")
    run = invoice()
    decision = decide(run, ada, answers={"cost_center": "CC\x00-1"})
    decision.refresh_from_db()
    assert decision.answers == {"cost_center": "CC\x00-1"}


def test_deciding_together_is_for_approvers_only(client: Client, viewer: Any) -> None:
    """The page lists runs' inputs: nobody without the right to decide sees it."""
    run = invoice()
    client.force_login(make_user("nobody"))
    assert client.get("/decide/", {"run": [run.run_id]}).status_code == 403
    client.force_login(viewer)
    assert client.get("/decide/", {"run": [run.run_id]}).status_code == 403
    assert client.post("/decide/", {"selection": "[]"}).status_code == 403


def test_delegations_are_read_only_in_the_admin_and_ended_through_the_service(
    admin_client: Client,
) -> None:
    (ada,) = finance("ada")
    now = timezone.now()
    delegation = delegation_create(
        principal=ada,
        delegate=make_user("dora", "Approvers"),
        starts_at=now,
        ends_at=now + timedelta(days=1),
        actor=ada,
    )
    assert admin_client.get("/admin/runs/delegation/add/").status_code == 403
    assert admin_client.get(f"/admin/runs/delegation/{delegation.pk}/delete/").status_code == 403
    admin_client.post(
        "/admin/runs/delegation/",
        {"action": "end_now", "_selected_action": [delegation.pk]},
    )
    delegation.refresh_from_db()
    assert delegation.ends_at <= timezone.now()
    assert AccessChange.objects.filter(kind=AccessChange.Kind.DELEGATION_ENDED).exists()


def test_only_approvers_name_delegates() -> None:
    vera = make_user("vera", "Viewers")
    now = timezone.now()
    with pytest.raises(PermissionDenied, match="Only people who approve"):
        delegation_create(
            principal=vera,
            delegate=make_user("dora", "Approvers"),
            starts_at=now,
            ends_at=now + timedelta(days=1),
            actor=vera,
        )
