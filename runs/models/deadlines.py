"""The deadlines of approval gates: when each waiting suspension is due and expires."""

from __future__ import annotations

from django.db import models

from runs.models.audit import Decision
from runs.models.runs import Run


class GateDeadlineQuerySet(models.QuerySet["GateDeadline"]):
    """Read helpers over deadlines."""

    def waiting(self) -> GateDeadlineQuerySet:
        """Deadlines whose suspension still waits for a decision: the run is suspended
        at it, and no decision settled it (``Decision.settles``)."""
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
            settles=True,
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
