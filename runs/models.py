"""Runs and steps as NeuroCore records them, plus flowengine checkpoints.

``Run`` and ``Step`` carry the field names of NeuroCore's ``RunRecord`` and
``StepRecord``; :mod:`runs.store` is the only place that converts between them.
Text fields are unbounded (``TextField``) because NeuroCore's records are: a
value that fits on SQLite fits on PostgreSQL too.
"""

from __future__ import annotations

from django.db import models

from runs.agentjson import AgentJSONDecoder, AgentJSONEncoder


class AgentJSONField(models.JSONField):
    """A JSON column that stores any agent data SQLiteRunStore can store."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("encoder", AgentJSONEncoder)
        kwargs.setdefault("decoder", AgentJSONDecoder)
        super().__init__(*args, **kwargs)


class Run(models.Model):
    """One blueprint execution (NeuroCore's ``RunRecord``)."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        SUSPENDED = "suspended", "Awaiting approval"
        CANCELLED = "cancelled", "Cancelled"

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
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="run_created_idx"),
            models.Index(fields=["status", "-created_at"], name="run_status_created_idx"),
            models.Index(fields=["blueprint_name", "-created_at"], name="run_bp_created_idx"),
            models.Index(
                fields=["blueprint_name", "status", "-created_at"],
                name="run_bp_status_created_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["running", "completed", "failed", "suspended", "cancelled"]
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
