"""Operators' actions on runs (resume, replay, cancel, delete) and reopening a rejection.

Each checks ``runs.rules.check_action`` under the run's row lock, records the
action with who and when in the same transaction, and queues background work
there too. None of them passes an approval gate: that is ``decision_record``'s.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from runs.errors import ConsoleError
from runs.models import Run, RunAction, Source
from runs.rules import check_action
from runs.services.actions import action_enqueue, action_open, locked_run, open_action, who
from runs.services.decisions import NOTE_MAX_LENGTH


def _checked_run(
    kind: str, run_id: str, actor: User | None, resume_data: dict[str, Any] | None = None
) -> Run:
    run = locked_run(run_id)
    check_action(kind, run, actor, open_action=open_action(run_id), resume_data=resume_data)
    return run


def run_resume_request(
    *,
    run_id: str,
    resume_data: dict[str, Any] | None,
    actor: User | None,
    source: Source,
    identity: str | None = None,
) -> RunAction:
    """Queue a resume of a failed run, or of one paused anywhere but at an approval gate.

    ``resume_data`` is handed to NeuroCore as is, except that it may not carry
    a decision (``approved``, ``note``, ``by``). Returns the queued action.
    Raises ``PermissionDenied`` without ``runs.operate_run`` on the run;
    ``ConsoleError`` for a run waiting at an approval gate (naming the review
    page and ``runs approve``), a rejected run (reopen it), any other status,
    or another action in flight; ``RunNotFound``.
    """
    with transaction.atomic():
        run = _checked_run(RunAction.Kind.RESUME, run_id, actor, resume_data)
        return action_enqueue(
            RunAction(
                run=run,
                kind=RunAction.Kind.RESUME,
                resume_data=resume_data,
                requested_by=actor,
                requested_by_identity=who(actor, identity),
                source=source,
                from_status=run.status,
            )
        )


def run_reopen(*, run_id: str, reason: str, actor: User, source: Source) -> RunAction:
    """Send a rejected run back to the gate that rejected it, with a reason; queue it.

    NeuroCore runs the gate again, so the run waits for a new decision.
    Returns the queued action. Raises ``PermissionDenied`` unless ``actor`` may
    decide the run; ``ConsoleError`` without a reason, for a run that is not
    rejected, or while another action is in flight; ``RunNotFound``.
    """
    reason = reason.strip()
    if not reason:
        raise ConsoleError("Say why you reopen this run: a reason is required.")
    if len(reason) > NOTE_MAX_LENGTH:
        raise ConsoleError(f"The reason is {len(reason)} characters; at most {NOTE_MAX_LENGTH}.")
    if actor is None:
        raise PermissionDenied("Reopening a run needs a console user who may decide it.")
    with transaction.atomic():
        run = _checked_run(RunAction.Kind.REOPEN, run_id, actor)
        return action_enqueue(
            RunAction(
                run=run,
                kind=RunAction.Kind.REOPEN,
                note=reason,
                requested_by=actor,
                requested_by_identity=who(actor, None),
                source=source,
                from_status=run.status,
            )
        )


def run_replay_request(
    *, run_id: str, actor: User | None, source: Source, identity: str | None = None
) -> RunAction:
    """Queue a replay: a new run of the stored blueprint snapshot on the same inputs.

    Returns the queued action (``result_run_id`` names the new run). Raises
    ``PermissionDenied``, ``ActionInFlight``, ``RunNotFound``.
    """
    with transaction.atomic():
        run = _checked_run(RunAction.Kind.REPLAY, run_id, actor)
        return action_enqueue(
            RunAction(
                run=run,
                kind=RunAction.Kind.REPLAY,
                requested_by=actor,
                requested_by_identity=who(actor, identity),
                source=source,
                from_status=run.status,
                result_run_id=uuid.uuid4().hex,
            )
        )


def _done_at_once(
    kind: str, run: Run, actor: User | None, identity: str | None, source: Source
) -> RunAction:
    """Record an action done in this transaction: opened (so the database refuses it while
    another is open), then closed."""
    action = action_open(
        RunAction(
            run=run,
            kind=kind,
            requested_by=actor,
            requested_by_identity=who(actor, identity),
            source=source,
            from_status=run.status,
            state=RunAction.State.RUNNING,
        )
    )
    action.state = RunAction.State.DONE
    action.finished_at = timezone.now()
    return action


def run_cancel(
    *, run_id: str, actor: User | None, source: Source, identity: str | None = None
) -> RunAction:
    """Cancel a waiting or running run: it ends ``cancelled`` and cannot be resumed.

    Returns the recorded action. Raises ``PermissionDenied``, ``ConsoleError``
    (status, or another action in flight), ``RunNotFound``.
    """
    with transaction.atomic():
        run = _checked_run(RunAction.Kind.CANCEL, run_id, actor)
        action = _done_at_once(RunAction.Kind.CANCEL, run, actor, identity, source)
        Run.objects.filter(pk=run.pk).update(
            status=Run.Status.CANCELLED, awaits_decision=False, updated_at=action.finished_at
        )
        action.outcome_status = Run.Status.CANCELLED
        action.save(update_fields=["state", "finished_at", "outcome_status"])
        return action


def run_delete(
    *, run_id: str, actor: User | None, source: Source, identity: str | None = None
) -> RunAction:
    """Delete a run and its steps; the record of the deletion (and its decisions) stay.

    Returns the recorded action. Raises ``PermissionDenied``, ``ActionInFlight``,
    ``RunNotFound``.
    """
    with transaction.atomic():
        run = _checked_run(RunAction.Kind.DELETE, run_id, actor)
        action = _done_at_once(RunAction.Kind.DELETE, run, actor, identity, source)
        action.save(update_fields=["state", "finished_at"])
        Run.objects.filter(pk=run.pk).delete()  # steps go by ON DELETE CASCADE
        return action


def runs_act(
    *,
    kind: str,
    run_ids: list[str],
    actor: User | None,
    source: Source,
    resume_data: dict[str, Any] | None = None,
) -> tuple[list[RunAction], list[tuple[str, str]]]:
    """One action on several runs, each on its own.

    Returns what was done, and (run id, reason) for each run refused.
    """
    done: list[RunAction] = []
    refused: list[tuple[str, str]] = []
    for run_id in run_ids:
        try:
            match kind:
                case RunAction.Kind.RESUME:
                    action = run_resume_request(
                        run_id=run_id, resume_data=resume_data, actor=actor, source=source
                    )
                case RunAction.Kind.REPLAY:
                    action = run_replay_request(run_id=run_id, actor=actor, source=source)
                case RunAction.Kind.CANCEL:
                    action = run_cancel(run_id=run_id, actor=actor, source=source)
                case RunAction.Kind.DELETE:
                    action = run_delete(run_id=run_id, actor=actor, source=source)
                case _:
                    raise ConsoleError(f"Unknown action {kind!r}.")
        except (ConsoleError, PermissionDenied) as error:
            refused.append((run_id, str(error)))
        else:
            done.append(action)
    return done, refused
