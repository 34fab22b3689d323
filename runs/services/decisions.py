"""Decisions at approval gates: the one way past a gate.

A run suspended at an approval gate continues only through a ``Decision``
made here by someone allowed to decide that run (``runs.approve_run`` on it:
role and blueprint scopes), written in the same transaction as the resume it
queues. ``approved``, ``note`` and ``by`` reach NeuroCore from here only, and
``by`` is always the authenticated decider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from runs.answers import answers_validate
from runs.errors import ActionInFlight, AlreadyDecided, ConsoleError, DecisionRefused
from runs.gates import decide_refusal, gate_policy, seat_of, tally_of
from runs.models import Decision, Run, RunAction, Source
from runs.permissions import can_decide
from runs.policies import GatePolicy
from runs.selectors import decision_on, review_evidence
from runs.services.actions import action_enqueue, actor_identity, locked_run, open_action

NOTE_MAX_LENGTH = 2000


def decision_record(
    *,
    run_id: str,
    approved: bool,
    note: str,
    shown_gate: str,
    shown_suspended_at: datetime,
    actor: User,
    source: Source,
    client_address: str | None = None,
    answers: Mapping[str, Any] | None = None,
    on_behalf_of: User | None = None,
) -> Decision:
    """Approve or reject the suspension of ``run_id`` the actor was shown, under the
    gate's policy; queue the resume once the suspension is settled.

    ``shown_gate`` and ``shown_suspended_at`` name the suspension the actor saw.
    ``answers`` answer the gate's ``inputs`` (strings are parsed); ``on_behalf_of``
    is the person a delegate decides for. The suspension is settled by a
    rejection, or by the approval that completes the policy's quorum: only then
    is the resume queued, with every approver's name, note and answer.
    Returns the ``Decision``; its ``resumption`` is the queued resume, if any.
    Raises ``PermissionDenied`` unless ``actor`` may decide the run;
    ``AlreadyDecided`` (naming who decided what, when) if that suspension was
    settled; ``DecisionRefused`` if the run does not wait at it (moved on, not
    waiting, not an approval gate), the note is missing or too long, the answer
    is invalid, or the policy refuses this person (groups, separation of duties,
    delegation, already counted); ``ActionInFlight`` while another action on the
    run is open; ``RunNotFound``.
    """
    note = note.strip()
    if not approved and not note:
        raise DecisionRefused("Say why you reject this run: a note is required to reject.")
    if len(note) > NOTE_MAX_LENGTH:
        raise DecisionRefused(f"The note is {len(note)} characters; at most {NOTE_MAX_LENGTH}.")
    with transaction.atomic():
        run = locked_run(run_id)
        if not can_decide(actor, run):  # a delegate decides with their own role too
            raise PermissionDenied("You may not approve or reject this run.")
        suspension = run.suspension
        if suspension is not None and (suspension.gate, suspension.since) == (
            shown_gate,
            shown_suspended_at,
        ):
            policy = gate_policy(run, suspension.gate)
            tally = tally_of(run.run_id, suspension, policy)
            if (closing := tally.closing) is not None:
                raise AlreadyDecided(
                    closing,
                    approvers=[d.decider for d in tally.approvals] if closing.approved else (),
                )
        elif (shown := decision_on(run.run_id, shown_gate, shown_suspended_at)) is not None:
            # The run moved on since (or ended): say where it waits now, if anywhere.
            raise AlreadyDecided(shown, now_waiting_at=suspension.gate if suspension else None)
        if suspension is None or not suspension.is_approval:
            raise DecisionRefused(
                f"This run is {run.get_status_display().lower()}, not waiting for a decision. "
                "Nothing was changed."
            )
        if (suspension.gate, suspension.since) != (shown_gate, shown_suspended_at):
            raise DecisionRefused(
                "This run has moved on since the page was opened: it now waits at "
                f"'{suspension.gate}', a new question. Review it and decide again."
            )
        if refusal := decide_refusal(
            actor, run, suspension=suspension, tally=tally, principal=on_behalf_of
        ):
            raise DecisionRefused(f"{refusal} Nothing was changed.")
        try:
            answer = answers_validate(policy, answers or {}, approving=approved)
        except ValueError as error:
            raise DecisionRefused(f"{error} Nothing was changed.") from None
        if (in_flight := open_action(run.run_id)) is not None:
            raise ActionInFlight(in_flight)
        principal = on_behalf_of if on_behalf_of is not None else actor
        settles = not approved or len(tally.approvals) + 1 >= policy.approvals
        delegated = principal.pk != actor.pk
        decision = _decision_insert(
            Decision(
                run=run,
                gate=suspension.gate,
                suspended_at=suspension.since,
                approved=approved,
                note=note,
                decided_by=actor,
                decided_by_identity=actor_identity(actor),
                on_behalf_of=principal if delegated else None,
                on_behalf_of_identity=actor_identity(principal) if delegated else "",
                seat=seat_of(principal),
                answers=answer,
                policy=policy_record(policy),
                settles=settles,
                source=source,
                client_address=client_address,
                gate_message=suspension.message,
                evidence_digest=review_evidence(run, answers=answer).digest,
            )
        )
        if not settles:
            return decision  # the quorum is not complete: the run keeps waiting
        decision_resume_enqueue(
            run, decision, approvals=(*tally.approvals, decision) if approved else (), actor=actor
        )
    return decision


@dataclass(frozen=True)
class Shown:
    """A suspension a person was shown: the run, its gate, since when."""

    run_id: str
    gate: str
    suspended_at: datetime


def decisions_record_many(
    *,
    shown: Sequence[Shown],
    approved: bool,
    note: str,
    actor: User,
    source: Source,
    answers: Mapping[str, Any] | None = None,
    client_address: str | None = None,
) -> list[tuple[Shown, Decision | None, str]]:
    """Decide several suspensions with one note and answer: each its own decision,
    each through ``decision_record`` (its own transaction, the same rules).

    Returns, for each of ``shown`` in order, the decision (or None) and why it
    was refused ("" when recorded). One refusal does not stop the others.
    """
    outcomes: list[tuple[Shown, Decision | None, str]] = []
    for each in shown:
        try:
            decision = decision_record(
                run_id=each.run_id,
                approved=approved,
                note=note,
                shown_gate=each.gate,
                shown_suspended_at=each.suspended_at,
                actor=actor,
                source=source,
                client_address=client_address,
                answers=answers,
            )
        except (ConsoleError, PermissionDenied) as refused:
            outcomes.append((each, None, str(refused)))
        else:
            outcomes.append((each, decision, ""))
    return outcomes


def policy_record(policy: GatePolicy) -> dict[str, Any]:
    """What a decision records of the policy it was made under."""
    return {"approvals": policy.approvals, "reasons": list(policy.reasons)}


def _decision_insert(decision: Decision) -> Decision:
    try:
        with transaction.atomic():
            decision.save(force_insert=True)
    except IntegrityError:
        existing = decision_on(decision.run_id, decision.gate, decision.suspended_at)
        if existing is None:
            raise
        raise AlreadyDecided(existing) from None
    return decision


def decision_resume_enqueue(
    run: Run, decision: Decision, *, approvals: Sequence[Decision], actor: User | None
) -> RunAction:
    """Queue the resume that hands the settled suspension to NeuroCore's gate.

    ``resume_data`` is what NeuroCore's approval skill reads (``approved``,
    ``note``, ``by``) and what the next skills may use: ``decision_id``, a key
    the same on every attempt of this resume (to make effects idempotent),
    ``approvals`` (each approver's name, note, time and answer) and ``inputs``
    (the answers, later approvers' over earlier ones). Call it in the
    transaction that recorded ``decision``.
    """
    deciders = list(approvals) or [decision]
    inputs: dict[str, Any] = {}
    for each in deciders:
        inputs.update(each.answers or {})
    notes = [each for each in deciders if each.note]
    resume_data: dict[str, Any] = {
        "approved": decision.approved,
        "note": notes[0].note
        if len(deciders) == 1 and notes
        else "; ".join(f"{each.decider}: {each.note}" for each in notes),
        "by": ", ".join(each.decider for each in deciders),
        "decision_id": decision.pk,
        "approvals": [
            {
                "by": each.decider,
                "note": each.note,
                "at": each.decided_at.isoformat(),
                "inputs": each.answers or {},
            }
            for each in approvals
        ],
        "inputs": inputs,
    }
    return action_enqueue(
        RunAction(
            run=run,
            kind=RunAction.Kind.DECISION,
            decision=decision,
            resume_data=resume_data,
            requested_by=actor,
            requested_by_identity=decision.decider,
            source=decision.source,
            from_status=run.status,
        )
    )
