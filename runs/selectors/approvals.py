"""Reads for the approval pages: what waits for whom, the evidence, the decisions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import F, OuterRef, QuerySet, Subquery

from runs.errors import ConsoleError
from runs.models import Decision, GateDeadline, Run, RunAction, Step
from runs.permissions import DECIDE, AnyUser, allowed_blueprints, can_decide, can_view_runs
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
    """Runs waiting at a gate that ``user`` may decide, in ``by_due_time`` order.

    Scopes are applied to the blueprints that have waiting runs (a handful),
    so the query stays one filter whatever the number of runs.
    """
    if not can_decide(user):
        return Run.objects.none()
    waiting = Run.objects.awaiting_decision()
    if not user.is_superuser:
        blueprints = waiting.order_by().values_list("blueprint_name", flat=True).distinct()
        waiting = waiting.filter(blueprint_name__in=allowed_blueprints(user, blueprints, DECIDE))
    return by_due_time(waiting)


def waiting_count_for(user: AnyUser) -> int:
    """How many runs wait for a decision ``user`` may make."""
    return runs_awaiting_decision_for(user).count()


def decision_on(run_id: str, gate: str, suspended_at: datetime) -> Decision | None:
    """The decision taken on one suspension of a run (its gate and since when), if any."""
    return (
        Decision.objects.filter(run_id=run_id, gate=gate, suspended_at=suspended_at)
        .select_related("resumption")
        .first()
    )


def current_decision(run: Run) -> Decision | None:
    """The decision taken on the suspension ``run`` waits at now, if any."""
    suspension = run.suspension
    if suspension is None:
        return None
    return decision_on(run.run_id, suspension.gate, suspension.since)


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
