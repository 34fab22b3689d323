"""Decisions at approval gates: the one way past a gate.

A run suspended at an approval gate continues only through a ``Decision``
made here by someone allowed to decide that run (``runs.approve_run`` on it:
role and blueprint scopes), written in the same transaction as the resume it
queues. ``approved``, ``note`` and ``by`` reach NeuroCore from here only, and
``by`` is always the authenticated decider.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from runs.errors import ActionInFlight, AlreadyDecided, DecisionRefused
from runs.models import Decision, RunAction, Source
from runs.permissions import can_decide
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
) -> Decision:
    """Approve or reject the suspension of ``run_id`` the actor was shown; queue the resume.

    ``shown_gate`` and ``shown_suspended_at`` name the suspension the actor saw.
    Returns the ``Decision``, whose ``resumption`` is the queued resume.
    Raises ``PermissionDenied`` unless ``actor`` may decide the run;
    ``AlreadyDecided`` (naming who decided what, when) if that suspension was
    decided; ``DecisionRefused`` if the run does not wait at it (moved on, not
    waiting, not an approval gate) or the note is missing or too long;
    ``ActionInFlight`` while another action on the run is open; ``RunNotFound``.
    """
    note = note.strip()
    if not approved and not note:
        raise DecisionRefused("Say why you reject this run: a note is required to reject.")
    if len(note) > NOTE_MAX_LENGTH:
        raise DecisionRefused(f"The note is {len(note)} characters; at most {NOTE_MAX_LENGTH}.")
    with transaction.atomic():
        run = locked_run(run_id)
        if not can_decide(actor, run):
            raise PermissionDenied("You may not approve or reject this run.")
        suspension = run.suspension
        if (shown := decision_on(run.run_id, shown_gate, shown_suspended_at)) is not None:
            moved_on = suspension is not None and (suspension.gate, suspension.since) != (
                shown_gate,
                shown_suspended_at,
            )
            raise AlreadyDecided(
                shown, now_waiting_at=suspension.gate if suspension and moved_on else None
            )
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
        if (in_flight := open_action(run.run_id)) is not None:
            raise ActionInFlight(in_flight)
        evidence = review_evidence(run)
        identity = actor_identity(actor)
        try:
            with transaction.atomic():
                decision = Decision.objects.create(
                    run=run,
                    gate=suspension.gate,
                    suspended_at=suspension.since,
                    approved=approved,
                    note=note,
                    decided_by=actor,
                    decided_by_identity=identity,
                    source=source,
                    client_address=client_address,
                    gate_message=evidence.gate_message,
                    evidence_digest=evidence.digest,
                )
        except IntegrityError:
            existing = decision_on(run.run_id, suspension.gate, suspension.since)
            if existing is None:
                raise
            raise AlreadyDecided(existing) from None
        action_enqueue(
            RunAction(
                run=run,
                kind=RunAction.Kind.DECISION,
                decision=decision,
                # decision_id: a key that stays the same on every attempt of this
                # resume, for skills after the gate to make their effects idempotent.
                resume_data={
                    "approved": approved,
                    "note": note,
                    "by": identity,
                    "decision_id": decision.pk,
                },
                requested_by=actor,
                requested_by_identity=identity,
                source=source,
                from_status=run.status,
            )
        )
    return decision
