"""Approval policies, delegations, and decisions that count per person (quorums).

A suspension may now take several decisions, one per person (``seat``). The
decision table is append-only by trigger, so the triggers are dropped while the
table changes and existing rows get their seat, then created again (SQLite
rebuilds the table, which would drop them anyway).
"""

import importlib

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
import runs.agentjson
import runs.models.runs
from django.conf import settings
from django.db import migrations, models


APPEND_ONLY = importlib.import_module("runs.migrations.0003_decision_append_only")


def fill_seats(apps, schema_editor):
    """Each existing decision counts for its decider (or, without one, for itself)."""
    Decision = apps.get_model("runs", "Decision")
    for decision in Decision.objects.filter(seat="").only("pk", "decided_by_id"):
        seat = (
            f"user:{decision.decided_by_id}" if decision.decided_by_id else f"legacy:{decision.pk}"
        )
        Decision.objects.filter(pk=decision.pk).update(seat=seat)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("runs", "0013_covering_waiting_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(APPEND_ONLY.drop_triggers, APPEND_ONLY.create_triggers),
        migrations.CreateModel(
            name="ApprovalPolicy",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "blueprint_pattern",
                    models.CharField(
                        help_text="A blueprint name or a glob pattern: payments*, refund-?.",
                        max_length=200,
                    ),
                ),
                (
                    "gate_pattern",
                    models.CharField(
                        default="*",
                        help_text="A gate name or a glob pattern; * for every gate.",
                        max_length=200,
                    ),
                ),
                (
                    "approvals",
                    models.PositiveSmallIntegerField(
                        blank=True,
                        help_text="Distinct people who must approve, 1 to 50 (blank: as declared).",
                        null=True,
                        validators=[
                            django.core.validators.MinValueValidator(1),
                            django.core.validators.MaxValueValidator(50),
                        ],
                    ),
                ),
                (
                    "requester_field",
                    models.CharField(
                        blank=True,
                        help_text="Where the requester is named, who may not decide: initial_data.<field> or started_by.",
                        max_length=200,
                    ),
                ),
                (
                    "distinct_gates",
                    models.BooleanField(
                        default=False, help_text="Nobody may decide two gates of the same run."
                    ),
                ),
                (
                    "due",
                    models.DurationField(
                        blank=True,
                        help_text="Reminders from this long after the run began to wait.",
                        null=True,
                    ),
                ),
                (
                    "expires",
                    models.DurationField(
                        blank=True,
                        help_text="After this long undecided, the expiry outcome happens.",
                        null=True,
                    ),
                ),
                (
                    "on_expiry",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("", "(as the blueprint says)"),
                            ("none", "Keep waiting"),
                            ("reject", "Reject"),
                            ("approve", "Approve"),
                        ],
                        max_length=8,
                    ),
                ),
                ("note", models.TextField(blank=True)),
            ],
            options={
                "verbose_name_plural": "approval policies",
                "ordering": ["blueprint_pattern", "gate_pattern"],
            },
        ),
        migrations.CreateModel(
            name="Delegation",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("starts_at", models.DateTimeField()),
                ("ends_at", models.DateTimeField()),
                ("note", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "ordering": ["-starts_at"],
            },
        ),
        migrations.RemoveConstraint(
            model_name="decision",
            name="decision_one_per_suspension",
        ),
        migrations.AddField(
            model_name="decision",
            name="answers",
            field=runs.models.runs.AgentJSONField(
                blank=True,
                decoder=runs.agentjson.AgentJSONDecoder,
                default=dict,
                encoder=runs.agentjson.AgentJSONEncoder,
                help_text="The decider's answer to the gate's inputs.",
            ),
        ),
        migrations.AddField(
            model_name="decision",
            name="on_behalf_of",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                help_text="Whom a delegate decided for.",
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="decision",
            name="on_behalf_of_identity",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="decision",
            name="policy",
            field=models.JSONField(
                blank=True, default=dict, help_text="The policy that applied: approvals, why."
            ),
        ),
        migrations.AddField(
            model_name="decision",
            name="seat",
            field=models.CharField(
                default="",
                help_text="Whom the decision counts for: user:<id>, or policy.",
                max_length=200,
            ),
        ),
        migrations.AlterField(
            model_name="accesschange",
            name="kind",
            field=models.CharField(
                choices=[
                    ("user-created", "User created"),
                    ("user-changed", "User details changed"),
                    ("user-groups", "Roles and groups set"),
                    ("user-activated", "User activated"),
                    ("user-deactivated", "User deactivated"),
                    ("password-set", "Password set"),
                    ("user-deleted", "User deleted"),
                    ("group-created", "Group created"),
                    ("group-changed", "Group changed"),
                    ("group-deleted", "Group deleted"),
                    ("scope-saved", "Blueprint scope saved"),
                    ("scope-deleted", "Blueprint scope deleted"),
                    ("policy-saved", "Approval policy saved"),
                    ("policy-deleted", "Approval policy deleted"),
                    ("delegation-saved", "Delegation saved"),
                    ("delegation-ended", "Delegation ended"),
                ],
                max_length=24,
            ),
        ),
        migrations.AlterField(
            model_name="bulkrequest",
            name="source",
            field=models.CharField(
                choices=[("web", "Web"), ("cli", "Command line"), ("policy", "Policy (automatic)")],
                default="web",
                max_length=8,
            ),
        ),
        migrations.AlterField(
            model_name="decision",
            name="source",
            field=models.CharField(
                choices=[("web", "Web"), ("cli", "Command line"), ("policy", "Policy (automatic)")],
                max_length=8,
            ),
        ),
        migrations.AlterField(
            model_name="runaction",
            name="source",
            field=models.CharField(
                choices=[("web", "Web"), ("cli", "Command line"), ("policy", "Policy (automatic)")],
                default="web",
                max_length=8,
            ),
        ),
        migrations.AddConstraint(
            model_name="decision",
            constraint=models.UniqueConstraint(
                fields=("run", "gate", "suspended_at", "seat"), name="decision_one_seat"
            ),
        ),
        migrations.AddConstraint(
            model_name="decision",
            constraint=models.UniqueConstraint(
                condition=models.Q(("decided_by__isnull", False)),
                fields=("run", "gate", "suspended_at", "decided_by"),
                name="decision_one_per_person",
            ),
        ),
        migrations.AddField(
            model_name="approvalpolicy",
            name="approvers",
            field=models.ManyToManyField(
                blank=True,
                help_text="Only members of these groups may decide (blank: as declared).",
                related_name="+",
                to="auth.group",
            ),
        ),
        migrations.AddField(
            model_name="approvalpolicy",
            name="escalate_to",
            field=models.ManyToManyField(
                blank=True,
                help_text="Groups that may also decide once the gate is overdue.",
                related_name="+",
                to="auth.group",
            ),
        ),
        migrations.AddField(
            model_name="delegation",
            name="delegate",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="delegations_held",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="delegation",
            name="principal",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="delegations_given",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddConstraint(
            model_name="approvalpolicy",
            constraint=models.UniqueConstraint(
                fields=("blueprint_pattern", "gate_pattern"), name="policy_unique_patterns"
            ),
        ),
        migrations.AddIndex(
            model_name="delegation",
            index=models.Index(fields=["delegate", "ends_at"], name="delegation_delegate_idx"),
        ),
        migrations.AddConstraint(
            model_name="delegation",
            constraint=models.CheckConstraint(
                condition=models.Q(("ends_at__gt", models.F("starts_at"))),
                name="delegation_ends_after_start",
            ),
        ),
        migrations.AddConstraint(
            model_name="delegation",
            constraint=models.CheckConstraint(
                condition=models.Q(("principal", models.F("delegate")), _negated=True),
                name="delegation_not_to_oneself",
            ),
        ),
        migrations.AddField(
            model_name="decision",
            name="settles",
            field=models.BooleanField(
                default=True,
                help_text="Whether it settled the suspension: a rejection, the approval that "
                "completed the quorum, an expiry. Only a settling decision queues a resume.",
            ),
        ),
        migrations.RunPython(fill_seats, migrations.RunPython.noop),
        migrations.RunPython(APPEND_ONLY.create_triggers, APPEND_ONLY.drop_triggers),
    ]
