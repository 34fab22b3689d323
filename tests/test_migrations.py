"""Models and migrations agree."""

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_missing_migrations() -> None:
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_every_run_id_column_sorts_byte_by_byte_on_postgresql() -> None:
    """Migration 0005 sets the C collation outside Django's model state: a later
    AlterField of a run id column would drop it, and prefix lookups would scan."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite compares text byte by byte already")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, collation_name FROM information_schema.columns "
            "WHERE column_name = 'run_id' AND table_name LIKE 'runs\\_%' ORDER BY table_name"
        )
        collations = dict(cursor.fetchall())
    assert collations == dict.fromkeys(
        [
            "runs_decision",
            "runs_gatedeadline",
            "runs_run",
            "runs_runaction",
            "runs_runinputtext",
            "runs_step",
            "runs_suspensionnotice",
        ],
        "C",
    )
