"""``manage.py db_worker``: django-tasks-db's worker, made to survive its surroundings.

The database task backend runs each task at most once and leaves the task of a
killed worker "running" for ever. Beside the task loop every worker runs four
threads, each with its own database connection, three every
``RESUME_WATCHDOG_INTERVAL`` seconds:

- *recovery* queues again every resume or replay whose worker stopped answering
  (and every one whose task never ran); it does nothing else, so nothing else
  can hold it up;
- *notifications* emails approvers about new suspensions (with the SMTP
  backend's timeout and a back-off per suspension: ``runs.services.notifications``);
- *bulk* carries out actions on "all N runs matching a filter", a chunk at a
  time (``runs.services.bulk``);

and one every ``DEADLINES_INTERVAL`` seconds:

- *deadlines* records when each suspension at an approval gate is due and
  expires, reminds and escalates overdue ones, and applies a gate's expiry
  (``runs.services.deadlines``).

Workers agree through conditional updates, so any number may run.

When the database goes away (a restart, a failover, a dropped connection) the
worker does not exit: the task loop waits for it with back-off (0.5 s doubling to
30 s) and starts again; the threads try again at their next turn. The outage is
logged once, when the first part of the worker notices it, and once more when
the database answers again. SIGTERM and SIGINT stop the worker as before: at
once when it is idle or waiting for the database, after the current task
otherwise (a second signal stops that too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
)
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV, run_with_reloader
from django_tasks_db.management.commands.db_worker import Command as DatabaseWorkerCommand
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from runs.services.bulk import bulk_requests_process
from runs.services.deadlines import deadlines_apply
from runs.services.notifications import suspensions_announce
from runs.services.recovery import run_actions_recover

logger = logging.getLogger("runs.watchdog")

# The database stopped answering (or is not there): wait for it, do not exit.
DATABASE_LOST = (OperationalError, InterfaceError)
RECONNECT_FIRST = 0.5
RECONNECT_LONGEST = 30.0


class DatabaseOutage:
    """Whether this process can reach its database; logged once when that changes.

    Shared by the task loop and the threads: whichever notices first says the
    database is gone, whichever succeeds first says it is back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None

    def failed(self, where: str, error: BaseException) -> None:
        with self._lock:
            first = self.since is None
            if first:
                self.since = time.monotonic()
        if first:
            logger.warning(
                "Database unavailable (%s noticed: %s: %s); retrying with back-off, "
                "a line follows when it answers again",
                where,
                type(error).__name__,
                str(error).strip(),
            )
        else:
            logger.debug("Database still unavailable (%s): %s", where, error)

    def answered(self) -> None:
        with self._lock:
            since, self.since = self.since, None
        if since is not None:
            logger.warning(
                "Database answers again after %.1f s; the worker goes on", time.monotonic() - since
            )


def close_connections() -> None:
    """Close this thread's connections, broken ones included; the next query reconnects."""
    for conn in connections.all(initialized_only=True):
        with contextlib.suppress(DatabaseError):
            conn.close()


class Sweeper(threading.Thread):
    """Every ``interval`` seconds calls ``sweep``; what it raises is logged, not fatal.

    A database outage is reported to ``outage`` (logged once for the process); any
    other error is logged with its traceback when it differs from the last one,
    so a persistent fault does not fill the log.
    """

    def __init__(
        self, name: str, sweep: Callable[[], object], interval: float, outage: DatabaseOutage
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.sweep = sweep
        self.interval = interval
        self.outage = outage
        self.stopped = threading.Event()
        self.last_error = ""

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                self.sweep_once()
        finally:
            close_connections()

    def sweep_once(self) -> None:
        try:
            # As the task loop does: a connection the database dropped is replaced.
            close_old_connections()
            self.sweep()
        except DATABASE_LOST as error:
            self.outage.failed(self.name, error)
            close_connections()
            return
        except Exception as error:
            described = f"{type(error).__name__}: {error}"
            if described != self.last_error:
                logger.exception("%s failed; trying again every %.0f s", self.name, self.interval)
            self.last_error = described
            return
        self.outage.answered()
        if self.last_error:
            logger.info("%s works again", self.name)
            self.last_error = ""

    def stop(self, timeout: float) -> None:
        self.stopped.set()
        self.join(timeout=timeout)


class ResilientWorker(Worker):
    """django-tasks-db's worker, which exits on a database error: this one waits it out."""

    def __init__(self, *, outage: DatabaseOutage, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outage = outage

    def run(self) -> None:
        while True:
            try:
                super().run()
                return
            except DATABASE_LOST as error:
                if not self.running:
                    return  # asked to stop while a task ran: do so
                self.outage.failed("task loop", error)
                if not self.wait_for_database():
                    return

    def wait_for_database(self) -> bool:
        """Sleep with back-off until the database answers; False if asked to stop first.

        The worker's signal handlers stay installed: no task runs, so SIGTERM or
        SIGINT exits at once, even in the middle of a sleep.
        """
        delay = RECONNECT_FIRST
        while self.running:
            close_connections()
            time.sleep(delay)
            try:
                DBTaskResult.objects.exists()
            except DATABASE_LOST as error:
                self.outage.failed("task loop", error)
                delay = min(delay * 2, RECONNECT_LONGEST)
                continue
            self.outage.answered()
            return True
        return False


class Command(DatabaseWorkerCommand):
    help = (
        "Run the background worker: executes queued resumes, re-queues the resumes "
        "of workers that died, emails approvers about runs waiting for them, and "
        "applies approval deadlines (reminders, escalation, expiry)."
    )

    def handle(
        self,
        *,
        verbosity: int,
        queue_name: str,
        interval: float,
        batch: bool,
        backend_name: str,
        startup_delay: bool,
        reload: bool,
        max_tasks: int | None,
        worker_id: str,
        exclude_queues: str,
        **options: Any,
    ) -> None:
        # django-tasks-db's handle(), with the resilient worker and the four threads.
        self.configure_logging(verbosity)
        if reload and batch:
            logger.warning("--reload and --batch cannot be specified together; not reloading.")
            reload = False
        queue_names = queue_name.split(",")
        excluded_queue_names = exclude_queues.split(",") if exclude_queues else []
        if excluded_queue_names and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name=*")

        outage = DatabaseOutage()
        worker = ResilientWorker(
            outage=outage,
            queue_names=queue_names,
            interval=interval,
            batch=batch,
            backend_name=backend_name,
            startup_delay=startup_delay,
            max_tasks=max_tasks,
            worker_id=worker_id,
            excluded_queue_names=excluded_queue_names,
        )
        # Under --reload the parent process only restarts its child: the child,
        # which runs tasks, runs the threads and handles the signals.
        runs_tasks = not reload or os.environ.get(DJANGO_AUTORELOAD_ENV) == "true"
        period = settings.RESUME_WATCHDOG_INTERVAL
        sweepers = (
            [
                Sweeper("recovery", run_actions_recover, period, outage),
                Sweeper("notifications", suspensions_announce, period, outage),
                Sweeper("bulk", bulk_requests_process, period, outage),
                Sweeper("deadlines", deadlines_apply, settings.DEADLINES_INTERVAL, outage),
            ]
            if runs_tasks
            else []
        )
        for sweeper in sweepers:
            sweeper.start()
        try:
            if reload:
                if runs_tasks:
                    worker.configure_signals()
                run_with_reloader(worker.run)
            else:
                worker.configure_signals()
                worker.run()
        finally:
            # Recovery's updates are atomic and a notice is claimed before its email
            # is sent, so neither thread needs to finish its sweep: the process exits
            # promptly even while a mail server keeps the notifications thread waiting.
            deadline = time.monotonic() + 2
            for sweeper in sweepers:
                sweeper.stop(timeout=max(deadline - time.monotonic(), 0))
