"""Runs and steps as NeuroCore records them, plus flowengine checkpoints.

``Run`` and ``Step`` carry the field names of NeuroCore's ``RunRecord`` and
``StepRecord``; :mod:`runs.store` is the only place that converts between them.
Text fields are unbounded (``TextField``) because NeuroCore's records are: a
value that fits on SQLite fits on PostgreSQL too. Agents write runs through the
store's upserts: ``save()`` and model signals never see those writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from runs.agentjson import AgentJSONDecoder, AgentJSONEncoder
from runs.models.states import Stall, Suspension
from runs.presentation import inert_text


class AgentJSONField(models.JSONField):
    """A JSON column that stores any agent data SQLiteRunStore can store."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("encoder", AgentJSONEncoder)
        kwargs.setdefault("decoder", AgentJSONDecoder)
        super().__init__(*args, **kwargs)


APPROVAL_SKILL = "approval"  # NeuroCore's built-in approval gate (ApprovalSkill)


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


class RunQuerySet(models.QuerySet["Run"]):
    """Read helpers over runs."""

    # Runs a search has already found through its indexes, when it keeps some of
    # its matches as conditions (``runs.selectors.runs_matching``): a bounded
    # count starts from them (``count_up_to``). Every copy of the queryset keeps them.
    search_keys: frozenset[str] = frozenset()

    def _clone(self) -> RunQuerySet:
        # Django's private copy hook, which every copy of a queryset goes through.
        clone = super()._clone()  # type: ignore[misc]
        clone.search_keys = self.search_keys
        return clone

    def with_search_keys(self, keys: frozenset[str]) -> RunQuerySet:
        """These runs, knowing that the runs ``keys`` are among them if they pass its
        filters."""
        clone = self._clone()
        clone.search_keys = keys
        return clone

    def count_up_to(self, cap: int) -> int:
        """How many runs there are, counting at most ``cap`` + 1 ("more than cap").

        When more than ``cap`` of the search's known matches pass the filters,
        they answer by key; else every run is tested (the search's conditions,
        run by run, until ``cap`` + 1 match)."""
        if len(self.search_keys) > cap:
            known = self.filter(pk__in=self.search_keys).order_by().values("pk")[: cap + 1]
            if (count := known.count()) > cap:
                return count
        # Only keys, unordered: the count reads an index, not the rows.
        return self.order_by().values("pk")[: cap + 1].count()

    def awaiting_decision(self) -> RunQuerySet:
        """Suspended runs whose current suspension is not settled yet (a quorum may
        have some of its approvals)."""
        decided = apps.get_model("runs", "Decision").objects.filter(
            run_id=models.OuterRef("run_id"),
            gate=models.OuterRef("suspended_at_node"),
            suspended_at=models.OuterRef("updated_at"),
            settles=True,
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
    # Not a column: set by RunQuerySet.with_step_counts() and the runs list's page.
    step_count: int
    # Not a column: a running run's latest sign of progress other than its own save (its
    # last step's end, the heartbeat of the worker resuming it), set by
    # selectors.note_progress(); read through ``last_progress``.
    progress_seen_at: datetime | None = None

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
                # awaits_decision too: SQLite reads only the index when every column the
                # query names is in it (the header's count on every page).
                fields=[
                    "suspended_at_node",
                    "updated_at",
                    "run_id",
                    "blueprint_name",
                    "status",
                    "awaits_decision",
                ],
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
        # Shown in page titles and breadcrumbs: stored text, made inert.
        return inert_text(f"{self.blueprint_name} {self.run_id[:12]}")

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
    def last_progress(self) -> datetime:
        """When the run last showed progress: saved, a step ended, its worker's heartbeat."""
        seen = self.progress_seen_at
        return max(self.updated_at, seen) if seen else self.updated_at

    @property
    def stall(self) -> Stall | None:
        """Whether a running run has shown no progress for ``RUN_STALLED_AFTER`` seconds."""
        if self.status != Run.Status.RUNNING:
            return None
        now = timezone.now()
        since = self.last_progress
        if now - since < timedelta(seconds=settings.RUN_STALLED_AFTER):
            return None
        return Stall(since=since, now=now)

    @property
    def is_progressing(self) -> bool:
        """Running and not stalled: a page showing it follows it (refreshes itself)."""
        return self.status == Run.Status.RUNNING and self.stall is None

    def gate_config(self, gate: str) -> dict[str, Any]:
        """The config of the approval component ``gate`` in the stored blueprint."""
        snapshot = self.blueprint_snapshot if isinstance(self.blueprint_snapshot, dict) else {}
        for component in snapshot.get("components") or []:
            if isinstance(component, dict) and component.get("name") == gate:
                config = component.get("config")
                return config if isinstance(config, dict) else {}
        return {}

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


class RunInputText(models.Model):
    """The text of a run's input values (``initial_data``), for search.

    One row per run whose inputs hold a string or a number: those values (each
    cut to its first ``INPUT_VALUE_CHARS`` characters), one a line, without the
    keys, brackets or quotes of the JSON, so a search for a key name (``"demo":
    true``) does not match every run. Kept by database triggers on the runs table
    (migration 0014) when a run is inserted or its inputs change, whoever writes
    it; an upsert that updates a run's status does not touch it. Deleted with its
    run. Never written by the application. Searched through a trigram index
    (PostgreSQL ``pg_trgm``, SQLite FTS5): ``runs.selectors.runs_matching``.
    """

    run = models.ForeignKey(
        Run,
        on_delete=models.DB_CASCADE,
        related_name="+",
        db_column="run_id",
        db_index=False,  # the unique constraint's index serves lookups by run
    )
    text = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run"], name="run_input_text_run_unique")]

    def __str__(self) -> str:
        return f"inputs of {self.run_id[:12]}"


INPUT_VALUE_CHARS = 1000  # per value: inputs can hold whole documents


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
