"""Reads for the dashboard and the health check: figures, not rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from runs.models import Run, RunTally
from runs.permissions import AnyUser, can_view_runs

logger = logging.getLogger(__name__)


def health() -> dict[str, Any]:
    """Database reachability and the state of the worker queue."""
    report: dict[str, Any] = {"ok": True}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report["database"] = "ok"
        oldest = (
            DBTaskResult.objects.filter(status=TaskResultStatus.READY)
            .order_by("enqueued_at")
            .values_list("enqueued_at", flat=True)
            .first()
        )
        report["worker_queue"] = {
            "ready": DBTaskResult.objects.filter(status=TaskResultStatus.READY).count(),
            "running": DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING).count(),
            "oldest_ready_seconds": round((timezone.now() - oldest).total_seconds(), 1)
            if oldest
            else None,
        }
    except DatabaseError as error:
        logger.error("Health check: the database is unreachable: %s", error)
        report = {"ok": False, "database": "unreachable"}  # no host, port or SQL
    return report


@dataclass(frozen=True)
class Dashboard:
    """The console's front page figures."""

    by_status: dict[str, int]
    awaiting: int
    failures_24h: int
    per_day: list[tuple[date, dict[str, int]]]
    durations: list[tuple[str, list[float]]]


DASHBOARD_DAYS = 14


DURATION_SAMPLE = 10_000


def listed_run_count(user: AnyUser, *, status: str | None = None) -> int | None:
    """How many runs ``user`` sees in the runs list (in ``status``), from the tallies;
    None when the tallies cannot say.

    The tallies count every run; everyone who may see runs sees every run (scopes
    narrow deciding and operating, never viewing), so the tally is their count.
    A scope that narrowed viewing would make this wrong: ``tests/test_console.py``
    fails the day one exists.
    """
    if not can_view_runs(user):
        return None
    return run_count(status=status)


def run_count(*, status: str | None = None) -> int:
    """How many runs there are (in ``status``), read from the tallies, not counted."""
    tallies = RunTally.objects.all() if status is None else RunTally.objects.filter(status=status)
    return tallies.aggregate(total=Coalesce(Sum("runs"), 0))["total"]


def dashboard(*, now: datetime | None = None) -> Dashboard:
    """Counts by status and per day (from the tallies), what waits, recent failures,
    and the durations of the latest runs of the last days, per blueprint."""
    now = now or timezone.now()
    since = (now - timedelta(days=DASHBOARD_DAYS - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    by_status = {
        status: total
        for status, total in RunTally.objects.order_by()
        .values_list("status")
        .annotate(total=Sum("runs"))
        .values_list("status", "total")
        if total
    }
    days: dict[date, dict[str, int]] = {
        (since + timedelta(days=offset)).date(): {} for offset in range(DASHBOARD_DAYS)
    }
    for day, status, count in RunTally.objects.filter(
        day__gte=since.date(), runs__gt=0
    ).values_list("day", "status", "runs"):
        days.setdefault(day, {})[status] = count
    samples: dict[str, list[float]] = {}
    latest = (
        Run.objects.filter(created_at__gte=since, duration_ms__isnull=False)
        .order_by("-created_at", "-run_id")
        .values_list("blueprint_name", "duration_ms")[:DURATION_SAMPLE]
    )
    for blueprint, duration in latest:
        if duration is not None:  # the query asks for durations: always true
            samples.setdefault(blueprint, []).append(duration)
    return Dashboard(
        by_status=by_status,
        awaiting=Run.objects.awaiting_decision().count(),
        failures_24h=Run.objects.filter(
            status=Run.Status.FAILED, created_at__gte=now - timedelta(hours=24)
        ).count(),
        per_day=sorted(days.items()),
        durations=sorted(samples.items()),
    )
