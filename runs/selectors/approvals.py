"""Reads for the approval pages: what waits for whom, the evidence, the decisions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import F, OuterRef, QuerySet, Subquery
from django.utils import timezone

from runs.errors import ConsoleError
from runs.gates import (
    Tally,
    console_policies,
    decide_refusal,
    deciding_as,
    gate_policy,
    principals_of,
    tally_of,
)
from runs.models import (
    ApprovalPolicy,
    Decision,
    Delegation,
    GateDeadline,
    Run,
    RunAction,
    Step,
)
from runs.permissions import DECIDE, AnyUser, allowed_blueprints, can_decide, can_view_runs
from runs.policies import GatePolicy
from runs.rules import check_action


def runs_waiting_seen_by(user: AnyUser) -> QuerySet[Run]:
    """What the inbox lists for ``user``: the runs they may decide, or, for someone
    who may only look, every run waiting for a decision; in ``by_due_time`` order."""
    if can_decide(user):
        return runs_awaiting_decision_for(user)
    if can_view_runs(user):
        return by_due_time(Run.objects.awaiting_decision())
    return Run.objects.none()


def by_due_time(runs: QuerySet[Run]) -> QuerySet[Run]:
    """``runs`` with their suspension's ``due_at`` and ``expires_at`` (from its
    ``GateDeadline``; None when the gate sets no time or the worker has not recorded
    it yet), those with a due time first, earliest first, then longest waiting."""
    deadline = GateDeadline.objects.filter(
        run_id=OuterRef("run_id"),
        gate=OuterRef("suspended_at_node"),
        suspended_at=OuterRef("updated_at"),
    )
    return runs.annotate(
        due_at=Subquery(deadline.values("due_at")[:1]),
        expires_at=Subquery(deadline.values("expires_at")[:1]),
    ).order_by(F("due_at").asc(nulls_last=True), "updated_at", "run_id")


INBOX_HISTORY = 50  # decisions shown under "Decided by me" and "Decided recently"


def decisions_listed(user: AnyUser, *, mine: bool) -> QuerySet[Decision]:
    """The latest decisions ``user`` made (``mine``), or anyone made, newest first."""
    if not can_view_runs(user):
        return Decision.objects.none()
    decisions = Decision.objects.select_related("run", "resumption").order_by("-decided_at")
    if mine:
        decisions = decisions.filter(decided_by=user.pk)
    return decisions[:INBOX_HISTORY]


def runs_awaiting_decision_for(user: AnyUser) -> QuerySet[Run]:
    """Runs waiting at a gate that ``user`` may decide, in ``by_due_time`` order: by
    their own role and scopes, for themselves or for someone whose delegation they
    hold now. The gate's policy may still refuse them one.

    Scopes are applied to the blueprints that have waiting runs (a handful),
    so the query stays one filter whatever the number of runs.
    """
    return by_due_time(_awaiting_decision_for(user))


def _awaiting_decision_for(user: AnyUser) -> QuerySet[Run]:
    if not can_decide(user):  # a delegate is an approver too
        return Run.objects.none()
    waiting = Run.objects.awaiting_decision()
    if not user.is_superuser:
        principals = [p for p in principals_of(user) if can_decide(p)]
        blueprints = list(waiting.order_by().values_list("blueprint_name", flat=True).distinct())
        mine = set(allowed_blueprints(user, blueprints, DECIDE))  # the scopes alone
        allowed = set(mine)
        for principal in principals:
            allowed |= mine & set(allowed_blueprints(principal, blueprints, DECIDE))
        waiting = waiting.filter(blueprint_name__in=sorted(allowed))
    return waiting


def delegations_of(user: User) -> tuple[list[Delegation], list[Delegation]]:
    """The delegations ``user`` gave and holds that have not ended, soonest first."""
    current = Delegation.objects.filter(ends_at__gt=timezone.now()).select_related(
        "principal", "delegate"
    )
    return (
        list(current.filter(principal=user).order_by("starts_at", "pk")),
        list(current.filter(delegate=user).order_by("starts_at", "pk")),
    )


def waiting_count_for(user: AnyUser) -> int:
    """How many runs wait for a decision ``user`` may make (no ordering to count)."""
    return _awaiting_decision_for(user).count()


def decision_on(run_id: str, gate: str, suspended_at: datetime) -> Decision | None:
    """The decision that settled one suspension of a run (its gate and since when), or
    else the latest made on it (a quorum not yet complete), if any."""
    return (
        Decision.objects.filter(run_id=run_id, gate=gate, suspended_at=suspended_at)
        .select_related("resumption")
        .order_by("-settles", "-decided_at", "-pk")
        .first()
    )


@dataclass(frozen=True)
class GateReview:
    """A run's gate as a person reviewing it sees it: the policy, where the decisions
    stand, whom they may decide as, and why not when they may not."""

    policy: GatePolicy
    tally: Tally
    deciding_as: list[User]
    refusal: str
    since: datetime

    @property
    def open(self) -> bool:
        """Whether the suspension still takes decisions."""
        return self.tally.closing is None

    @property
    def due_at(self) -> datetime | None:
        """When the suspension is due, if its policy says."""
        return self.policy.due_at(self.since)

    @property
    def expires_at(self) -> datetime | None:
        """When the suspension expires, if its policy says."""
        return self.policy.expires_at(self.since)


def gate_review(
    run: Run, user: AnyUser, *, policies: list[ApprovalPolicy] | None = None
) -> GateReview | None:
    """How ``user`` stands toward the approval gate ``run`` waits at (None if it waits
    at none). Reads the console's policies, the suspension's decisions and the
    user's delegations (a few queries, whatever the run). ``policies``: the
    console's, when already read (for many runs at once)."""
    suspension = run.suspension
    if suspension is None or not suspension.is_approval:
        return None
    policy = gate_policy(run, suspension.gate, policies=policies)
    tally = tally_of(run.run_id, suspension, policy)
    options = deciding_as(user, run)
    refusal = ""
    if isinstance(user, User) and tally.closing is None:
        refusals = [
            decide_refusal(
                user,
                run,
                suspension=suspension,
                tally=tally,
                principal=None if person.pk == user.pk else person,
            )
            for person in options
        ]
        options = [person for person, why in zip(options, refusals, strict=True) if not why]
        refusal = "" if options else next(iter(refusals), "")
    return GateReview(
        policy=policy, tally=tally, deciding_as=options, refusal=refusal, since=suspension.since
    )


def gate_tallies(runs: list[Run]) -> dict[str, Tally]:
    """For each run waiting at an approval gate, where its decisions stand (three
    queries for any number of runs: the console's policies and their groups, the
    decisions on these suspensions)."""
    waiting = {run.run_id: run for run in runs if run.suspension and run.suspension.is_approval}
    if not waiting:
        return {}
    policies = console_policies()
    decisions: dict[tuple[str, str, datetime], list[Decision]] = {}
    for decision in Decision.objects.filter(run_id__in=list(waiting)).order_by("decided_at", "pk"):
        key = (decision.run_id, decision.gate, decision.suspended_at)
        decisions.setdefault(key, []).append(decision)
    tallies = {}
    for run_id, run in waiting.items():
        suspension = run.suspension
        assert suspension is not None
        made = decisions.get((run_id, suspension.gate, suspension.since), [])
        tallies[run_id] = Tally(
            policy=gate_policy(run, suspension.gate, policies=policies),
            approvals=tuple(d for d in made if d.approved),
            rejection=next((d for d in made if not d.approved), None),
        )
    return tallies


@dataclass(frozen=True)
class ReviewEvidence:
    """What an approver is shown of a waiting run, and its digest."""

    gate: str
    gate_message: str
    inputs: dict[str, Any]
    data: dict[str, Any]
    steps: list[Step]
    digest: str


def review_evidence(run: Run, *, answers: dict[str, Any] | None = None) -> ReviewEvidence:
    """The gate, inputs, data produced so far and steps done, as shown for review.

    The digest covers what was shown and, when given, the decider's ``answers``
    to the gate's inputs: a decision is bound to both.
    """
    steps = list(run.steps.order_by("step_index"))
    context = run.final_context if isinstance(run.final_context, dict) else {}
    produced = context.get("data")
    data: dict[str, Any] = produced if isinstance(produced, dict) else {}
    gate = run.suspended_at_node or ""
    message = run.suspension_reason or ""
    shown = {
        "run_id": run.run_id,
        "gate": gate,
        "gate_message": message,
        "inputs": run.initial_data,
        "data": data,
        "steps": [[s.step_index, s.component, s.status] for s in steps],
    }
    if answers:
        shown["answers"] = answers
    canonical = json.dumps(shown, sort_keys=True, default=str, separators=(",", ":"))
    return ReviewEvidence(
        gate=gate,
        gate_message=message,
        inputs=run.initial_data,
        data=data,
        steps=steps,
        digest=hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest(),
    )


def decisions_of(run_id: str) -> QuerySet[Decision]:
    """Every decision taken on a run, newest first, with its resumption."""
    return Decision.objects.filter(run_id=run_id).select_related("resumption")


def latest_resumption(run_id: str) -> RunAction | None:
    """The most recent resume of a run (by a decision, a reopening or an operator)."""
    return (
        RunAction.objects.filter(
            run_id=run_id,
            kind__in=[RunAction.Kind.RESUME, RunAction.Kind.DECISION, RunAction.Kind.REOPEN],
        )
        .order_by("-requested_at", "-pk")
        .first()
    )


@dataclass(frozen=True)
class Reopening:
    """A rejected run sent back to its gate: who rejected it and why, who reopened it and why."""

    rejection: Decision | None
    reopen: RunAction


def reopenings(runs: list[Run]) -> dict[str, Reopening]:
    """For each of these runs waiting at a gate it was reopened to, that reopening.

    Only a reopening made before the run's current suspension began is the
    story of the question asked now (two queries for any number of runs).
    """
    since = {run.run_id: run.suspension.since for run in runs if run.suspension is not None}
    if not since:
        return {}
    latest: dict[str, RunAction] = {}
    for action in RunAction.objects.filter(
        run_id__in=list(since), kind=RunAction.Kind.REOPEN
    ).order_by("run_id", "-requested_at", "-pk"):
        if action.requested_at <= since[action.run_id]:
            latest.setdefault(action.run_id, action)
    rejections: dict[str, list[Decision]] = {}
    for decision in Decision.objects.filter(run_id__in=list(latest), approved=False).order_by(
        "-decided_at"
    ):
        rejections.setdefault(decision.run_id, []).append(decision)
    return {
        run_id: Reopening(
            rejection=next(
                (d for d in rejections.get(run_id, []) if d.decided_at <= reopen.requested_at),
                None,
            ),
            reopen=reopen,
        )
        for run_id, reopen in latest.items()
    }


def open_action_of(run_id: str) -> RunAction | None:
    """The run's queued or running action, if any (it blocks every other one)."""
    return RunAction.objects.filter(run_id=run_id, state__in=RunAction.OPEN_STATES).first()


@dataclass(frozen=True)
class ActionPreview:
    """What an action on selected runs will do: the runs it will act on, and the refused."""

    allowed: list[Run]
    refused: list[tuple[Run, str]]


def action_preview(
    kind: str,
    runs: list[Run],
    actor: AnyUser,
    *,
    open_actions: dict[str, RunAction] | None = None,
) -> ActionPreview:
    """Check ``runs.rules.check_action`` for each run before a person confirms an action.

    The runs' open actions are read in one query, unless given (by run id).
    The service checks again under the run's lock when the action is confirmed.
    """
    if open_actions is None:
        open_actions = {
            action.run_id: action
            for action in RunAction.objects.filter(
                run_id__in=[run.run_id for run in runs], state__in=RunAction.OPEN_STATES
            )
        }
    allowed: list[Run] = []
    refused: list[tuple[Run, str]] = []
    for run in runs:
        try:
            check_action(kind, run, actor, open_action=open_actions.get(run.run_id))
        except (ConsoleError, PermissionDenied) as error:
            # Nothing was tried yet: "Nothing was changed." would say otherwise.
            refused.append((run, str(error).removesuffix(" Nothing was changed.")))
        else:
            allowed.append(run)
    return ActionPreview(allowed=allowed, refused=refused)
