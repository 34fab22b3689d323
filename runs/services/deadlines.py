"""Deadlines at approval gates: due times, reminders, escalation and expiry, on schedule.

What this module guarantees (``deadlines_apply`` is called by every worker's
*deadlines* thread every ``DEADLINES_INTERVAL`` seconds):

- Each suspension at an approval gate gets one ``GateDeadline`` (a unique
  constraint: two workers record it once) holding the due and expiry times of
  its gate's policy (``runs.gates.gate_policy``: the blueprint's keys tightened
  by the console's policies), measured from when the run began to wait. Gates
  without times get a row too, so a suspension's policy is read once.
- Reminders, escalation and the emails they send: ``runs.services.reminders``.
- At ``expires_at`` the policy's ``on_expiry`` happens, under the run's row lock
  and in one transaction: ``reject`` or ``approve`` is recorded as a
  ``Decision`` by the policy (no person: seat ``policy``, source ``policy``, the
  policy named in its ``policy`` and note) and its resume queued as a person's
  would be; ``none`` records ``expired_at`` and the run keeps waiting (reminders
  go on). A run that moved on or was decided is left alone; one with an open
  action is tried again at the next pass. Under the lock the policy is read
  afresh: an expiry a policy change postponed does not happen.
- A deadline whose suspension ended (moved on, or settled by a decision) is
  marked ``settled_at`` and not looked at again.
- ``deadlines_recompute``, called when a console approval policy is saved or
  deleted, applies the new times to the deadlines of runs still waiting.

One run that raises does not stop a pass: the error is logged and the others
go on. A suspension older than the feature gets its deadline at the first pass,
and, if its expiry time is past, expires then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from runs.errors import RunNotFound
from runs.gates import POLICY_SEAT, console_policies, expiry_outcome, gate_policy, tally_of
from runs.models import ApprovalPolicy, Decision, GateDeadline, Run, Source
from runs.policies import GatePolicy, duration_text, duration_words
from runs.selectors import review_evidence
from runs.services.actions import locked_run, open_action
from runs.services.decisions import decision_resume_enqueue, policy_record
from runs.services.notifications import DATABASE_LOST
from runs.services.reminders import deadline_remind

logger = logging.getLogger(__name__)

EXPIRY_IDENTITY = "Expiry policy"  # who decided, in the audit, when the policy did


@dataclass
class DeadlineSweep:
    """What one pass did: deadlines recorded (two workers recording the same ones at
    once both count them; the table holds them once), reminder emails sent,
    expiries decided."""

    recorded: int = 0
    reminded: int = 0
    expired: int = 0


def deadlines_apply(*, now: datetime | None = None, limit: int = 100) -> DeadlineSweep:
    """One pass: record the deadlines of new suspensions, expire those whose time has
    come, remind about those due (at most ``limit`` of each).

    ``now`` is the instant the pass acts at (default: the clock). Returns what it
    did. Raises only when the database stops answering; anything else one run
    raises is logged and the pass goes on.
    """
    now = now or timezone.now()
    sweep = DeadlineSweep()
    waiting = GateDeadline.objects.waiting()
    GateDeadline.objects.filter(settled_at__isnull=True).exclude(
        pk__in=waiting.values("pk")
    ).update(settled_at=now, remind_at=None)
    sweep.recorded = _record_missing(now, limit)
    for deadline in GateDeadline.objects.filter(
        settled_at__isnull=True, expired_at__isnull=True, expires_at__lte=now
    ).order_by("expires_at")[:limit]:
        if _guarded(deadline, deadline_expire, now) is not None:
            sweep.expired += 1
    for deadline in GateDeadline.objects.filter(
        settled_at__isnull=True, remind_at__lte=now
    ).order_by("remind_at")[:limit]:
        sweep.reminded += _guarded(deadline, deadline_remind, now) or 0
    return sweep


def _guarded(deadline: GateDeadline, step: Callable[..., Any], now: datetime) -> Any:
    try:
        return step(deadline=deadline, now=now)
    except DATABASE_LOST:
        raise
    except Exception:
        logger.exception("The deadline of run %s at %r failed", deadline.run_id, deadline.gate)
        return None


def _record_missing(now: datetime, limit: int) -> int:
    """Record the deadlines of suspensions at approval gates that have none."""
    known = GateDeadline.objects.filter(
        run_id=OuterRef("run_id"),
        gate=OuterRef("suspended_at_node"),
        suspended_at=OuterRef("updated_at"),
    )
    runs = list(
        Run.objects.filter(
            status=Run.Status.SUSPENDED, awaits_decision=True, suspended_at_node__isnull=False
        )
        .exclude(Exists(known))
        .only("run_id", "blueprint_name", "blueprint_snapshot", "suspended_at_node", "updated_at")
        .order_by("updated_at", "run_id")[:limit]
    )
    if not runs:
        return 0
    policies = console_policies()
    rows = []
    for run in runs:
        gate = run.suspended_at_node or ""
        row = GateDeadline(
            run_id=run.run_id,
            gate=gate,
            suspended_at=run.updated_at,
            blueprint_name=run.blueprint_name,
        )
        _apply_times(row, gate_policy(run, gate, policies=policies))
        rows.append(row)
    # A second worker recording the same suspensions inserts nothing (the unique constraint).
    created = GateDeadline.objects.bulk_create(rows, ignore_conflicts=True)
    return len(created)


def _apply_times(deadline: GateDeadline, policy: GatePolicy) -> bool:
    """Set ``deadline``'s times from ``policy``; whether anything changed.

    A reminder not sent yet is due at the (new) due time; one already sent keeps
    its next time unless the gate has no due time any more. A changed expiry
    (time or outcome) is looked at again, even if it passed under the old one.
    """
    due_at = policy.due_at(deadline.suspended_at)
    expires_at = policy.expires_at(deadline.suspended_at)
    on_expiry = policy.on_expiry.value if expires_at is not None else ""
    changed = (deadline.due_at, deadline.expires_at, deadline.on_expiry) != (
        due_at,
        expires_at,
        on_expiry,
    )
    if due_at is None:
        deadline.remind_at = None
    elif not deadline.reminders or deadline.remind_at is None:
        deadline.remind_at = due_at
    if (deadline.expires_at, deadline.on_expiry) != (expires_at, on_expiry):
        deadline.expired_at = None
    deadline.due_at, deadline.expires_at, deadline.on_expiry = due_at, expires_at, on_expiry
    return changed


def deadline_expire(*, deadline: GateDeadline, now: datetime) -> Decision | None:
    """Apply the gate's ``on_expiry`` to ``deadline``'s suspension if it expired at ``now``.

    Under the run's row lock, in one transaction: ``reject`` or ``approve``
    records a ``Decision`` by the policy (with the policy named and why) and
    queues the resume NeuroCore's gate reads it from, as ``decision_record``
    does; ``none`` records that it expired. Returns the decision, or None when
    nothing was decided (``none``; the run moved on, was decided, has an open
    action, or the policy no longer lets it expire now). Never raises for a
    run that is gone: the deadline is settled.
    """
    with transaction.atomic():
        try:
            run = locked_run(deadline.run_id)
        except RunNotFound:
            _settle(deadline, now)
            return None
        # Read again under the lock: another worker may have acted a moment ago.
        current = GateDeadline.objects.filter(pk=deadline.pk).first()
        if current is None or current.settled_at is not None or current.expired_at is not None:
            return None
        suspension = run.suspension
        if (
            suspension is None
            or not suspension.is_approval
            or (suspension.gate, suspension.since) != (current.gate, current.suspended_at)
        ):
            _settle(current, now)
            return None
        policy = gate_policy(run, suspension.gate)
        tally = tally_of(run.run_id, suspension, policy)
        if tally.closing is not None:
            _settle(current, now)
            return None
        expires_at = policy.expires_at(suspension.since)
        if policy.fault or expires_at is None or expires_at > now:
            _apply_times(current, policy)  # the policy changed since it was recorded
            current.save()
            return None
        if open_action(run.run_id) is not None:
            return None  # tried again at the next pass
        outcome = expiry_outcome(policy)
        if outcome is None:
            GateDeadline.objects.filter(pk=current.pk).update(
                expired_at=now, on_expiry=policy.on_expiry.value
            )
            return None
        assert policy.expires is not None  # expires_at is set
        verdict = "approved" if outcome else "rejected"
        decision = Decision(
            run=run,
            gate=suspension.gate,
            suspended_at=suspension.since,
            approved=outcome,
            note=(
                f"Undecided for {duration_words(policy.expires)}: {verdict} by the gate's "
                f"expiry policy, set by {' and '.join(policy.reasons)}."
            ),
            decided_by=None,
            decided_by_identity=EXPIRY_IDENTITY,
            seat=POLICY_SEAT,
            policy={
                **policy_record(policy),
                "expires": duration_text(policy.expires),
                "on_expiry": policy.on_expiry.value,
            },
            decided_at=now,
            source=Source.POLICY,
            gate_message=suspension.message,
            evidence_digest=review_evidence(run).digest,
        )
        decision.save(force_insert=True)
        decision_resume_enqueue(
            run, decision, approvals=(*tally.approvals, decision) if outcome else (), actor=None
        )
        GateDeadline.objects.filter(pk=current.pk).update(
            expired_at=now, settled_at=now, remind_at=None
        )
    logger.info("Run %s at %r %s by its expiry policy", run.run_id, suspension.gate, verdict)
    return decision


def _settle(deadline: GateDeadline, now: datetime) -> None:
    GateDeadline.objects.filter(pk=deadline.pk, settled_at__isnull=True).update(
        settled_at=now, remind_at=None
    )


def deadlines_recompute(
    *, policies: Iterable[ApprovalPolicy] = (), now: datetime | None = None
) -> int:
    """Apply the current policies' times to the deadlines of suspensions still waiting.

    Call it when a console ``ApprovalPolicy`` is saved or deleted, in the same
    transaction, with that policy as it was and as it is (``policies``): only the
    deadlines of blueprints their patterns match are looked at (every open one
    when none is given). Returns how many deadlines changed. An expiry brought
    before ``now`` happens at the worker's next pass.
    """
    open_deadlines = GateDeadline.objects.filter(settled_at__isnull=True)
    patterns = {policy.blueprint_pattern for policy in policies}
    if patterns:
        names = open_deadlines.order_by().values_list("blueprint_name", flat=True).distinct()
        matched = [n for n in names if any(fnmatchcase(n, p) for p in patterns)]
        open_deadlines = open_deadlines.filter(blueprint_name__in=matched)
    current = console_policies()
    changed: list[GateDeadline] = []
    for chunk in _chunks(open_deadlines.order_by("pk")):
        runs = Run.objects.only("run_id", "blueprint_name", "blueprint_snapshot").in_bulk(
            [deadline.run_id for deadline in chunk]
        )
        for deadline in chunk:
            if (run := runs.get(deadline.run_id)) is None:
                continue
            if _apply_times(deadline, gate_policy(run, deadline.gate, policies=current)):
                changed.append(deadline)
    GateDeadline.objects.bulk_update(
        changed, ["due_at", "expires_at", "on_expiry", "remind_at", "expired_at"], batch_size=500
    )
    return len(changed)


def _chunks(deadlines: Any, size: int = 500) -> Iterable[list[GateDeadline]]:
    chunk: list[GateDeadline] = []
    for deadline in deadlines.iterator(chunk_size=size):
        chunk.append(deadline)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
