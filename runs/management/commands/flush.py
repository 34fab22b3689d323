"""``manage.py flush`` that empties the append-only decision audit on SQLite too.

On PostgreSQL, flush truncates tables, which row triggers do not see. On SQLite
it deletes rows, which the append-only trigger refuses. This lifts the trigger
for the flush only, so "remove all data" means the same on both databases.
"""

from __future__ import annotations

import importlib
from typing import Any

from django.core.management.commands.flush import Command as FlushCommand
from django.db import connections

# The trigger statements as the migration that created them wrote them.
append_only = importlib.import_module("runs.migrations.0003_decision_append_only")


class Command(FlushCommand):
    def handle(self, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "sqlite":
            super().handle(**options)
            return
        with connection.cursor() as cursor:
            for statement in append_only.SQLITE_REVERSE:
                cursor.execute(statement)
        try:
            super().handle(**options)
        finally:
            with connection.cursor() as cursor:
                for statement in append_only.SQLITE:
                    cursor.execute(statement)
