"""What the console relies on, checked by ``manage.py check`` (``runs.E001``…).

Each is an assumption the code makes without testing it at every call: a
decision's resume is enqueued in the decision's transaction (the database task
backend), migrations and triggers exist for SQLite and PostgreSQL only, the
worker resumes runs with the skills of a real NeuroCore project, and another
worker takes a resume over only after a silence longer than the heartbeat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.db import connections

DATABASE_TASK_BACKEND = "django_tasks_db.DatabaseBackend"


@register(Tags.compatibility)
def check_task_backend(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """runs.E001: background work must be enqueued in the database's transaction."""
    backend = settings.TASKS.get("default", {}).get("BACKEND")
    if backend == DATABASE_TASK_BACKEND:
        return []
    return [
        Error(
            f"The default task backend is {backend!r}, not the database backend.",
            hint=f"Set TASKS['default']['BACKEND'] to {DATABASE_TASK_BACKEND!r}: a decision "
            "and the resume it queues must commit together.",
            id="runs.E001",
        )
    ]


@register(Tags.database)
def check_database_vendor(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """runs.E002: the console's triggers and indexes exist for SQLite and PostgreSQL."""
    vendor = connections["default"].vendor
    if vendor in ("sqlite", "postgresql"):
        return []
    return [
        Error(
            f"The database is {vendor}; the console runs on SQLite or PostgreSQL.",
            hint="Set DATABASE_URL to sqlite:///… or postgres://…",
            id="runs.E002",
        )
    ]


@register()
def check_neurocore_project(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """runs.E003: NEUROCORE_PROJECT_ROOT holds a NeuroCore project."""
    root = Path(settings.NEUROCORE_PROJECT_ROOT)
    if (root / "neurocore.yaml").is_file():
        return []
    return [
        Error(
            f"NEUROCORE_PROJECT_ROOT ({root}) holds no neurocore.yaml.",
            hint="Point NEUROCORE_PROJECT_ROOT at the NeuroCore project whose skills the "
            "worker resumes runs with (neurocore.yaml, skills/, blueprints/).",
            id="runs.E003",
        )
    ]


@register()
def check_resume_timing(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """runs.E004: a live worker's heartbeat comes well within the stale timeout."""
    heartbeat = float(settings.RESUME_HEARTBEAT_INTERVAL)
    stale = float(settings.RESUME_STALE_AFTER)
    if heartbeat > 0 and stale >= 2 * heartbeat:
        return []
    return [
        Error(
            f"RESUME_STALE_AFTER ({stale:g} s) must be at least twice "
            f"RESUME_HEARTBEAT_INTERVAL ({heartbeat:g} s), which must be positive.",
            hint="Otherwise a live worker's resume looks abandoned between two heartbeats.",
            id="runs.E004",
        )
    ]
