"""Run ids sort byte by byte on PostgreSQL, as they do on SQLite.

A run-id prefix is then one range of the primary key index (``run_id >= 'ab'
AND run_id < 'ac'``) whatever the database's locale: the CLI and the console
resolve abbreviated ids with an index range scan, not a table scan. Every
column holding a run id gets the same collation, or comparing two of them (a
join, a correlated count of steps) could not use their indexes.
"""

from django.db import migrations


TABLES = ["runs_run", "runs_step", "runs_decision", "runs_runaction", "runs_suspensionnotice"]


def _collate(schema_editor, collation: str) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for table in TABLES:
            schema_editor.execute(
                f'ALTER TABLE {table} ALTER COLUMN run_id TYPE text COLLATE "{collation}"'
            )


def byte_order(apps, schema_editor) -> None:
    _collate(schema_editor, "C")


def locale_order(apps, schema_editor) -> None:
    _collate(schema_editor, "default")


class Migration(migrations.Migration):
    dependencies = [("runs", "0004_roles")]

    operations = [migrations.RunPython(byte_order, locale_order)]
