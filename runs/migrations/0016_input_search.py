"""Search in a run's inputs ("which runs were for vendor ACME?").

``runs_runinputtext`` holds, per run, the text of its input values
(``initial_data``): each string or number, cut to its first 1,000 characters,
one a line. Keys are left out, and so are the key-order lists and the wrapper
``runs.agentjson`` adds (a wrapped document is read from its JSON text; one no
database can parse, with NaN or NUL in it, has no searchable inputs).

Triggers on ``runs_run`` write it when a run is inserted and when its inputs
change (the store's upsert never changes them: a status update costs nothing
here), whoever writes the run; the foreign key deletes it with its run. A
separate table rather than an index on ``runs_run``: every update of a run
writes a new row version on PostgreSQL, and an index on it would be written
again each time.

PostgreSQL: a trigram GIN index on ``UPPER(text)``, which Django's
``text__icontains`` uses; the text is made by ``runs_input_text(jsonb)``.
SQLite: an FTS5 trigram table over it (external content, keyed by the table's
integer id, which VACUUM keeps), kept by triggers on ``runs_runinputtext``.
Neither is in the model state: they are vendor-specific. A later SQLite
migration that rebuilds ``runs_run`` drops its triggers with the table and must
create them again.
"""

import django.db.models.deletion
from django.db import migrations, models

WRAPPER_KEY = "__neurocore_console_json__"  # runs.agentjson.WRAPPER_KEY, as of now
ORDER_KEY = "__neurocore_console_key_order__"  # runs.agentjson.ORDER_KEY
VALUE_CHARS = 1000  # runs.models.INPUT_VALUE_CHARS


def _sqlite_text(doc: str) -> str:
    """SQLite: the input text of the JSON document ``doc`` (a column), or NULL."""
    unwrapped = f"""
        CASE WHEN json_type({doc}, '$.{WRAPPER_KEY}') = 'text'
                  AND NOT EXISTS (SELECT 1 FROM json_each({doc}) WHERE key <> '{WRAPPER_KEY}')
             THEN CASE WHEN json_valid(json_extract({doc}, '$.{WRAPPER_KEY}'))
                       THEN json_extract({doc}, '$.{WRAPPER_KEY}') ELSE '[]' END
             ELSE {doc} END"""
    return f"""(
        SELECT group_concat(substr(node.atom, 1, {VALUE_CHARS}), char(10))
        FROM json_tree({unwrapped}) AS node
        WHERE node.type IN ('text', 'integer', 'real')
          -- the key-order list's items, under its key, quoted or not (SQLite versions differ)
          AND substr(node.path, -{len(ORDER_KEY) + 1}) <> '.{ORDER_KEY}'
          AND substr(node.path, -{len(ORDER_KEY) + 3}) <> '."{ORDER_KEY}"'
    )"""


SQLITE = [
    """
    CREATE VIRTUAL TABLE runs_runinputtext_fts USING fts5(
        text, content = 'runs_runinputtext', content_rowid = 'id', tokenize = 'trigram'
    )
    """,
    """
    CREATE TRIGGER runs_runinputtext_fts_insert AFTER INSERT ON runs_runinputtext BEGIN
        INSERT INTO runs_runinputtext_fts (rowid, text) VALUES (NEW.id, NEW.text);
    END
    """,
    """
    CREATE TRIGGER runs_runinputtext_fts_delete AFTER DELETE ON runs_runinputtext BEGIN
        INSERT INTO runs_runinputtext_fts (runs_runinputtext_fts, rowid, text)
        VALUES ('delete', OLD.id, OLD.text);
    END
    """,
    """
    CREATE TRIGGER runs_runinputtext_fts_update AFTER UPDATE ON runs_runinputtext BEGIN
        INSERT INTO runs_runinputtext_fts (runs_runinputtext_fts, rowid, text)
        VALUES ('delete', OLD.id, OLD.text);
        INSERT INTO runs_runinputtext_fts (rowid, text) VALUES (NEW.id, NEW.text);
    END
    """,
    f"""
    CREATE TRIGGER runs_run_input_insert AFTER INSERT ON runs_run BEGIN
        INSERT INTO runs_runinputtext (run_id, text)
        SELECT NEW.run_id, inputs.text FROM (SELECT {_sqlite_text("NEW.initial_data")} AS text)
        AS inputs WHERE inputs.text <> '';
    END
    """,
    f"""
    CREATE TRIGGER runs_run_input_update AFTER UPDATE OF initial_data ON runs_run
    WHEN OLD.initial_data IS NOT NEW.initial_data BEGIN
        DELETE FROM runs_runinputtext WHERE run_id = OLD.run_id;
        INSERT INTO runs_runinputtext (run_id, text)
        SELECT NEW.run_id, inputs.text FROM (SELECT {_sqlite_text("NEW.initial_data")} AS text)
        AS inputs WHERE inputs.text <> '';
    END
    """,
    f"""
    INSERT INTO runs_runinputtext (run_id, text)
    SELECT run_id, text FROM (SELECT run_id, {_sqlite_text("initial_data")} AS text FROM runs_run)
    WHERE text <> ''
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS runs_run_input_insert",
    "DROP TRIGGER IF EXISTS runs_run_input_update",
    "DROP TRIGGER IF EXISTS runs_runinputtext_fts_insert",
    "DROP TRIGGER IF EXISTS runs_runinputtext_fts_delete",
    "DROP TRIGGER IF EXISTS runs_runinputtext_fts_update",
    "DROP TABLE IF EXISTS runs_runinputtext_fts",
]
POSTGRESQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # Run ids compare byte by byte on every column that holds one (migration 0005).
    'ALTER TABLE runs_runinputtext ALTER COLUMN run_id TYPE text COLLATE "C"',
    f"""
    CREATE FUNCTION runs_input_text(doc jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
    BEGIN
        IF jsonb_typeof(doc) = 'object' AND jsonb_typeof(doc -> '{WRAPPER_KEY}') = 'string'
        THEN
            IF NOT EXISTS (SELECT 1 FROM jsonb_object_keys(doc) AS k WHERE k <> '{WRAPPER_KEY}')
            THEN
                BEGIN
                    doc := (doc ->> '{WRAPPER_KEY}')::jsonb;
                EXCEPTION WHEN others THEN  -- NaN, NUL or a lone surrogate: jsonb has none
                    RETURN NULL;
                END;
            END IF;
        END IF;
        RETURN (
            WITH RECURSIVE node(value) AS (
                SELECT doc
                UNION ALL
                SELECT child.value FROM node, LATERAL (
                    SELECT member.value FROM jsonb_each(
                        CASE WHEN jsonb_typeof(node.value) = 'object' THEN node.value END
                    ) AS member WHERE member.key <> '{ORDER_KEY}'
                    UNION ALL
                    SELECT item FROM jsonb_array_elements(
                        CASE WHEN jsonb_typeof(node.value) = 'array' THEN node.value END
                    ) AS item
                ) AS child
            )
            SELECT string_agg(left(value #>> '{{}}', {VALUE_CHARS}), E'\\n')
            FROM node WHERE jsonb_typeof(value) IN ('string', 'number')
        );
    END
    $$
    """,
    """
    CREATE FUNCTION runs_run_input_sync() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        inputs text := runs_input_text(NEW.initial_data);
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            DELETE FROM runs_runinputtext WHERE run_id = OLD.run_id;
        END IF;
        IF inputs <> '' THEN
            INSERT INTO runs_runinputtext (run_id, text) VALUES (NEW.run_id, inputs);
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER runs_run_input_insert AFTER INSERT ON runs_run
    FOR EACH ROW EXECUTE FUNCTION runs_run_input_sync()
    """,
    """
    CREATE TRIGGER runs_run_input_update AFTER UPDATE OF initial_data ON runs_run
    FOR EACH ROW WHEN (OLD.initial_data IS DISTINCT FROM NEW.initial_data)
    EXECUTE FUNCTION runs_run_input_sync()
    """,
    """
    INSERT INTO runs_runinputtext (run_id, text)
    SELECT run_id, text FROM (SELECT run_id, runs_input_text(initial_data) AS text FROM runs_run)
    AS inputs WHERE text <> ''
    """,
    "CREATE INDEX run_input_trgm_idx ON runs_runinputtext USING gin (UPPER(text) gin_trgm_ops)",
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER IF EXISTS runs_run_input_insert ON runs_run",
    "DROP TRIGGER IF EXISTS runs_run_input_update ON runs_run",
    "DROP FUNCTION IF EXISTS runs_run_input_sync()",
    "DROP FUNCTION IF EXISTS runs_input_text(jsonb)",
    "DROP INDEX IF EXISTS run_input_trgm_idx",
]
STATEMENTS = {"sqlite": (SQLITE, SQLITE_REVERSE), "postgresql": (POSTGRESQL, POSTGRESQL_REVERSE)}


def _run(schema_editor, which: int) -> None:
    for statement in STATEMENTS[schema_editor.connection.vendor][which]:
        schema_editor.execute(statement, params=None)


def create_input_index(apps, schema_editor) -> None:
    _run(schema_editor, 0)


def drop_input_index(apps, schema_editor) -> None:
    _run(schema_editor, 1)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0015_preference"),
    ]

    operations = [
        migrations.CreateModel(
            name="RunInputText",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("text", models.TextField()),
                (
                    "run",
                    models.ForeignKey(
                        db_column="run_id",
                        db_index=False,
                        on_delete=django.db.models.deletion.DB_CASCADE,
                        related_name="+",
                        to="runs.run",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("run",), name="run_input_text_run_unique")
                ],
            },
        ),
        migrations.RunPython(create_input_index, drop_input_index),
    ]
