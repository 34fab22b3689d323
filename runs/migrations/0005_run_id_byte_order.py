"""Run ids sort byte by byte on PostgreSQL, as they do on SQLite.

A run-id prefix is then one range of the primary key index (``run_id >= 'ab'
AND run_id < 'ac'``) whatever the database's locale: the CLI and the console
resolve abbreviated ids with an index range scan, not a table scan.
"""

from django.db import migrations


def byte_order(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('ALTER TABLE runs_run ALTER COLUMN run_id TYPE text COLLATE "C"')


def locale_order(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('ALTER TABLE runs_run ALTER COLUMN run_id TYPE text COLLATE "default"')


class Migration(migrations.Migration):
    dependencies = [("runs", "0004_roles")]

    operations = [migrations.RunPython(byte_order, locale_order)]
