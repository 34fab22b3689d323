"""Deadlines of suspensions at approval gates: due, expiry, reminders (runs.services.deadlines).

Its run id sorts byte by byte on PostgreSQL, as every run id column does (0005):
the inbox joins it to the runs by run id.
"""

import django.db.models.deletion
from django.db import migrations, models


def byte_order(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            'ALTER TABLE runs_gatedeadline ALTER COLUMN run_id TYPE text COLLATE "C"'
        )


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0016_input_search'),
    ]

    operations = [
        migrations.CreateModel(
            name='GateDeadline',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('gate', models.TextField()),
                ('suspended_at', models.DateTimeField()),
                ('blueprint_name', models.TextField(help_text="The run's blueprint (for counts per blueprint).")),
                ('due_at', models.DateTimeField(blank=True, null=True)),
                ('expires_at', models.DateTimeField(blank=True, null=True)),
                ('on_expiry', models.CharField(blank=True, help_text='reject, approve or none.', max_length=8)),
                ('remind_at', models.DateTimeField(blank=True, help_text='When the next reminder is due; empty when none is.', null=True)),
                ('reminded_at', models.DateTimeField(blank=True, null=True)),
                ('reminders', models.PositiveIntegerField(default=0, help_text='Reminders sent.')),
                ('escalated_at', models.DateTimeField(blank=True, null=True)),
                ('expired_at', models.DateTimeField(blank=True, null=True)),
                ('settled_at', models.DateTimeField(blank=True, help_text='When the worker saw the suspension end.', null=True)),
                ('last_error', models.TextField(blank=True)),
                ('run', models.ForeignKey(db_column='run_id', db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='runs.run')),
            ],
            options={
                'indexes': [models.Index(condition=models.Q(('settled_at__isnull', True)), fields=['due_at'], name='deadline_due_idx'), models.Index(condition=models.Q(('remind_at__isnull', False), ('settled_at__isnull', True)), fields=['remind_at'], name='deadline_remind_idx'), models.Index(condition=models.Q(('expired_at__isnull', True), ('settled_at__isnull', True)), fields=['expires_at'], name='deadline_expires_idx')],
                'constraints': [models.UniqueConstraint(fields=('run', 'gate', 'suspended_at'), name='deadline_one_per_suspension')],
            },
        ),
        migrations.RunPython(byte_order, migrations.RunPython.noop),
    ]
