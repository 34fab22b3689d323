"""The database itself refuses to change or delete a decision (the approval audit)."""

from django.db import migrations

SQLITE = [
    """
    CREATE TRIGGER runs_decision_no_update BEFORE UPDATE ON runs_decision
    BEGIN SELECT RAISE(ABORT, 'runs_decision is append-only: a decision cannot be changed'); END
    """,
    """
    CREATE TRIGGER runs_decision_no_delete BEFORE DELETE ON runs_decision
    BEGIN SELECT RAISE(ABORT, 'runs_decision is append-only: a decision cannot be deleted'); END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS runs_decision_no_update",
    "DROP TRIGGER IF EXISTS runs_decision_no_delete",
]
POSTGRESQL = [
    """
    CREATE FUNCTION runs_decision_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION USING
            MESSAGE = 'runs_decision is append-only: a decision cannot be ' || CASE TG_OP
                WHEN 'UPDATE' THEN 'changed' ELSE 'deleted' END,
            ERRCODE = 'integrity_constraint_violation';
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER runs_decision_append_only BEFORE UPDATE OR DELETE ON runs_decision
    FOR EACH ROW EXECUTE FUNCTION runs_decision_append_only()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS runs_decision_append_only ON runs_decision",
    "DROP FUNCTION IF EXISTS runs_decision_append_only()",
]
STATEMENTS = {"sqlite": (SQLITE, SQLITE_REVERSE), "postgresql": (POSTGRESQL, POSTGRESQL_REVERSE)}


def _run(schema_editor, which: int) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise NotImplementedError(f"No append-only trigger for {vendor}")
    for statement in STATEMENTS[vendor][which]:
        schema_editor.execute(statement)


def create_triggers(apps, schema_editor) -> None:
    _run(schema_editor, 0)


def drop_triggers(apps, schema_editor) -> None:
    _run(schema_editor, 1)


class Migration(migrations.Migration):
    dependencies = [("runs", "0002_approvals")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
