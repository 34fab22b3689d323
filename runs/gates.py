"""Deciding a gate under its policy: which policy applies, where the decisions stand,
and whether this person may decide now.

One place for these rules, read by the decision service under the run's lock,
by the review page and the inbox to show them, and by bulk confirmations to
list what a policy will refuse. It reads and never writes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from fnmatch import fnmatchcase
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Q
from django.utils import timezone

from runs.errors import when
from runs.models import ApprovalPolicy, Decision, Delegation, Run, RunAction, Suspension
from runs.permissions import AnyUser, can_decide
from runs.policies import (
    REQUESTER_STARTED_BY,
    GatePolicy,
    OnExpiry,
    declared_policy,
    duration_words,
    stricter,
)

POLICY_SEAT = "policy"  # the seat of a decision the policy made (an expiry)


def seat_of(user: User) -> str:
    """The seat a person's decisions count for."""
    return f"user:{user.pk}"


def console_policies() -> list[ApprovalPolicy]:
    """Every console approval policy, with its groups (two queries)."""
    return list(ApprovalPolicy.objects.prefetch_related("approvers", "escalate_to"))


def console_policy_config(policy: ApprovalPolicy) -> dict[str, Any]:
    """A console policy as the keys a gate's config would declare (blank keys left out)."""
    config: dict[str, Any] = {}
    if policy.approvals:
        config["approvals"] = policy.approvals
    approvers = sorted(group.name for group in policy.approvers.all())
    if approvers:
        config["approvers"] = approvers
    escalate_to = sorted(group.name for group in policy.escalate_to.all())
    if escalate_to:
        config["escalate_to"] = escalate_to
    if policy.requester_field:
        config["not_by"] = [policy.requester_field]
    if policy.distinct_gates:
        config["distinct_gates"] = True
    if policy.due:
        config["due"] = policy.due
    if policy.expires:
        config["expires"] = policy.expires
    if policy.on_expiry:
        config["on_expiry"] = policy.on_expiry
    return config


def gate_policy(
    run: Run, gate: str, *, policies: Iterable[ApprovalPolicy] | None = None
) -> GatePolicy:
    """The policy deciding ``gate`` of ``run`` takes: the blueprint's declaration,
    tightened by every console policy matching the blueprint and gate.

    ``policies`` are the console's (read when not given).
    """
    policy = declared_policy(run.gate_config(gate), source="the blueprint's author")
    for console in console_policies() if policies is None else policies:
        if fnmatchcase(run.blueprint_name, console.blueprint_pattern) and fnmatchcase(
            gate, console.gate_pattern
        ):
            policy = stricter(
                policy,
                declared_policy(
                    console_policy_config(console),
                    source=f"the console's policy '{console}'",
                ),
            )
    return policy


@dataclass(frozen=True)
class Tally:
    """Where the decisions on one suspension stand under its policy."""

    policy: GatePolicy
    approvals: tuple[Decision, ...]
    rejection: Decision | None

    @property
    def closing(self) -> Decision | None:
        """The decision that settled the suspension (a rejection, the last approval
        of the quorum, or the policy's expiry), or None while it is open."""
        if self.rejection is not None:
            return self.rejection
        if any(decision.seat == POLICY_SEAT for decision in self.approvals):
            return self.approvals[-1]
        if len(self.approvals) >= self.policy.approvals:
            return self.approvals[-1]
        return None

    @property
    def needed(self) -> int:
        """How many more approvals the suspension needs."""
        return 0 if self.closing else self.policy.approvals - len(self.approvals)

    @property
    def progress(self) -> str:
        """Where it stands in words: "1 of 2 approvals — ada@example.com approved"."""
        if self.policy.approvals <= 1 and not self.approvals:
            return ""
        who = ", ".join(decision.decider for decision in self.approvals)
        count = f"{len(self.approvals)} of {self.policy.approvals} approvals"
        return f"{count} — {who} approved" if who else count

    def counts(self, user: User) -> Decision | None:
        """The decision of this suspension ``user`` made or that counts for them
        (an imported one by the name it carries)."""
        names = _names(user)
        return next(
            (
                d
                for d in (*self.approvals, self.rejection)
                if d is not None
                and (
                    d.decided_by_id == user.pk
                    or d.seat == seat_of(user)
                    or (d.seat.startswith("imported:") and comparable(d.seat[9:]) in names)
                )
            ),
            None,
        )


def tally_of(run_id: str, suspension: Suspension, policy: GatePolicy) -> Tally:
    """The decisions made on ``suspension`` of the run, as they count under ``policy``."""
    decisions = list(
        Decision.objects.filter(
            run_id=run_id, gate=suspension.gate, suspended_at=suspension.since
        ).order_by("decided_at", "pk")
    )
    return Tally(
        policy=policy,
        approvals=tuple(d for d in decisions if d.approved),
        rejection=next((d for d in decisions if not d.approved), None),
    )


def requesters(run: Run, policy: GatePolicy) -> frozenset[str]:
    """Who requested the run, as the policy's ``not_by`` finds them (lowercased names)."""
    found: set[str] = set()
    for where in policy.not_by:
        if where == REQUESTER_STARTED_BY:
            for user in _started_by(run):
                found.update(_names(user))
            continue
        found.update(_named(run, where))
    return frozenset(found - {""})


def _named(run: Run, where: str) -> frozenset[str]:
    """The names at ``where`` (``initial_data.<path>``) in the run's inputs."""
    value: Any = run.initial_data
    for key in where.partition(".")[2].split("."):
        value = value.get(key) if isinstance(value, dict) else None
    values = value if isinstance(value, list) else [value]
    found: set[str] = set()
    for item in values:
        if isinstance(item, str | int) and not isinstance(item, bool):
            text = comparable(str(item))
            found.add(text)
            found.add(comparable(parseaddr(text)[1]))  # "Ada Lovelace <ada@example.com>"
    return frozenset(found - {""})


def comparable(name: str) -> str:
    """A username or an address as compared: compatibility-normalised (full-width
    letters as ASCII), case-folded, without the spaces around it."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def _started_by(run: Run) -> list[User]:
    """The console users who started the run (a replay they asked for made it)."""
    return [
        action.requested_by
        for action in RunAction.objects.filter(
            kind=RunAction.Kind.REPLAY, result_run_id=run.run_id, requested_by__isnull=False
        ).select_related("requested_by")
        if action.requested_by is not None
    ]


def delegation_for(delegate: User, principal: User, *, at: datetime) -> Delegation | None:
    """The delegation letting ``delegate`` decide for ``principal`` at ``at``, if any."""
    return Delegation.objects.filter(
        delegate=delegate, principal=principal, starts_at__lte=at, ends_at__gt=at
    ).first()


def principals_of(delegate: AnyUser, *, at: datetime | None = None) -> list[User]:
    """The people ``delegate`` may decide for at ``at`` (default now: read once per
    request, cached on the request's user), active accounts only."""
    if not delegate.is_authenticated:
        return []
    if at is None and "_console_principals" in delegate.__dict__:
        return delegate.__dict__["_console_principals"]
    principals = [
        d.principal
        for d in Delegation.objects.filter(
            Q(delegate=delegate.pk)
            & Q(starts_at__lte=at or timezone.now())
            & Q(ends_at__gt=at or timezone.now())
        ).select_related("principal")
        if d.principal.is_active
    ]
    if at is None:
        delegate.__dict__["_console_principals"] = principals
    return principals


def deciding_as(user: AnyUser, run: Run, *, at: datetime | None = None) -> list[User]:
    """Whom ``user`` may decide ``run`` as, if they may decide it at all (the role and
    the blueprint's scopes): themselves, then each person whose delegation they hold
    and who may decide it. The policy may still refuse each (``decide_refusal``)."""
    if not isinstance(user, User) or not user.is_active or not can_decide(user, run):
        return []
    principals = [p for p in principals_of(user, at=at) if can_decide(p, run)]
    return [user, *dict.fromkeys(principals)]


def is_overdue(policy: GatePolicy, suspension: Suspension, *, at: datetime) -> bool:
    """Whether the suspension is past its due time."""
    due = policy.due_at(suspension.since)
    return due is not None and at >= due


def _names(user: User) -> set[str]:
    return {comparable(name) for name in (user.get_username(), user.email or "")} - {""}


def group_names(user: User) -> set[str]:
    """The names of ``user``'s groups (read once, cached on the user object)."""
    if "_console_group_names" not in user.__dict__:
        user.__dict__["_console_group_names"] = set(user.groups.values_list("name", flat=True))
    return user.__dict__["_console_group_names"]


def decide_refusal(
    actor: User,
    run: Run,
    *,
    suspension: Suspension,
    tally: Tally,
    principal: User | None = None,
    at: datetime | None = None,
) -> str:
    """Why ``actor`` (deciding for ``principal``, a delegation, when given) may not
    decide ``suspension`` of ``run`` now under ``tally``'s policy; "" if they may.

    The role and blueprint scopes are asked of both the actor and the principal (a
    delegate is an approver too); the policy's groups of the principal, whose place
    the actor takes; the separation of duties of both.
    """
    at = at or timezone.now()
    policy = tally.policy
    if policy.fault:
        return policy.summary()[0]
    person = principal or actor
    if principal is not None and principal.pk != actor.pk:
        if not principal.is_active or delegation_for(actor, principal, at=at) is None:
            return (
                f"You may not decide for {principal.get_username()}: "
                "no delegation of theirs to you holds now."
            )
        if not can_decide(principal, run):
            return f"{principal.get_username()} may not decide this run, so nobody may for them."
    if not can_decide(actor, run):  # a delegate too: their own role and the scopes
        return "You may not approve or reject this run."
    overdue = is_overdue(policy, suspension, at=at)
    groups = policy.deciding_groups(overdue=overdue)
    if groups is not None and not (groups & group_names(person)):
        escalation = (
            f" Once it is overdue ({duration_words(policy.due)} after it began to wait), "
            f"{', '.join(sorted(policy.escalate_to))} may decide too."
            if policy.escalate_to and policy.due and not overdue
            else ""
        )
        whom = "you are" if person.pk == actor.pk else f"{person.get_username()} is"
        return (
            f"Only members of {', '.join(sorted(groups)) or 'no group'} may decide this gate, "
            f"and {whom} not one.{escalation}"
        )
    requested = requesters(run, policy)
    if unnamed := [w for w in policy.not_by if w != REQUESTER_STARTED_BY and not _named(run, w)]:
        return (
            f"The run does not say who requested it ({', '.join(unnamed)} is empty), and "
            "its gate keeps requesters from deciding their own runs: nobody can decide "
            "it. Replay it with the requester named, or cancel it."
        )
    for someone in {actor, person}:
        if _names(someone) & requested:
            return (
                f"{someone.get_username()} requested this run, so may not decide it: "
                "someone else must (separation of duties)."
            )
    if policy.distinct_gates:
        elsewhere = (
            Decision.objects.filter(run_id=run.run_id)
            .exclude(gate=suspension.gate)
            .filter(Q(decided_by=actor.pk) | Q(decided_by=person.pk) | Q(seat=seat_of(person)))
            .first()
        )
        if elsewhere is not None:
            return (
                f"{elsewhere.decider} decided the gate '{elsewhere.gate}' of this run; "
                "this gate must be decided by someone else."
            )
    for someone in {actor, person}:
        if (earlier := tally.counts(someone)) is not None:
            more = f"{tally.needed} more approval{'s' if tally.needed != 1 else ''}"
            who = "You" if earlier.decided_by_id == actor.pk else earlier.decider
            verdict = earlier.verdict.label.lower()
            return (
                f"{who} already {verdict} this at {when(earlier.decided_at)}; "
                f"it needs {more} from other people."
            )
    return ""


def expiry_outcome(policy: GatePolicy) -> bool | None:
    """What an expiry decides: True approve, False reject, None nothing."""
    return {OnExpiry.APPROVE: True, OnExpiry.REJECT: False}.get(policy.on_expiry)
