"""Who may act on which runs (blueprint scopes), and the audit of access changes."""

from __future__ import annotations

from django.conf import settings
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
