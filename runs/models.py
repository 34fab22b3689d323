"""Runs and steps as NeuroCore records them, plus flowengine checkpoints.

``Run`` and ``Step`` carry the field names of NeuroCore's ``RunRecord`` and
``StepRecord``; :mod:`runs.store` is the only place that converts between them.
Text fields are unbounded (``TextField``) because NeuroCore's records are: a
value that fits on SQLite fits on PostgreSQL too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from runs.agentjson import AgentJSONDecoder, AgentJSONEncoder


class AgentJSONField(models.JSONField):
    """A JSON column that stores any agent data SQLiteRunStore can store."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("encoder", AgentJSONEncoder)
        kwargs.setdefault("decoder", AgentJSONDecoder)
        super().__init__(*args, **kwargs)


APPROVAL_SKILL = "approval"  # NeuroCore's built-in approval gate (ApprovalSkill)


@dataclass(frozen=True)
class Suspension:
    """Where and since when a run waits: the one definition of "the suspension".

    ``gate`` is the node NeuroCore suspended the run at, ``since`` the instant it
    was suspended (the run's ``updated_at`` while it waits; with the gate it
    names the suspension a decision is about), ``message`` the question or reason.
    ``is_approval`` tells an approval gate (NeuroCore's ``approval`` skill,
    passed only by a ``Decision``) from any other suspension (a flowengine
    checkpoint, an external signal), which operators resume.
    """

    gate: str
    since: datetime
    message: str
    is_approval: bool

    @property
    def label(self) -> str:
        """The suspension in plain words, for badges and lists."""
        return "Waiting for a decision" if self.is_approval else "Paused, waiting to be resumed"


def approval_gates(blueprint_snapshot: Any) -> frozenset[str]:
    """The names of the approval-gate components of a stored blueprint snapshot."""
    components = (
        blueprint_snapshot.get("components") if isinstance(blueprint_snapshot, dict) else None
    )
    if not isinstance(components, list):
        return frozenset()
    return frozenset(
        str(component.get("name"))
        for component in components
        if isinstance(component, dict) and component.get("type") == APPROVAL_SKILL
    )


class Verdict(models.TextChoices):
    """What a decision said."""

    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class RunQuerySet(models.QuerySet["Run"]):
    """Read helpers over runs."""

    def awaiting_decision(self) -> RunQuerySet:
        """Suspended runs whose current suspension nobody has decided yet."""
        decided = Decision.objects.filter(
            run_id=models.OuterRef("run_id"),
            gate=models.OuterRef("suspended_at_node"),
            suspended_at=models.OuterRef("updated_at"),
        )
        return self.filter(
            status=Run.Status.SUSPENDED, awaits_decision=True, suspended_at_node__isnull=False
        ).exclude(models.Exists(decided))

    def with_step_counts(self) -> RunQuerySet:
        """Annotate ``step_count``: a correlated count, computed only for the rows returned."""
        counts = (
            Step.objects.filter(run_id=models.OuterRef("run_id"))
            .order_by()
            .values("run_id")
            .annotate(n=models.Count("*"))
            .values("n")
        )
        return self.annotate(step_count=Coalesce(models.Subquery(counts), 0))


class Run(models.Model):
    """One blueprint execution (NeuroCore's ``RunRecord``)."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        SUSPENDED = "suspended", "Waiting"
        CANCELLED = "cancelled", "Cancelled"
        # NeuroCore records a rejection at a gate as ``failed``; the store keeps
        # it apart (and gives NeuroCore ``failed`` back): an outcome, not a fault.
        REJECTED = "rejected", "Rejected"

    # Which statuses allow which actions: asked by services, admin and templates.
    RESUMABLE = frozenset({Status.SUSPENDED, Status.FAILED})
    CANCELLABLE = frozenset({Status.SUSPENDED, Status.RUNNING})

    run_id = models.TextField(primary_key=True)
    blueprint_name = models.TextField()
    blueprint_version = models.TextField(default="1.0")
    blueprint_path = models.TextField(null=True, blank=True)
    blueprint_snapshot = AgentJSONField(default=dict)
    flow_type = models.TextField(default="sequential")
    status = models.CharField(max_length=16, choices=Status, default=Status.RUNNING)
    initial_data = AgentJSONField(default=dict)
    final_context = AgentJSONField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    suspended_at_node = models.TextField(null=True, blank=True)
    suspension_reason = models.TextField(null=True, blank=True)
    checkpoint_id = models.TextField(null=True, blank=True)
    # Not NeuroCore's: written by the store with every save (agents' writes
    # bypass save() and signals), so the inbox reads it from an index.
    awaits_decision = models.BooleanField(
        default=False, help_text="Suspended at an approval gate (not another kind of pause)."
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    duration_ms = models.FloatField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        # Each listing index ends with the run id: the list's order (newest first,
        # then id) is the index order, and counting or skipping runs reads only it.
        indexes = [
            models.Index(fields=["-created_at", "-run_id"], name="run_created_idx"),
            models.Index(
                fields=["status", "-created_at", "-run_id"], name="run_status_created_idx"
            ),
            models.Index(
                fields=["blueprint_name", "-created_at", "-run_id"], name="run_bp_created_idx"
            ),
            models.Index(
                fields=["blueprint_name", "status", "-created_at", "-run_id"],
                name="run_bp_status_created_idx",
            ),
            # The runs waiting at a gate, with all a waiting count or inbox reads.
            models.Index(
                fields=["suspended_at_node", "updated_at", "run_id", "blueprint_name", "status"],
                condition=models.Q(status="suspended", awaits_decision=True),
                name="run_waiting_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    status__in=[
                        "running",
                        "completed",
                        "failed",
                        "suspended",
                        "cancelled",
                        "rejected",
                    ]
                ),
                name="run_status_valid",
            ),
        ]
        permissions = [
            ("approve_run", "Can approve or reject a run waiting at an approval gate"),
            ("operate_run", "Can resume, replay and cancel runs"),
        ]

    def __str__(self) -> str:
        return f"{self.blueprint_name} {self.run_id[:12]}"

    @property
    def suspension(self) -> Suspension | None:
        """The suspension this run waits at now, or None when it does not wait."""
        if self.status != Run.Status.SUSPENDED or not self.suspended_at_node:
            return None
        return Suspension(
            gate=self.suspended_at_node,
            since=self.updated_at,
            message=self.suspension_reason or "",
            is_approval=self.awaits_decision,
        )

    @property
    def is_resumable(self) -> bool:
        """Whether NeuroCore can resume the run (suspended or failed; not rejected)."""
        return self.status in Run.RESUMABLE

    @property
    def is_cancellable(self) -> bool:
        """Whether the run can be cancelled (suspended or running)."""
        return self.status in Run.CANCELLABLE


class RunTally(models.Model):
    """How many runs created on a day (UTC) are in a status now.

    Kept by database triggers on the runs table (migration 0008) whoever writes
    the runs, so the dashboard and the runs list read counts instead of
    counting a million rows. Never written by the application.
    """

    pk = models.CompositePrimaryKey("day", "status")
    day = models.DateField()
    status = models.CharField(max_length=16, choices=Run.Status)
    runs = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.day} {self.status}: {self.runs}"


class Step(models.Model):
    """One component invocation within a run (NeuroCore's ``StepRecord``).

    Keyed by ``(run_id, step_index)`` like NeuroCore's own ``steps`` table: no
    surrogate id to maintain on every write.
    """

    class Status(models.TextChoices):
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    pk = models.CompositePrimaryKey("run_id", "step_index")
    run = models.ForeignKey(
        Run,
        on_delete=models.DB_CASCADE,
        related_name="steps",
        db_column="run_id",
        db_index=False,  # the (run_id, step_index) primary key serves lookups by run
    )
    step_index = models.BigIntegerField()
    component = models.TextField()
    skill_type = models.TextField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.COMPLETED)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    output_keys = AgentJSONField(default=list)
    context_snapshot = AgentJSONField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "step_index"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["completed", "failed", "skipped"]),
                name="step_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id[:12]} #{self.step_index} {self.component}"


class Checkpoint(models.Model):
    """A flowengine checkpoint of a run suspended on the sync path.

    Transient by nature (flowengine deletes it on resume) but durable while it
    exists, so a run suspended in one process resumes in another.
    """

    checkpoint_id = models.TextField(primary_key=True)
    flow_config = AgentJSONField()
    context = AgentJSONField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.checkpoint_id


class Source(models.TextChoices):
    """Where a person acted from."""

    WEB = "web", "Web"
    CLI = "cli", "Command line"


class Decision(models.Model):
    """The approval audit: who approved or rejected which suspension, when and why.

    Append-only: the database refuses UPDATE and DELETE of a row (triggers on
    SQLite and PostgreSQL). The run is referenced without a constraint so a
    decision outlives its run; the decider likewise outlives their account,
    with a text snapshot of who they were. One decision per suspension: a
    suspension is the run's gate and the instant it was suspended
    (``Run.updated_at`` while it waits).
    """

    run = models.ForeignKey(
        Run,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="decisions",
        db_column="run_id",
    )
    gate = models.TextField(help_text="The node the run was suspended at.")
    suspended_at = models.DateTimeField(help_text="When the run was suspended at the gate.")
    approved = models.BooleanField()
    note = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="+",
    )
    decided_by_identity = models.TextField(help_text="Who decided, as they were known then.")
    decided_at = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(max_length=8, choices=Source)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    gate_message = models.TextField(help_text="The question the approver was shown.")
    evidence_digest = models.CharField(
        max_length=64, help_text="SHA-256 of the run data the approver was shown."
    )

    class Meta:
        ordering = ["-decided_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "gate", "suspended_at"], name="decision_one_per_suspension"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id[:12]} {self.gate} {self.verdict} by {self.decided_by_identity}"

    @property
    def verdict(self) -> Verdict:
        """Approved or rejected, as a value with a label."""
        return Verdict.APPROVED if self.approved else Verdict.REJECTED


class RunAction(models.Model):
    """Something a person asked the console to do to a run: the audit and the work.

    Resume and replay run in the task worker; the state is that worker's claim:
    ``queued`` until a worker claims it, ``running`` while the worker holds its
    lease (``runs.worker``), then ``done`` with the outcome, or ``interrupted``
    when the console cannot know how far it got. Cancel and delete are done at
    once and recorded ``done``. At most one action per run is open (queued or
    running): the database refuses a second. The run is referenced without a
    constraint: the record of a deletion outlives the run.
    """

    class Kind(models.TextChoices):
        RESUME = "resume", "Resume"
        DECISION = "decision", "Decision"  # the resume that applies a decision
        REOPEN = "reopen", "Reopen"  # a rejected run back to its gate
        REPLAY = "replay", "Replay"
        CANCEL = "cancel", "Cancel"
        DELETE = "delete", "Delete"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        INTERRUPTED = "interrupted", "Interrupted — needs an operator"

    OPEN_STATES = frozenset({State.QUEUED, State.RUNNING})
    # Carried out by the worker through NeuroCore (the others are done at once).
    BACKGROUND_KINDS = frozenset({Kind.RESUME, Kind.DECISION, Kind.REOPEN, Kind.REPLAY})

    run = models.ForeignKey(
        Run,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="actions",
        db_column="run_id",
    )
    kind = models.CharField(max_length=8, choices=Kind)
    note = models.TextField(blank=True, help_text="Why it was asked (required to reopen).")
    decision = models.OneToOneField(
        Decision,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="resumption",
        help_text="The approval decision this resume applies.",
    )
    resume_data = AgentJSONField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    requested_by_identity = models.TextField()
    requested_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=8, choices=Source, default=Source.WEB)
    from_status = models.CharField(max_length=16, blank=True, choices=Run.Status)
    state = models.CharField(max_length=12, choices=State, default=State.QUEUED)
    task_id = models.TextField(blank=True, help_text="The task that may claim it.")
    lease_owner = models.TextField(
        blank=True, help_text="The worker process holding it: host, pid, process start."
    )
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome_status = models.CharField(max_length=16, blank=True, choices=Run.Status)
    outcome_error = models.TextField(blank=True)
    outcome_gate = models.TextField(blank=True)
    result_run_id = models.TextField(blank=True, help_text="The new run a replay made.")

    class Meta:
        ordering = ["-requested_at"]
        indexes = [
            models.Index(fields=["state", "heartbeat_at"], name="action_state_idx"),
            models.Index(fields=["run", "-requested_at"], name="action_run_idx"),
            models.Index(fields=["result_run_id"], name="action_result_run_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["run"],
                condition=models.Q(state__in=["queued", "running"]),
                name="action_one_open_per_run",
                violation_error_message="Another action on this run is in flight.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.run_id[:12]} ({self.state})"

    @property
    def is_open(self) -> bool:
        """Whether it is queued or running: it blocks every other action on the run."""
        return self.state in RunAction.OPEN_STATES


class BulkRequest(models.Model):
    """One action on every run a filter matched ("select all N runs"), done by a worker.

    The runs are the ones the filter matched when the person confirmed, in the
    list's order; each is acted on through its service, on its own, as if
    selected alone, and refused runs are counted and listed. ``position`` says
    how far a worker got, so another worker carries on where a lost one stopped.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    REFUSALS_KEPT = 100

    kind = models.CharField(max_length=8, choices=RunAction.Kind)
    run_ids = models.JSONField(default=list, help_text="The runs matched when confirmed.")
    resume_data = AgentJSONField(null=True, blank=True)
    total = models.PositiveIntegerField()
    position = models.PositiveIntegerField(default=0, help_text="How many have been handled.")
    done = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    refusals = models.JSONField(default=list, blank=True, help_text="The first refusals.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    requested_by_identity = models.TextField()
    requested_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=8, choices=Source, default=Source.WEB)
    state = models.CharField(max_length=8, choices=State, default=State.QUEUED)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="bulk_state_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.total:,} runs ({self.get_state_display().lower()})"

    @property
    def percent(self) -> int:
        """How far it got, 0 to 100."""
        return 100 if not self.total else int(100 * self.position / self.total)


class SuspensionNotice(models.Model):
    """That the approvers of a suspension were told; at most one per suspension."""

    run = models.ForeignKey(
        Run,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_column="run_id",
    )
    gate = models.TextField()
    suspended_at = models.DateTimeField()
    recipients = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=1)
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="When to try again; empty once sent or given up."
    )
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "gate", "suspended_at"], name="notice_one_per_suspension"
            ),
        ]

    def __str__(self) -> str:
        return f"notice {self.run_id[:12]} {self.gate}"


class BlueprintScope(models.Model):
    """Who may act on the runs of some blueprints: "payments* may only be decided by Finance".

    Where a scope matches a run's blueprint (by name or glob pattern) for an
    action, only members of its groups may take that action on the run, on top
    of the role permission; where none matches, the role permission suffices.
    """

    class Action(models.TextChoices):
        DECIDE = "decide", "Approve or reject"
        OPERATE = "operate", "Resume, replay, cancel"

    pattern = models.CharField(
        max_length=200,
        help_text="A blueprint name or a glob pattern: payments*, refund-?, *-import.",
    )
    action = models.CharField(max_length=8, choices=Action)
    groups = models.ManyToManyField(
        "auth.Group", related_name="blueprint_scopes", help_text="Who may act where it matches."
    )
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["pattern", "action"]
        constraints = [
            models.UniqueConstraint(
                fields=["pattern", "action"], name="scope_unique_pattern_action"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pattern} ({self.get_action_display().lower()})"


class AccessChange(models.Model):
    """The audit of access administration: users, groups, scopes. Append-only in the app."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="+",
    )
    actor_identity = models.TextField()
    changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=16)  # added / changed / deleted / created by CLI …
    target_type = models.CharField(max_length=32)  # user / group / blueprint scope
    target = models.TextField(help_text="What was changed, as it was named then.")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        return f"{self.actor_identity} {self.action} {self.target_type} {self.target}"
