"""``manage.py db_worker``: django-tasks-db's worker plus the console's watchdog.

The database task backend runs each task at most once and leaves the task of a
killed worker "running" for ever. The watchdog, a thread beside the worker loop,
queues again every resume or replay whose worker stopped answering (and every one
whose task never ran), and emails approvers about new suspensions. Every worker
runs one; they agree through conditional updates.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from django_tasks_db.management.commands.db_worker import Command as DatabaseWorkerCommand

from runs import services

logger = logging.getLogger("runs.watchdog")


class Watchdog(threading.Thread):
    """Every ``interval`` seconds: recover lost resumptions, announce suspensions."""

    def __init__(self, interval: float) -> None:
        super().__init__(name="runs-watchdog", daemon=True)
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                self.sweep()
        finally:
            connection.close()

    def sweep(self) -> None:
        try:
            services.run_actions_recover()
            services.suspensions_announce()
        except Exception:  # a bad sweep must not stop the next one
            logger.exception("Watchdog sweep failed; trying again in %.0f s", self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=self.interval + 5)


class Command(DatabaseWorkerCommand):
    help = (
        "Run the background worker: executes queued resumes, re-queues the resumes "
        "of workers that died, and emails approvers about runs waiting for them."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # Under --reload the parent process only restarts its child: the child,
        # which runs tasks, runs the watchdog.
        runs_tasks = not options["reload"] or os.environ.get(DJANGO_AUTORELOAD_ENV) == "true"
        watchdog = Watchdog(settings.RESUME_WATCHDOG_INTERVAL) if runs_tasks else None
        if watchdog is not None:
            watchdog.start()
        try:
            super().handle(*args, **options)
        finally:
            if watchdog is not None:
                watchdog.stop()
