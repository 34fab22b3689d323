"""The rules of actions on runs, in one place: may this actor do this to this run now?

Services check them under the run's row lock and act; the confirmation pages
of bulk actions check them beforehand to list what will be refused. They read
and raise, never write.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.urls import reverse

from runs.errors import ActionInFlight, ConsoleError
from runs.models import Run, RunAction
from runs.permissions import AnyUser, can_decide, can_delete, can_operate

# What only a Decision may hand to NeuroCore's approval gate.
DECISION_KEYS = frozenset({"approved", "note", "by", "approvals", "decision_id"})


def gate_refusal(run: Run) -> str:
    """Why a run waiting at an approval gate cannot be resumed: only a decision passes it."""
    gate = run.suspended_at_node
    return (
        f"This run waits for a decision at the approval gate '{gate}'. Only a decision "
        f"passes it: approve or reject it on its review page "
        f"({reverse('approvals:review', args=[run.run_id])}) or with "
        f"`manage.py runs approve {run.run_id}`. Nothing was changed."
    )


def check_action(
    kind: str,
    run: Run,
    actor: AnyUser | None,
    *,
    open_action: RunAction | None,
    resume_data: dict[str, Any] | None = None,
) -> None:
    """Raise why ``actor`` may not take action ``kind`` on ``run`` now; return if they may.

    ``actor`` None is the command line without ``--by`` (shell access to the
    console's database), trusted for operators' actions but never to decide.
    ``open_action`` is the run's queued or running action, if any.
    Raises ``PermissionDenied`` (no permission) or ``ConsoleError`` (not now).
    """
    _check_permission(kind, run, actor)
    if open_action is not None:
        raise ActionInFlight(open_action)
    match kind:
        case RunAction.Kind.RESUME:
            if run.status == Run.Status.REJECTED:
                raise ConsoleError(
                    f"This run was rejected at '{run.suspended_at_node}'. A rejection is an "
                    "outcome, not a fault: someone who may decide the run can reopen it from "
                    "its review page, with a reason. Nothing was changed."
                )
            if not run.is_resumable:
                raise ConsoleError(
                    f"This run is {run.get_status_display().lower()}: only waiting or failed "
                    "runs can be resumed. Nothing was changed."
                )
            if (suspension := run.suspension) is not None and suspension.is_approval:
                raise ConsoleError(gate_refusal(run))
            if resume_data and (reserved := sorted(DECISION_KEYS & set(resume_data))):
                raise ConsoleError(
                    f"Resume data may not contain {', '.join(map(repr, reserved))}: only a "
                    "decision, recorded with who made it, answers an approval gate. "
                    "Nothing was changed."
                )
        case RunAction.Kind.REOPEN:
            if run.status != Run.Status.REJECTED:
                raise ConsoleError(
                    f"This run is {run.get_status_display().lower()}, not rejected: there is "
                    "nothing to reopen. Nothing was changed."
                )
        case RunAction.Kind.REPLAY:
            if isinstance(run.initial_data, dict) and "resume_data" in run.initial_data:
                raise ConsoleError(
                    "This run's inputs carry 'resume_data', which would answer its "
                    "approval gates without a decision: it cannot be replayed. "
                    "Nothing was changed."
                )
        case RunAction.Kind.CANCEL:
            if not run.is_cancellable:
                raise ConsoleError(
                    f"This run is {run.get_status_display().lower()}: only waiting or running "
                    "runs can be cancelled. Nothing was changed."
                )


def _check_permission(kind: str, run: Run, actor: AnyUser | None) -> None:
    """Raise ``PermissionDenied`` unless ``actor`` may take action ``kind`` on ``run``."""
    match kind:
        case RunAction.Kind.REOPEN:
            if actor is None or not can_decide(actor, run):
                raise PermissionDenied(
                    "You may not reopen this run: that needs the right to decide it."
                )
        case RunAction.Kind.RESUME | RunAction.Kind.REPLAY | RunAction.Kind.CANCEL:
            if actor is not None and not can_operate(actor, run):
                raise PermissionDenied(f"You may not {kind} this run.")
        case RunAction.Kind.DELETE:
            if actor is not None and not can_delete(actor, run):
                raise PermissionDenied("You may not delete runs.")
        case _:
            raise ConsoleError(f"Unknown action {kind!r}.")
