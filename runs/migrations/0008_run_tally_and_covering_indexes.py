"""Run tallies kept by triggers, and listing indexes that end with the run id.

``runs_runtally`` holds, per UTC day of creation and status, how many runs
there are. Triggers on ``runs_run`` keep it whoever writes the runs (the run
store, an import, SQL by hand); it is filled from the existing runs here, in
the same transaction as the triggers. On PostgreSQL a status change adjusts
its two tally rows in key order, so two writers never wait on each other in
a cycle.
"""

from django.db import migrations, models

SQLITE = [
    """
    CREATE TRIGGER runs_run_tally_insert AFTER INSERT ON runs_run BEGIN
        INSERT INTO runs_runtally (day, status, runs) VALUES (date(NEW.created_at), NEW.status, 1)
        ON CONFLICT (day, status) DO UPDATE SET runs = runs + 1;
    END
    """,
    """
    CREATE TRIGGER runs_run_tally_update AFTER UPDATE OF status, created_at ON runs_run
    WHEN OLD.status IS NOT NEW.status OR OLD.created_at IS NOT NEW.created_at BEGIN
        UPDATE runs_runtally SET runs = runs - 1
        WHERE day = date(OLD.created_at) AND status = OLD.status;
        INSERT INTO runs_runtally (day, status, runs) VALUES (date(NEW.created_at), NEW.status, 1)
        ON CONFLICT (day, status) DO UPDATE SET runs = runs + 1;
    END
    """,
    """
    CREATE TRIGGER runs_run_tally_delete AFTER DELETE ON runs_run BEGIN
        UPDATE runs_runtally SET runs = runs - 1
        WHERE day = date(OLD.created_at) AND status = OLD.status;
    END
    """,
    """
    INSERT INTO runs_runtally (day, status, runs)
    SELECT date(created_at), status, COUNT(*) FROM runs_run GROUP BY 1, 2
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS runs_run_tally_insert",
    "DROP TRIGGER IF EXISTS runs_run_tally_update",
    "DROP TRIGGER IF EXISTS runs_run_tally_delete",
]
POSTGRESQL = [
    """
    CREATE FUNCTION runs_run_tally() RETURNS trigger AS $$
    DECLARE
        old_day date;
        new_day date;
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            old_day := (OLD.created_at AT TIME ZONE 'UTC')::date;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            new_day := (NEW.created_at AT TIME ZONE 'UTC')::date;
        END IF;
        -- A change adjusts two rows, in key order: writers moving runs in
        -- opposite directions never wait for each other in a cycle.
        IF TG_OP = 'UPDATE' AND (new_day, NEW.status) < (old_day, OLD.status) THEN
            INSERT INTO runs_runtally (day, status, runs) VALUES (new_day, NEW.status, 1)
            ON CONFLICT (day, status) DO UPDATE SET runs = runs_runtally.runs + 1;
            UPDATE runs_runtally SET runs = runs - 1 WHERE day = old_day AND status = OLD.status;
            RETURN NULL;
        END IF;
        IF TG_OP <> 'INSERT' THEN
            UPDATE runs_runtally SET runs = runs - 1 WHERE day = old_day AND status = OLD.status;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO runs_runtally (day, status, runs) VALUES (new_day, NEW.status, 1)
            ON CONFLICT (day, status) DO UPDATE SET runs = runs_runtally.runs + 1;
        END IF;
        RETURN NULL;
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER runs_run_tally_insert AFTER INSERT ON runs_run
    FOR EACH ROW EXECUTE FUNCTION runs_run_tally()
    """,
    """
    CREATE TRIGGER runs_run_tally_update AFTER UPDATE OF status, created_at ON runs_run
    FOR EACH ROW WHEN (
        OLD.status IS DISTINCT FROM NEW.status OR OLD.created_at IS DISTINCT FROM NEW.created_at
    ) EXECUTE FUNCTION runs_run_tally()
    """,
    """
    CREATE TRIGGER runs_run_tally_delete AFTER DELETE ON runs_run
    FOR EACH ROW EXECUTE FUNCTION runs_run_tally()
    """,
    """
    INSERT INTO runs_runtally (day, status, runs)
    SELECT (created_at AT TIME ZONE 'UTC')::date, status, COUNT(*) FROM runs_run GROUP BY 1, 2
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS runs_run_tally_insert ON runs_run",
    "DROP TRIGGER IF EXISTS runs_run_tally_update ON runs_run",
    "DROP TRIGGER IF EXISTS runs_run_tally_delete ON runs_run",
    "DROP FUNCTION IF EXISTS runs_run_tally()",
]
STATEMENTS = {"sqlite": (SQLITE, SQLITE_REVERSE), "postgresql": (POSTGRESQL, POSTGRESQL_REVERSE)}


def _run(schema_editor, which: int) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise NotImplementedError(f"No run tally triggers for {vendor}")
    for statement in STATEMENTS[vendor][which]:
        schema_editor.execute(statement)


def create_tally_triggers(apps, schema_editor) -> None:
    _run(schema_editor, 0)


def drop_tally_triggers(apps, schema_editor) -> None:
    _run(schema_editor, 1)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0007_replay_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="RunTally",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "day",
                        "status",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("day", models.DateField()),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("running", "Running"),
                            ("completed", "Completed"),
                            ("failed", "Failed"),
                            ("suspended", "Awaiting approval"),
                            ("cancelled", "Cancelled"),
                        ],
                        max_length=16,
                    ),
                ),
                ("runs", models.BigIntegerField()),
            ],
        ),
        migrations.RunPython(create_tally_triggers, drop_tally_triggers),
        migrations.RemoveIndex(
            model_name="run",
            name="run_created_idx",
        ),
        migrations.RemoveIndex(
            model_name="run",
            name="run_status_created_idx",
        ),
        migrations.RemoveIndex(
            model_name="run",
            name="run_bp_created_idx",
        ),
        migrations.RemoveIndex(
            model_name="run",
            name="run_bp_status_created_idx",
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["-created_at", "-run_id"], name="run_created_idx"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                fields=["status", "-created_at", "-run_id"], name="run_status_created_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                fields=["blueprint_name", "-created_at", "-run_id"], name="run_bp_created_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                fields=["blueprint_name", "status", "-created_at", "-run_id"],
                name="run_bp_status_created_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("status", "suspended")),
                fields=["suspended_at_node", "updated_at", "run_id", "blueprint_name", "status"],
                name="run_waiting_idx",
            ),
        ),
    ]
