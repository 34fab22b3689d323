"""The audits of the console: decisions at gates, actions on runs, notices sent.

Each row says who, when and from where; none is edited through the console.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from runs.models.runs import AgentJSONField, Run


class Verdict(models.TextChoices):
    """What a decision said."""

    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class Source(models.TextChoices):
    """Where a person acted from."""

    WEB = "web", "Web"
    CLI = "cli", "Command line"
    POLICY = "policy", "Policy (automatic)"  # an expiry decided by the gate's policy


class Decision(models.Model):
    """The approval audit: who approved or rejected which suspension, when and why.

    Append-only: the database refuses UPDATE and DELETE of a row (triggers on
    SQLite and PostgreSQL). The run is referenced without a constraint so a
    decision outlives its run; the decider likewise outlives their account,
    with a text snapshot of who they were. A suspension is the run's gate and
    the instant it was suspended (``Run.updated_at`` while it waits). Each
    person decides a suspension at most once, and counts once: ``seat`` is the
    person the decision counts for (the principal when a delegate decides, or
    ``policy`` for an expiry), unique per suspension, and so is the decider.
    A gate needing N approvals takes N such rows; the one that completes the
    quorum, or a rejection, queues the resume.
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
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        help_text="Whom a delegate decided for.",
    )
    on_behalf_of_identity = models.TextField(blank=True)
    seat = models.CharField(
        max_length=40, default="", help_text="Whom the decision counts for: user:<id>, or policy."
    )
    answers = AgentJSONField(
        default=dict, blank=True, help_text="The decider's answer to the gate's inputs."
    )
    policy = models.JSONField(
        default=dict, blank=True, help_text="The policy that applied: approvals, why."
    )
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
                fields=["run", "gate", "suspended_at", "seat"], name="decision_one_seat"
            ),
            models.UniqueConstraint(
                fields=["run", "gate", "suspended_at", "decided_by"],
                condition=models.Q(decided_by__isnull=False),
                name="decision_one_per_person",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id[:12]} {self.gate} {self.verdict} by {self.decider}"

    @property
    def decider(self) -> str:
        """Who decided, in words: "Bob", or "Bob for Ada" when a delegate decided."""
        if self.on_behalf_of_identity:
            return f"{self.decided_by_identity} for {self.on_behalf_of_identity}"
        return self.decided_by_identity

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


class GateDeadlineQuerySet(models.QuerySet["GateDeadline"]):
    """Read helpers over deadlines."""

    def waiting(self) -> GateDeadlineQuerySet:
        """Deadlines whose suspension still waits for a decision: the run is suspended
        at it, and no decision settled it (a settling decision queued a resume)."""
        waits = Run.objects.filter(
            run_id=models.OuterRef("run_id"),
            status=Run.Status.SUSPENDED,
            awaits_decision=True,
            suspended_at_node=models.OuterRef("gate"),
            updated_at=models.OuterRef("suspended_at"),
        )
        settled = Decision.objects.filter(
            run_id=models.OuterRef("run_id"),
            gate=models.OuterRef("gate"),
            suspended_at=models.OuterRef("suspended_at"),
            resumption__isnull=False,
        )
        return self.filter(
            models.Q(models.Exists(waits)) & ~models.Q(models.Exists(settled)),
            settled_at__isnull=True,
        )


class GateDeadline(models.Model):
    """The times of one suspension at an approval gate, and what the worker did about them.

    Written by ``runs.services.deadlines`` (never through a form): when the gate's
    policy makes the suspension due (reminders from then on, escalation) and when
    it expires (the policy's ``on_expiry``). One per suspension; a row whose
    suspension ended (decided, moved on) is marked ``settled_at``. The run is
    referenced without a constraint, like a decision.
    """

    run = models.ForeignKey(
        Run,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_column="run_id",
        db_index=False,  # the unique (run, gate, suspended_at) serves lookups by run
    )
    gate = models.TextField()
    suspended_at = models.DateTimeField()
    blueprint_name = models.TextField(help_text="The run's blueprint (for counts per blueprint).")
    due_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    on_expiry = models.CharField(max_length=8, blank=True, help_text="reject, approve or none.")
    remind_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next reminder is due; empty when none is."
    )
    reminded_at = models.DateTimeField(null=True, blank=True)
    reminders = models.PositiveIntegerField(default=0, help_text="Reminders sent.")
    escalated_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(
        null=True, blank=True, help_text="When the worker saw the suspension end."
    )
    last_error = models.TextField(blank=True)

    objects = GateDeadlineQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "gate", "suspended_at"], name="deadline_one_per_suspension"
            ),
        ]
        indexes = [
            # What is overdue now, and what waits longest past its due time.
            models.Index(
                fields=["due_at"],
                condition=models.Q(settled_at__isnull=True),
                name="deadline_due_idx",
            ),
            models.Index(
                fields=["remind_at"],
                condition=models.Q(settled_at__isnull=True, remind_at__isnull=False),
                name="deadline_remind_idx",
            ),
            models.Index(
                fields=["expires_at"],
                condition=models.Q(settled_at__isnull=True, expired_at__isnull=True),
                name="deadline_expires_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"deadline {self.run_id[:12]} {self.gate}"
