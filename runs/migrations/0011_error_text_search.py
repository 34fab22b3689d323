"""An index of run errors for search ("which runs failed with 'bad gateway'?").

Search is a union of id, blueprint and error matches; without an index the
error part read every run. PostgreSQL: a trigram GIN index on UPPER(error),
which Django's ``error__icontains`` (``UPPER(error::text) LIKE UPPER(%s)``)
uses. SQLite: an FTS5 table with the trigram tokenizer, kept by triggers on
``runs_run`` (case-insensitive LIKE is answered from it), queried by
``runs.selectors.error_contains``. Neither is in the model state: they are
vendor-specific. A later SQLite migration that rebuilds ``runs_run`` drops
these triggers with the table and must create them again (as 0009 does for
the tally triggers).
"""

from django.db import migrations

SQLITE = [
    """
    CREATE VIRTUAL TABLE runs_run_error_fts USING fts5(
        run_id UNINDEXED, error, tokenize = 'trigram'
    )
    """,
    """
    CREATE TRIGGER runs_run_error_insert AFTER INSERT ON runs_run
    WHEN NEW.error IS NOT NULL BEGIN
        INSERT INTO runs_run_error_fts (run_id, error) VALUES (NEW.run_id, NEW.error);
    END
    """,
    """
    CREATE TRIGGER runs_run_error_update AFTER UPDATE OF error, run_id ON runs_run
    WHEN OLD.error IS NOT NEW.error OR OLD.run_id IS NOT NEW.run_id BEGIN
        DELETE FROM runs_run_error_fts WHERE run_id = OLD.run_id;
        INSERT INTO runs_run_error_fts (run_id, error)
        SELECT NEW.run_id, NEW.error WHERE NEW.error IS NOT NULL;
    END
    """,
    """
    CREATE TRIGGER runs_run_error_delete AFTER DELETE ON runs_run
    WHEN OLD.error IS NOT NULL BEGIN
        DELETE FROM runs_run_error_fts WHERE run_id = OLD.run_id;
    END
    """,
    """
    INSERT INTO runs_run_error_fts (run_id, error)
    SELECT run_id, error FROM runs_run WHERE error IS NOT NULL
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS runs_run_error_insert",
    "DROP TRIGGER IF EXISTS runs_run_error_update",
    "DROP TRIGGER IF EXISTS runs_run_error_delete",
    "DROP TABLE IF EXISTS runs_run_error_fts",
]
POSTGRESQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX run_error_trgm_idx ON runs_run USING gin (UPPER(error) gin_trgm_ops)",
]
POSTGRESQL_REVERSE = ["DROP INDEX IF EXISTS run_error_trgm_idx"]
STATEMENTS = {"sqlite": (SQLITE, SQLITE_REVERSE), "postgresql": (POSTGRESQL, POSTGRESQL_REVERSE)}


def _run(schema_editor, which: int) -> None:
    for statement in STATEMENTS[schema_editor.connection.vendor][which]:
        schema_editor.execute(statement)


def create_error_index(apps, schema_editor) -> None:
    _run(schema_editor, 0)


def drop_error_index(apps, schema_editor) -> None:
    _run(schema_editor, 1)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0010_bulk_request"),
    ]

    operations = [migrations.RunPython(create_error_index, drop_error_index)]
