"""Every state change of the console, one function each.

Each service takes keyword-only arguments and the acting user, checks the
permission itself, runs in one transaction, refuses a run in the wrong state
with a :class:`ConsoleError` whose message can be shown as is, and writes its
audit row in the same transaction as the change. Background work is enqueued in
that transaction too: the database task backend makes both land or neither.
"""

from __future__ import annotations

import getpass
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage, mailers
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.tasks import TaskResultStatus
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from neurocore.runtime.blueprint import Blueprint
from neurocore.runtime.executor import execute_blueprint_tracked, resume_blueprint

from runs import runtime
from runs.models import AccessChange, Decision, Run, RunAction, Source, SuspensionNotice
from runs.permissions import User, can_decide, can_delete, can_operate
from runs.selectors import current_decision, review_evidence
from runs.store import (
    UPSERT_CHECKPOINT,
    UPSERT_RUN,
    UPSERT_STEP,
    DjangoRunStore,
    checkpoint_values,
)
from runs.transfer import RunBundle, RunsFile

logger = logging.getLogger(__name__)

NOTE_MAX_LENGTH = 2000


class ConsoleError(Exception):
    """A request the console refuses, with a message meant for the person asking."""


class RunNotFound(ConsoleError):
    """No run has the given id."""


class DecisionRefused(ConsoleError):
    """The decision cannot be recorded (not waiting, stale, invalid)."""


class AlreadyDecided(DecisionRefused):
    """Someone decided this suspension first."""

    def __init__(self, decision: Decision) -> None:
        verdict = "approved" if decision.approved else "rejected"
        when = timezone.localtime(decision.decided_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        super().__init__(
            f"Already decided: {decision.decided_by_identity} {verdict} this run "
            f"at {when}. Nothing was changed."
        )
        self.decision = decision


class WorkerLost(Exception):
    """The worker running a task stopped answering (killed or hung)."""


def actor_identity(user: User) -> str:
    """How a person is named in audits and in NeuroCore's ``resume_data["by"]``."""
    return getattr(user, "email", "") or user.get_username()


def _who(actor: User | None, identity: str | None) -> str:
    """The identity to record: given explicitly (the CLI's --by), else the actor's."""
    if identity:
        return identity
    if actor is None:
        raise ValueError("An action needs an actor or an identity.")
    return actor_identity(actor)


def _require(
    permission: Callable[[User, Run], bool], actor: User | None, run: Run, message: str
) -> None:
    """Refuse a console user who lacks ``permission`` on ``run``.

    ``actor`` is None only for the command line run by someone with shell access
    to the console's database, who is trusted as an administrator would be.
    """
    if actor is not None and not permission(actor, run):
        raise PermissionDenied(message)


# -- decisions -------------------------------------------------------------------


def decision_record(
    *,
    run_id: str,
    approved: bool,
    note: str,
    shown_gate: str,
    shown_suspended_at: datetime,
    actor: User | None,
    source: Source,
    client_address: str | None = None,
    identity: str | None = None,
) -> Decision:
    """Approve or reject the suspension of ``run_id`` the actor was shown; queue the resume.

    ``shown_gate`` and ``shown_suspended_at`` name the suspension the actor saw:
    if the run has moved on since, the decision is refused as stale. The
    database allows one decision per suspension; whoever comes second is told
    who came first.
    """
    note = note.strip()
    if not approved and not note:
        raise DecisionRefused("Say why you reject this run: a note is required to reject.")
    if len(note) > NOTE_MAX_LENGTH:
        raise DecisionRefused(f"The note is {len(note)} characters; at most {NOTE_MAX_LENGTH}.")
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise RunNotFound(f"No run has the id {run_id!r}.")
        _require(can_decide, actor, run, "You may not approve or reject this run.")
        if (existing := current_decision(run)) is not None:
            raise AlreadyDecided(existing)
        if run.status != Run.Status.SUSPENDED or not run.suspended_at_node:
            raise DecisionRefused(
                f"This run is {run.get_status_display().lower()}, not waiting for a decision. "
                "Nothing was changed."
            )
        if (run.suspended_at_node, run.updated_at) != (shown_gate, shown_suspended_at):
            raise DecisionRefused(
                "This run has moved on since the page was opened: it now waits at "
                f"'{run.suspended_at_node}'. Reload the page and review it again."
            )
        evidence = review_evidence(run)
        identity = _who(actor, identity)
        try:
            with transaction.atomic():
                decision = Decision.objects.create(
                    run=run,
                    gate=run.suspended_at_node,
                    suspended_at=run.updated_at,
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
            existing = current_decision(run)
            if existing is None:
                raise
            raise AlreadyDecided(existing) from None
        _action_enqueue(
            RunAction(
                run=run,
                kind=RunAction.Kind.RESUME,
                decision=decision,
                resume_data={"approved": approved, "note": note, "by": identity},
                requested_by=actor,
                requested_by_identity=identity,
                source=source,
                from_status=run.status,
            )
        )
    return decision


def _action_enqueue(action: RunAction) -> RunAction:
    """Save a background action and enqueue the task that may claim it (same transaction)."""
    from runs.tasks import execute_run_action

    action.save()
    action.task_id = execute_run_action.enqueue(action.pk).id
    action.save(update_fields=["task_id"])
    return action


# -- operators' actions ------------------------------------------------------------

RESUMABLE = (Run.Status.SUSPENDED, Run.Status.FAILED)
CANCELLABLE = (Run.Status.SUSPENDED, Run.Status.RUNNING)


def _locked_run(run_id: str) -> Run:
    run = Run.objects.select_for_update().filter(pk=run_id).first()
    if run is None:
        raise RunNotFound(f"No run has the id {run_id!r}.")
    return run


def _refuse_if_busy(run: Run) -> None:
    pending = RunAction.objects.filter(
        run=run, state__in=[RunAction.State.QUEUED, RunAction.State.RUNNING]
    ).first()
    if pending is not None:
        raise ConsoleError(
            f"A {pending.get_kind_display().lower()} of this run, asked by "
            f"{pending.requested_by_identity}, is {pending.get_state_display().lower()}. "
            "Wait for it to finish."
        )


def run_resume_request(
    *,
    run_id: str,
    resume_data: dict[str, Any] | None,
    actor: User | None,
    source: Source,
    identity: str | None = None,
) -> RunAction:
    """Queue a resume of a suspended or failed run, with optional ``resume_data``."""
    with transaction.atomic():
        run = _locked_run(run_id)
        _require(can_operate, actor, run, "You may not resume this run.")
        if run.status not in RESUMABLE:
            raise ConsoleError(
                f"This run is {run.get_status_display().lower()}: only suspended or failed "
                "runs can be resumed. Nothing was changed."
            )
        _refuse_if_busy(run)
        return _action_enqueue(
            RunAction(
                run=run,
                kind=RunAction.Kind.RESUME,
                resume_data=resume_data,
                requested_by=actor,
                requested_by_identity=_who(actor, identity),
                source=source,
                from_status=run.status,
            )
        )


def run_replay_request(
    *, run_id: str, actor: User | None, source: Source, identity: str | None = None
) -> RunAction:
    """Queue a replay: a new run of the stored blueprint snapshot on the same inputs."""
    with transaction.atomic():
        run = _locked_run(run_id)
        _require(can_operate, actor, run, "You may not replay this run.")
        return _action_enqueue(
            RunAction(
                run=run,
                kind=RunAction.Kind.REPLAY,
                requested_by=actor,
                requested_by_identity=_who(actor, identity),
                source=source,
                from_status=run.status,
                result_run_id=uuid.uuid4().hex,
            )
        )


def run_cancel(
    *, run_id: str, actor: User | None, source: Source, identity: str | None = None
) -> RunAction:
    """Cancel a suspended or running run: it ends ``cancelled`` and cannot be resumed."""
    with transaction.atomic():
        run = _locked_run(run_id)
        _require(can_operate, actor, run, "You may not cancel this run.")
        if run.status not in CANCELLABLE:
            raise ConsoleError(
                f"This run is {run.get_status_display().lower()}: only suspended or running "
                "runs can be cancelled. Nothing was changed."
            )
        _refuse_if_busy(run)
        now = timezone.now()
        Run.objects.filter(pk=run.pk).update(status=Run.Status.CANCELLED, updated_at=now)
        return RunAction.objects.create(
            run=run,
            kind=RunAction.Kind.CANCEL,
            requested_by=actor,
            requested_by_identity=_who(actor, identity),
            source=source,
            from_status=run.status,
            state=RunAction.State.DONE,
            finished_at=now,
            outcome_status=Run.Status.CANCELLED,
        )


def run_delete(
    *, run_id: str, actor: User | None, source: Source, identity: str | None = None
) -> RunAction:
    """Delete a run and its steps; the record of the deletion (and its decisions) stay."""
    with transaction.atomic():
        run = _locked_run(run_id)
        _require(can_delete, actor, run, "You may not delete runs.")
        _refuse_if_busy(run)
        action = RunAction.objects.create(
            run=run,
            kind=RunAction.Kind.DELETE,
            requested_by=actor,
            requested_by_identity=_who(actor, identity),
            source=source,
            from_status=run.status,
            state=RunAction.State.DONE,
            finished_at=timezone.now(),
        )
        Run.objects.filter(pk=run.pk).delete()  # steps go by ON DELETE CASCADE
        return action


# -- resumptions (run by the worker) -------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Where a run stands after a resume."""

    status: str
    gate: str = ""
    error: str = ""


def run_action_execute(*, action_id: int, task_id: str) -> RunAction | None:
    """Claim a queued action for ``task_id`` and carry it out through NeuroCore.

    Returns None when the action is not this task's to run (already done, or
    queued again for another task by a watchdog). While it runs, a heartbeat
    tells other workers this one is alive.
    """
    now = timezone.now()
    claimed = RunAction.objects.filter(
        pk=action_id, state=RunAction.State.QUEUED, task_id=task_id
    ).update(
        state=RunAction.State.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
    )
    if not claimed:
        logger.info("Action %s is not task %s's to run; skipped.", action_id, task_id)
        return None
    action = RunAction.objects.select_related("decision").get(pk=action_id)
    execute = (
        _replay_through_neurocore
        if action.kind == RunAction.Kind.REPLAY
        else _resume_through_neurocore
    )
    with _heartbeat(action_id, task_id):
        outcome = execute(action)
    RunAction.objects.filter(pk=action_id, task_id=task_id, state=RunAction.State.RUNNING).update(
        state=RunAction.State.DONE,
        finished_at=timezone.now(),
        outcome_status=outcome.status,
        outcome_gate=outcome.gate,
        outcome_error=outcome.error,
    )
    action.refresh_from_db()
    return action


def _outcome_of(run: Run, error: str = "") -> Outcome:
    gate = (run.suspended_at_node or "") if run.status == Run.Status.SUSPENDED else ""
    return Outcome(status=run.status, gate=gate, error=run.error or error)


def _resume_through_neurocore(action: RunAction) -> Outcome:
    run = Run.objects.filter(pk=action.run_id).first()
    if run is None:
        return Outcome(status="", error="The run no longer exists.")
    decision = action.decision
    if decision is not None:
        still_waiting = (
            run.status == Run.Status.SUSPENDED
            and run.suspended_at_node == decision.gate
            and run.updated_at == decision.suspended_at
        )
        if not still_waiting:  # an earlier attempt applied the decision already
            return _outcome_of(run)
    elif run.status not in (Run.Status.SUSPENDED, Run.Status.FAILED):
        return Outcome(status=run.status, error=f"The run is {run.status}; nothing to resume.")

    project = runtime.current_project()
    store = DjangoRunStore()
    error = ""
    try:
        resume_blueprint(
            run.run_id,
            project.registry,
            project.config,
            resume_data=action.resume_data,
            run_store=store,
        )
    except Exception as exc:  # a failing resume is an outcome; NeuroCore records it on the run
        logger.warning("Resume of run %s failed: %s", run.run_id, exc)
        error = str(exc)
    finally:
        store.close()
    run.refresh_from_db()
    return _outcome_of(run, error)


def _replay_through_neurocore(action: RunAction) -> Outcome:
    original = Run.objects.filter(pk=action.run_id).first()
    if original is None:
        return Outcome(status="", error="The run to replay no longer exists.")
    project = runtime.current_project()
    store = DjangoRunStore()
    error = ""
    try:
        # What `neurocore runs replay` does: the stored snapshot, the original inputs.
        execute_blueprint_tracked(
            Blueprint(**original.blueprint_snapshot),
            project.registry,
            project.config,
            initial_data=original.initial_data,
            run_store=store,
            run_id=action.result_run_id,
        )
    except Exception as exc:  # a failing replay is an outcome, recorded on the new run
        logger.warning("Replay of run %s failed: %s", original.run_id, exc)
        error = str(exc)
    finally:
        store.close()
    replay = Run.objects.filter(pk=action.result_run_id).first()
    if replay is None:
        return Outcome(status="", error=error or "The replay did not start.")
    return _outcome_of(replay, error)


@contextmanager
def _heartbeat(action_id: int, task_id: str) -> Iterator[None]:
    """Refresh the resumption's heartbeat from a side thread while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.RESUME_HEARTBEAT_INTERVAL):
                RunAction.objects.filter(
                    pk=action_id, task_id=task_id, state=RunAction.State.RUNNING
                ).update(heartbeat_at=timezone.now())
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{action_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_actions_recover(*, now: datetime | None = None) -> int:
    """Queue again every background action whose worker died or whose task never ran.

    A running action with a heartbeat older than ``RESUME_STALE_AFTER`` lost
    its worker; a queued one that old whose task is no longer waiting to run
    (its worker died between taking the task and claiming the action) would
    never run. Each is handed to a new task in one conditional update, so
    among many watchdogs exactly one wins.
    """
    from runs.tasks import execute_run_action

    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.RESUME_STALE_AFTER)
    candidates = RunAction.objects.filter(
        Q(state=RunAction.State.RUNNING, heartbeat_at__lt=stale_before)
        | Q(state=RunAction.State.QUEUED, requested_at__lt=stale_before)
    ).values_list("pk", "state", "task_id")
    recovered = 0
    for pk, state, old_task_id in candidates:
        if state == RunAction.State.QUEUED and _task_waiting(old_task_id):
            continue  # its task waits for a free worker: nothing is lost
        with transaction.atomic():
            new_task_id = execute_run_action.enqueue(pk).id
            taken = RunAction.objects.filter(pk=pk, state=state, task_id=old_task_id).update(
                state=RunAction.State.QUEUED, task_id=new_task_id
            )
            if not taken:  # another watchdog, or the worker itself, got there first
                transaction.set_rollback(True)
                continue
            lost = DBTaskResult.objects.filter(
                pk=old_task_id, status=TaskResultStatus.RUNNING
            ).first()
            if lost is not None:
                lost.set_failed(WorkerLost(f"worker {lost.worker_ids[-1:]} stopped answering"))
        logger.warning("Action %s lost its worker; queued again as task %s", pk, new_task_id)
        recovered += 1
    return recovered


def _task_waiting(task_id: str) -> bool:
    return DBTaskResult.objects.filter(pk=task_id, status=TaskResultStatus.READY).exists()


# -- telling approvers ---------------------------------------------------------------


def suspensions_announce(*, now: datetime | None = None, limit: int = 100) -> int:
    """Tell the approvers of every suspension of the last day nobody was told of yet."""
    now = now or timezone.now()
    told = SuspensionNotice.objects.filter(
        run_id=OuterRef("run_id"),
        gate=OuterRef("suspended_at_node"),
        suspended_at=OuterRef("updated_at"),
    )
    pending = (
        Run.objects.awaiting_decision()
        .filter(updated_at__gte=now - timedelta(days=1))
        .exclude(Exists(told))
        .order_by("updated_at")[:limit]
    )
    return sum(suspension_notify(run=run) for run in pending)


def approvers_of(run: Run) -> list[User]:
    """Active users with an email address who may decide ``run``."""
    candidates = (
        get_user_model()
        .objects.with_perm(
            "runs.approve_run",
            include_superusers=True,
            backend="django.contrib.auth.backends.ModelBackend",
        )
        .filter(is_active=True)
        .exclude(email="")
        .order_by("pk")
    )
    return [user for user in candidates if can_decide(user, run)]


def suspension_notify(*, run: Run) -> int:
    """Email everyone who may decide ``run`` that it waits for them; once per suspension.

    The notice is committed first (a second worker finds it and sends nothing),
    then the mail goes out; if sending fails the notice is withdrawn so the next
    sweep tries again. Returns the number of emails sent.
    """
    try:
        with transaction.atomic():
            notice = SuspensionNotice.objects.create(
                run=run, gate=run.suspended_at_node, suspended_at=run.updated_at
            )
    except IntegrityError:
        return 0
    recipients = approvers_of(run)
    link = settings.CONSOLE_BASE_URL + reverse("approvals:review", args=[run.run_id])
    question = run.suspension_reason or run.suspended_at_node
    subject = f"Approval needed: {run.blueprint_name} — {question}"
    messages = [
        EmailMessage(
            subject=subject[:200],
            body=(
                f"Run {run.run_id} of {run.blueprint_name} waits for your decision at "
                f"'{run.suspended_at_node}':\n\n    {run.suspension_reason or ''}\n\n"
                f"Review it and approve or reject: {link}\n"
            ),
            to=[user.email],
        )
        for user in recipients
    ]
    try:
        sent = mailers.default.send_messages(messages) or 0
    except Exception:
        logger.exception("Could not email the approvers of run %s", run.run_id)
        notice.delete()
        return 0
    SuspensionNotice.objects.filter(pk=notice.pk).update(recipients=sent)
    return sent


# -- importing ---------------------------------------------------------------------------


@dataclass
class ImportSummary:
    """What an import did (or, dry, would do)."""

    imported: int = 0
    updated: int = 0
    skipped: int = 0
    steps: int = 0
    checkpoints: int = 0
    decisions: int = 0


def runs_import(
    *,
    runs_file: RunsFile,
    dry_run: bool,
    batch_size: int = 1000,
    on_batch: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import runs, steps, checkpoints (and exported decisions) from a file, idempotently.

    A run not here is imported; one here with another ``updated_at`` is updated
    the way NeuroCore's ``save_run`` updates (its outcome, not its identity) and
    its steps upserted; one here unchanged is skipped. Everything happens in one
    transaction: a malformed record anywhere leaves the console unchanged.
    """
    summary = ImportSummary()
    with transaction.atomic():
        for batch in runs_file.batches(batch_size):
            _import_batch(batch, summary, dry_run=dry_run)
            if on_batch is not None:
                on_batch(len(batch))
        checkpoints = [checkpoint_values(c) for c in runs_file.checkpoints()]
        summary.checkpoints = len(checkpoints)
        if not dry_run:
            UPSERT_CHECKPOINT.execute_many(checkpoints, DEFAULT_DB_ALIAS)
    if not dry_run and connection.vendor == "postgresql":
        # Fresh statistics after a bulk load, or the planner guesses badly.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE runs_run, runs_step")
        run_tallies_compact()
    return summary


def run_tallies_compact() -> None:
    """Rewrite the run tallies without the dead row versions a bulk load leaves.

    On PostgreSQL each run written in one transaction leaves a dead version of
    its tally row, which every count then reads past (a million-run load: 50 MB
    for 1,830 rows, 15 ms per count); single writes are pruned as they go.
    SQLite updates in place. A brief exclusive lock on the small table.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("CLUSTER runs_runtally USING runs_runtally_pkey")


def _import_batch(batch: list[RunBundle], summary: ImportSummary, *, dry_run: bool) -> None:
    rows = {bundle.run["run_id"]: (bundle, bundle.run) for bundle in batch}
    existing = dict(Run.objects.filter(pk__in=rows).values_list("run_id", "updated_at"))
    changed: list[tuple[RunBundle, dict[str, Any]]] = []
    for run_id, (bundle, row) in rows.items():
        if run_id not in existing:
            summary.imported += 1
        elif existing[run_id] == row["updated_at"]:
            summary.skipped += 1
            continue
        else:
            summary.updated += 1
        changed.append((bundle, row))
    # Keyed, so a step repeated in an export is written once (its last version).
    steps = list(
        {
            (step["run_id"], step["step_index"]): step
            for bundle, _ in changed
            for step in bundle.steps
        }.values()
    )
    decisions = [
        Decision(run_id=bundle.run["run_id"], **decision)
        for bundle, _ in changed
        for decision in bundle.decisions
    ]
    summary.steps += len(steps)
    if dry_run:
        summary.decisions += len(decisions)
        return
    UPSERT_RUN.execute_many([row for _, row in changed], DEFAULT_DB_ALIAS)
    UPSERT_STEP.execute_many(steps, DEFAULT_DB_ALIAS)
    if decisions:
        before = Decision.objects.count()
        Decision.objects.bulk_create(decisions, ignore_conflicts=True)
        summary.decisions += Decision.objects.count() - before


# -- access administration -------------------------------------------------------------


def access_change_record(
    *,
    actor: User | None,
    action: str,
    target_type: str,
    target: str,
    details: dict[str, Any] | None = None,
    identity: str | None = None,
) -> AccessChange:
    """Record a change to users, groups or scopes: who, when, what."""
    return AccessChange.objects.create(
        actor=actor,
        actor_identity=_who(actor, identity),
        action=action,
        target_type=target_type,
        target=target,
        details=details or {},
    )


def user_exists(username: str) -> bool:
    """Whether a console user has this username."""
    return get_user_model().objects.filter(username=username).exists()


def user_provision(
    *, username: str, email: str | None, groups: list[str], password: str | None
) -> tuple[Any, bool]:
    """Create or update a user in exactly ``groups``; record it in the access audit.

    The password, when given, must pass the configured password validators.
    """
    users = get_user_model().objects
    with transaction.atomic():
        user, created = users.get_or_create(username=username)
        if email is not None:
            user.email = email
        if password is not None:
            try:
                validate_password(password, user)
            except ValidationError as error:
                raise ConsoleError("Password refused: " + " ".join(error.messages)) from None
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.is_active = True
        user.save()
        user.groups.set(Group.objects.filter(name__in=groups))
        access_change_record(
            actor=None,
            identity=f"{getpass.getuser()} (OS user, createuser)",
            action="added" if created else "changed",
            target_type="user",
            target=username,
            details={
                "groups": sorted(groups),
                "email": user.email,
                "password_set": password is not None,
            },
        )
    return user, created


def runs_act(
    *,
    kind: str,
    run_ids: list[str],
    actor: User | None,
    source: Source,
    resume_data: dict[str, Any] | None = None,
) -> tuple[list[RunAction], list[tuple[str, str]]]:
    """One action on several runs, each on its own: what was done, and what was refused why."""
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
