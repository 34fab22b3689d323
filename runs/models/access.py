"""Who may act on which runs (blueprint scopes), and the audit of access changes."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone


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


class ApprovalPolicy(models.Model):
    """A console administrator's approval policy for the gates of some blueprints.

    It applies where ``blueprint_pattern`` matches the run's blueprint and
    ``gate_pattern`` the gate (names or glob patterns). It can only tighten what
    the blueprint declares: key by key the stricter holds (``runs.policies``).
    Blank fields set nothing.
    """

    class OnExpiry(models.TextChoices):
        UNSET = "", "(as the blueprint says)"
        NONE = "none", "Keep waiting"
        REJECT = "reject", "Reject"
        APPROVE = "approve", "Approve"

    blueprint_pattern = models.CharField(
        max_length=200, help_text="A blueprint name or a glob pattern: payments*, refund-?."
    )
    gate_pattern = models.CharField(
        max_length=200, default="*", help_text="A gate name or a glob pattern; * for every gate."
    )
    approvals = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Distinct people who must approve, 1 to 50 (blank: as declared).",
    )
    approvers = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="+",
        help_text="Only members of these groups may decide (blank: as declared).",
    )
    escalate_to = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="+",
        help_text="Groups that may also decide once the gate is overdue.",
    )
    requester_field = models.CharField(
        max_length=200,
        blank=True,
        help_text="Where the requester is named, who may not decide: initial_data.<field> "
        "or started_by.",
    )
    distinct_gates = models.BooleanField(
        default=False, help_text="Nobody may decide two gates of the same run."
    )
    due = models.DurationField(
        null=True, blank=True, help_text="Reminders from this long after the run began to wait."
    )
    expires = models.DurationField(
        null=True, blank=True, help_text="After this long undecided, the expiry outcome happens."
    )
    on_expiry = models.CharField(max_length=8, choices=OnExpiry, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["blueprint_pattern", "gate_pattern"]
        verbose_name_plural = "approval policies"
        constraints = [
            models.UniqueConstraint(
                fields=["blueprint_pattern", "gate_pattern"], name="policy_unique_patterns"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.blueprint_pattern} / {self.gate_pattern}"


class Delegation(models.Model):
    """Someone out of office names a delegate who decides for them for a period.

    The delegate sees and decides the runs the principal may decide, in the
    principal's place: the decision records "delegate for principal", and the
    principal's groups, scopes and separation of duties apply to both.
    """

    principal = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="delegations_given"
    )
    delegate = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="delegations_held"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="delegation_ends_after_start",
            ),
            models.CheckConstraint(
                condition=~models.Q(principal=models.F("delegate")),
                name="delegation_not_to_oneself",
            ),
        ]
        indexes = [models.Index(fields=["delegate", "ends_at"], name="delegation_delegate_idx")]

    def __str__(self) -> str:
        return f"{self.delegate} for {self.principal}"


class AccessChange(models.Model):
    """The audit of access administration: who changed whose access, when, from what to what.

    One row per change, of an enumerated kind, with the target's state before and
    after (``before`` is empty for a creation, ``after`` for a deletion; passwords
    appear only as whether one is usable). Written by the services of
    ``runs.services.access`` in the transaction of the change, whoever makes it
    (the admin, ``createuser``, the demo); never edited through the console.
    """

    class Kind(models.TextChoices):
        USER_CREATED = "user-created", "User created"
        USER_CHANGED = "user-changed", "User details changed"
        USER_GROUPS_SET = "user-groups", "Roles and groups set"
        USER_ACTIVATED = "user-activated", "User activated"
        USER_DEACTIVATED = "user-deactivated", "User deactivated"
        PASSWORD_SET = "password-set", "Password set"
        USER_DELETED = "user-deleted", "User deleted"
        GROUP_CREATED = "group-created", "Group created"
        GROUP_CHANGED = "group-changed", "Group changed"
        GROUP_DELETED = "group-deleted", "Group deleted"
        SCOPE_SAVED = "scope-saved", "Blueprint scope saved"
        SCOPE_DELETED = "scope-deleted", "Blueprint scope deleted"
        POLICY_SAVED = "policy-saved", "Approval policy saved"
        POLICY_DELETED = "policy-deleted", "Approval policy deleted"
        DELEGATION_SAVED = "delegation-saved", "Delegation saved"
        DELEGATION_ENDED = "delegation-ended", "Delegation ended"

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="+",
    )
    actor_identity = models.TextField()
    changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=24, choices=Kind)
    target_type = models.CharField(max_length=32)  # user / group / blueprint scope
    target = models.TextField(help_text="What was changed, as it was named then.")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        return f"{self.actor_identity}: {self.get_kind_display()} — {self.target}"
