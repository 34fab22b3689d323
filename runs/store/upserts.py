"""Upserts as SQLiteRunStore writes them, compiled once by Django's insert compiler.

Django's internals used here (``InsertQuery``, the compiler's SQL) are gathered in
``PreparedUpsert``; ``tests/test_store.py`` checks it binds what Django's compiler
binds, so a Django upgrade that changes them fails loudly.
"""

from __future__ import annotations

from typing import Any

from django.db import (
    connections,
    models,
)
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from runs.models import Checkpoint, Run, Step

# The fields SQLiteRunStore's ``ON CONFLICT(run_id) DO UPDATE`` changes; the
# identity of a run (blueprint, inputs, creation time) is written once.
RUN_UPDATE_FIELDS = [
    "status",
    "final_context",
    "error",
    "suspended_at_node",
    "suspension_reason",
    "checkpoint_id",
    "updated_at",
    "duration_ms",
    "awaits_decision",
]
STEP_UPDATE_FIELDS = [
    "component",
    "skill_type",
    "status",
    "started_at",
    "duration_ms",
    "error",
    "output_keys",
    "context_snapshot",
]
CHECKPOINT_UPDATE_FIELDS = ["flow_config", "context", "created_at"]


class PreparedUpsert:
    """``INSERT ... ON CONFLICT DO UPDATE`` of a model, compiled once per row count.

    ``bulk_create(update_conflicts=True)`` writes the same statement but, per
    call, builds a model instance, compiles the SQL (three quarters of the
    call's Python time), wraps it in BEGIN/COMMIT and, for models with an auto
    id, reads the id back. A single statement is atomic on its own: in
    autocommit it is committed when it returns; inside a caller's transaction
    it joins it. The SQL comes from Django's insert compiler. JSON and
    datetime values go through their field's ``get_db_prep_save`` as the
    compiler does; the rest are the plain ``str``/``int``/``float``/``None``
    the store takes from validated records, which every driver binds as is.
    """

    PREPARED_FIELD_TYPES = (models.JSONField, models.DateTimeField)
    ROWS_PER_STATEMENT = 500

    def __init__(
        self, model: type[Model], *, unique_fields: list[str], update_fields: list[str]
    ) -> None:
        opts = model._meta
        self.model = model
        self.fields: list[Field] = [
            f for f in opts.concrete_fields if not (f.primary_key and f.db_returning)
        ]
        self.unique_fields = [opts.get_field(name) for name in unique_fields]
        self.update_fields = [opts.get_field(name) for name in update_fields]
        self._preparers = [
            (f.attname, f.get_db_prep_save if isinstance(f, self.PREPARED_FIELD_TYPES) else None)
            for f in self.fields
        ]
        self._sql: dict[tuple[str, int], tuple[str, bool]] = {}

    def compile(self, rows: list[dict[str, Any]], using: str) -> tuple[str, list[Any]]:
        """Django's SQL and parameters for upserting ``rows`` in one statement."""
        query = InsertQuery(
            self.model,
            on_conflict=OnConflict.UPDATE,
            update_fields=self.update_fields,
            unique_fields=self.unique_fields,
        )
        query.insert_values(self.fields, [self.model(**values) for values in rows])
        ((sql, params),) = query.get_compiler(using=using).as_sql()
        return sql, list(params)

    def params(self, values: dict[str, Any], connection: BaseDatabaseWrapper) -> list[Any]:
        """One row's parameters, in the compiled statement's order."""
        return [
            prepare(values[attname], connection) if prepare else values[attname]
            for attname, prepare in self._preparers
        ]

    def execute(self, values: dict[str, Any], using: str) -> None:
        """Upsert one row (keyed by attribute name) in one statement."""
        self._execute([values], using)

    def execute_many(self, rows: list[dict[str, Any]], using: str) -> None:
        """Upsert many rows, ``ROWS_PER_STATEMENT`` to a statement (one round trip each).

        A key must not repeat within ``rows``: PostgreSQL refuses to update one
        row twice in a statement.
        """
        for start in range(0, len(rows), self.ROWS_PER_STATEMENT):
            self._execute(rows[start : start + self.ROWS_PER_STATEMENT], using)

    def statement_params(
        self, rows: list[dict[str, Any]], connection: BaseDatabaseWrapper, *, by_column: bool
    ) -> list[Any]:
        """All rows' parameters as the statement takes them: row after row, or (for
        PostgreSQL's ``INSERT ... SELECT * FROM UNNEST(col1[], col2[], …)``, which
        Django compiles for several rows) one array per column."""
        prepared = [self.params(row, connection) for row in rows]
        if by_column:
            return [list(column) for column in zip(*prepared, strict=True)]
        return [param for row in prepared for param in row]

    def _execute(self, rows: list[dict[str, Any]], using: str) -> None:
        connection = connections[using]
        key = (using, len(rows))
        compiled = self._sql.get(key)
        if compiled is None:
            sql, params = self.compile(rows, using)
            by_column = len(rows) > 1 and len(params) == len(self.fields)
            self._sql[key] = (sql, by_column)
        else:
            sql, by_column = compiled
            params = self.statement_params(rows, connection, by_column=by_column)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


UPSERT_RUN = PreparedUpsert(Run, unique_fields=["run_id"], update_fields=RUN_UPDATE_FIELDS)
UPSERT_STEP = PreparedUpsert(
    Step, unique_fields=["run", "step_index"], update_fields=STEP_UPDATE_FIELDS
)
UPSERT_CHECKPOINT = PreparedUpsert(
    Checkpoint, unique_fields=["checkpoint_id"], update_fields=CHECKPOINT_UPDATE_FIELDS
)
