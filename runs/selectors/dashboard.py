"""Reads for the dashboard and the health check: figures, not rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Case, Count, F, FloatField, Func, Q, Sum, Value, When, Window
from django.db.models.functions import Coalesce, RowNumber
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from runs.models import Decision, GateDeadline, Run, RunTally
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
class DecisionTimes:
    """How long one blueprint's gates wait for a decision, and how many are overdue now.

    ``median`` and ``p90`` are seconds from suspension to the decision that settled
    it (nearest rank), over the ``decisions`` of the last ``DECISION_DAYS`` days;
    None when there was none.
    """

    blueprint: str
    decisions: int
    median: float | None
    p90: float | None
    overdue: int


@dataclass(frozen=True)
class Dashboard:
    """The console's front page figures."""

    by_status: dict[str, int]
    awaiting: int
    failures_24h: int
    per_day: list[tuple[date, dict[str, int]]]
    durations: list[tuple[str, list[float]]]
    decision_times: list[DecisionTimes] = field(default_factory=list)
    overdue: int = 0


DECISION_DAYS = 30


class SecondsBetween(Func):
    """Seconds from the second instant to the first (``end``, ``start``), computed by
    the database (no function of the application's per row, even on SQLite)."""

    arity = 2
    output_field = FloatField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="((julianday(%(expressions)s)) * 86400.0)",
            arg_joiner=") - julianday(",
            **extra,
        )

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="EXTRACT(EPOCH FROM (%(expressions)s))::double precision",
            arg_joiner=" - ",
            **extra,
        )


def decision_times(*, now: datetime) -> list[DecisionTimes]:
    """Per blueprint: the median and 90th percentile of the time from suspension to
    the settling decision (a rejection, the approval completing a quorum, an
    expiry: ``Decision.settles``) over the last ``DECISION_DAYS``
    days, and how many suspensions are overdue now.

    Two queries whatever the number of runs: the percentiles are picked by the
    database (window functions over the decisions of the period, found through the
    index on ``decided_at``), overdue suspensions counted from their deadlines.
    """
    ranked = (
        Decision.objects.filter(decided_at__gte=now - timedelta(days=DECISION_DAYS), settles=True)
        .annotate(
            blueprint=F("run__blueprint_name"),
            wait=SecondsBetween("decided_at", "suspended_at"),
        )
        .annotate(
            rank=Window(RowNumber(), partition_by=F("blueprint"), order_by=F("wait").asc()),
            total=Window(Count("*"), partition_by=F("blueprint")),
        )
        .annotate(
            # The nearest rank of the median and of the 90th percentile: ceil(p·n).
            picked=Case(
                When(
                    Q(rank=(F("total") * 50 + 99) / 100) | Q(rank=(F("total") * 90 + 99) / 100),
                    then=Value(1),
                ),
                default=Value(0),
            )
        )
        .filter(picked=1)
        .order_by()
        .values_list("blueprint", "rank", "total", "wait")
    )
    times: dict[str, dict[str, Any]] = {}
    for blueprint, rank, total, raw in ranked:
        wait = round(raw, 3)  # SQLite's julianday() is exact to about 0.1 ms
        entry = times.setdefault(blueprint, {"decisions": total})
        if rank == (total * 50 + 99) // 100:
            entry["median"] = wait
        if rank == (total * 90 + 99) // 100:
            entry["p90"] = wait
    overdue = dict(
        GateDeadline.objects.waiting()
        .filter(due_at__lte=now)
        .order_by()
        .values_list("blueprint_name")
        .annotate(n=Count("*"))
        .values_list("blueprint_name", "n")
    )
    return [
        DecisionTimes(
            blueprint=blueprint,
            decisions=times.get(blueprint, {}).get("decisions", 0),
            median=times.get(blueprint, {}).get("median"),
            p90=times.get(blueprint, {}).get("p90"),
            overdue=overdue.get(blueprint, 0),
        )
        for blueprint in sorted(set(times) | set(overdue))
    ]


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
    the durations of the latest runs of the last days, per blueprint, and how long
    gates wait for a decision (``decision_times``)."""
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
    times = decision_times(now=now)
    return Dashboard(
        by_status=by_status,
        awaiting=Run.objects.awaiting_decision().count(),
        failures_24h=Run.objects.filter(
            status=Run.Status.FAILED, created_at__gte=now - timedelta(hours=24)
        ).count(),
        per_day=sorted(days.items()),
        durations=sorted(samples.items()),
        decision_times=times,
        overdue=sum(row.overdue for row in times),
    )
