"""Reads for views, admin and commands, with their joins and annotations built in."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db import DatabaseError, connection
from django.db.models import Case, Count, Prefetch, Q, QuerySet, Sum, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from runs.errors import ConsoleError
from runs.models import Decision, Run, RunAction, RunTally, Step
from runs.permissions import DECIDE, Actor, allowed_blueprints, can_decide
from runs.rules import check_action

logger = logging.getLogger(__name__)


def runs_awaiting_decision_for(user: Actor) -> QuerySet[Run]:
    """Runs waiting at a gate that ``user`` may decide, longest waiting first.

    Scopes are applied to the blueprints that have waiting runs (a handful),
    so the query stays one filter whatever the number of runs.
    """
    if not can_decide(user):
        return Run.objects.none()
    waiting = Run.objects.awaiting_decision()
    if not user.is_superuser:
        blueprints = waiting.order_by().values_list("blueprint_name", flat=True).distinct()
        waiting = waiting.filter(blueprint_name__in=allowed_blueprints(user, blueprints, DECIDE))
    return waiting.order_by("updated_at", "run_id")


def waiting_count_for(user: Actor) -> int:
    """How many runs wait for a decision ``user`` may make."""
    return runs_awaiting_decision_for(user).count()


def run_by_id(run_id: str) -> Run | None:
    """A run by its full id, or None."""
    return Run.objects.filter(pk=run_id).first()


def decision_on(run_id: str, gate: str, suspended_at: datetime) -> Decision | None:
    """The decision taken on one suspension of a run (its gate and since when), if any."""
    return (
        Decision.objects.filter(run_id=run_id, gate=gate, suspended_at=suspended_at)
        .select_related("resumption")
        .first()
    )


def current_decision(run: Run) -> Decision | None:
    """The decision taken on the suspension ``run`` waits at now, if any."""
    suspension = run.suspension
    if suspension is None:
        return None
    return decision_on(run.run_id, suspension.gate, suspension.since)


@dataclass(frozen=True)
class ReviewEvidence:
    """What an approver is shown of a waiting run, and its digest."""

    gate: str
    gate_message: str
    inputs: dict[str, Any]
    data: dict[str, Any]
    steps: list[Step]
    digest: str


def review_evidence(run: Run) -> ReviewEvidence:
    """The gate, inputs, data produced so far and steps done, as shown for review."""
    steps = list(run.steps.order_by("step_index"))
    context = run.final_context if isinstance(run.final_context, dict) else {}
    data = context.get("data") if isinstance(context.get("data"), dict) else {}
    gate = run.suspended_at_node or ""
    message = run.suspension_reason or ""
    shown = {
        "run_id": run.run_id,
        "gate": gate,
        "gate_message": message,
        "inputs": run.initial_data,
        "data": data,
        "steps": [[s.step_index, s.component, s.status] for s in steps],
    }
    canonical = json.dumps(shown, sort_keys=True, default=str, separators=(",", ":"))
    return ReviewEvidence(
        gate=gate,
        gate_message=message,
        inputs=run.initial_data,
        data=data,
        steps=steps,
        digest=hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest(),
    )


def decisions_of(run_id: str) -> QuerySet[Decision]:
    """Every decision taken on a run, newest first, with its resumption."""
    return Decision.objects.filter(run_id=run_id).select_related("resumption")


def latest_resumption(run_id: str) -> RunAction | None:
    """The most recent resume of a run (by a decision, a reopening or an operator)."""
    return (
        RunAction.objects.filter(
            run_id=run_id,
            kind__in=[RunAction.Kind.RESUME, RunAction.Kind.DECISION, RunAction.Kind.REOPEN],
        )
        .order_by("-requested_at", "-pk")
        .first()
    )


def runs_with_id_prefix(prefix: str, *, limit: int) -> list[Run]:
    """Runs whose id starts with ``prefix``: an exact id first, else a range of the
    primary key index (run ids sort byte by byte on both databases)."""
    if exact := Run.objects.filter(pk=prefix).first():
        return [exact]
    runs = Run.objects.filter(run_id__gte=prefix)
    if prefix and (upper := _prefix_upper_bound(prefix)):
        runs = runs.filter(run_id__lt=upper)
    return [run for run in runs.order_by("run_id")[:limit] if run.run_id.startswith(prefix)]


def runs_listing(*, status: str | None, blueprint: str | None, limit: int) -> QuerySet[Run]:
    """Runs newest first, optionally filtered, with their step counts (one query)."""
    runs = Run.objects.order_by("-created_at")
    if status:
        runs = runs.filter(status=status)
    if blueprint:
        runs = runs.filter(blueprint_name=blueprint)
    return runs.with_step_counts().only(
        "run_id", "blueprint_name", "status", "duration_ms", "created_at"
    )[:limit]


def runs_for_export(*, status: str | None, since: datetime | None) -> QuerySet[Run]:
    """Runs oldest first, with their steps and decisions prefetched (per chunk)."""
    runs = Run.objects.order_by("created_at", "run_id")
    if status:
        runs = runs.filter(status=status)
    if since is not None:
        runs = runs.filter(created_at__gte=since)
    return runs.prefetch_related(
        Prefetch("steps", queryset=Step.objects.order_by("step_index")),
        Prefetch("decisions", queryset=Decision.objects.order_by("decided_at", "pk")),
    )


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


def blueprint_names() -> list[str]:
    """Every blueprint name, read from the (blueprint, created) index one name at a time.

    A loose index scan (a recursive query asking for the next name after the
    last): as many index probes as there are blueprints, however many runs.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE names(name) AS (
                SELECT MIN(blueprint_name) FROM runs_run
                UNION ALL
                SELECT (SELECT MIN(blueprint_name) FROM runs_run WHERE blueprint_name > names.name)
                FROM names WHERE names.name IS NOT NULL
            )
            SELECT name FROM names WHERE name IS NOT NULL
            """
        )
        return [name for (name,) in cursor.fetchall()]


STEPS_PER_PAGE = 100


@dataclass(frozen=True)
class RunDetail:
    """Everything the run's page shows, read in a fixed number of queries."""

    run: Run
    steps: Page  # one page of the run's steps, in order
    decisions: list[Decision]
    actions: list[RunAction]
    replays: list[RunAction]
    replayed_from: RunAction | None


def run_detail(run: Run, *, steps_page: str | int | None = 1) -> RunDetail:
    """A run's steps (``STEPS_PER_PAGE`` at a time; a page number that is not one
    shows the nearest page), decisions, actions, replays of it and the run it replays."""
    actions = list(RunAction.objects.filter(run_id=run.run_id).order_by("-requested_at"))
    steps = Step.objects.filter(run_id=run.run_id).order_by("step_index")
    return RunDetail(
        run=run,
        steps=Paginator(steps, STEPS_PER_PAGE).get_page(steps_page),
        decisions=list(decisions_of(run.run_id)),
        actions=actions,
        replays=[a for a in actions if a.kind == RunAction.Kind.REPLAY and a.result_run_id],
        replayed_from=RunAction.objects.filter(
            kind=RunAction.Kind.REPLAY, result_run_id=run.run_id
        ).first(),
    )


def runs_matching(runs: QuerySet[Run], term: str) -> QuerySet[Run]:
    """Search: the runs whose id starts with ``term``, whose blueprint name starts
    with it, or whose error contains it — all three, whichever matches.

    Run ids are hex, so a word like ``bad``, ``cafe`` or ``feed`` is often an id
    prefix too; it must not hide the runs whose error mentions it. The id
    matches come first, then the others, each in ``runs``' order.

    Rare matches are resolved to their ids first, so the list and its count
    read a few rows by key: the id prefix from the primary key index (never a
    scan), the text matches in one pass over ``runs`` (no index holds error
    text), which stops early when matches are common. Common ones (more than
    ``PREFIX_IDS_LIMIT``) stay conditions: a range of the primary key for the
    id prefix (it ranks no run first: no one run is looked for), the text
    conditions for the rest. A term no stored text can hold (NUL, a lone
    surrogate) matches nothing, without a query.
    """
    if not term:
        return runs
    if not storable(term):
        return runs.none()
    upper = _prefix_upper_bound(term)
    by_id = Q(run_id__gte=term) & (Q(run_id__lt=upper) if upper else Q())
    by_text = Q(blueprint_name__startswith=term) | error_contains(term)
    ids = list(
        Run.objects.filter(by_id)
        .order_by("run_id")
        .values_list("run_id", flat=True)[: PREFIX_IDS_LIMIT + 1]
    )
    texts = list(
        runs.filter(by_text).order_by().values_list("run_id", flat=True)[: PREFIX_IDS_LIMIT + 1]
    )
    few_ids, few_texts = len(ids) <= PREFIX_IDS_LIMIT, len(texts) <= PREFIX_IDS_LIMIT
    if few_ids and few_texts:
        matched = runs.filter(run_id__in={*ids, *texts})
    else:
        matched = runs.filter(
            (Q(run_id__in=ids) if few_ids else by_id)
            | (Q(run_id__in=texts) if few_texts else by_text)
        )
    if not ids or not few_ids:
        return matched
    # The admin's changelist orders the list before searching it: keep that
    # order (or the model's), after the id matches.
    ordering = list(runs.query.order_by) or (
        list(Run._meta.ordering) if runs.query.default_ordering else []
    )
    return matched.alias(
        search_rank=Case(When(run_id__in=ids, then=Value(0)), default=Value(1))
    ).order_by("search_rank", *ordering)


PREFIX_IDS_LIMIT = 1000


def error_contains(term: str) -> Q:
    """Runs whose error contains ``term`` (any case), answered from the error index
    (migration 0011). PostgreSQL's trigram index serves ``icontains`` itself. On
    SQLite the FTS5 trigram table answers a phrase query for three characters or
    more; a shorter term is looked for with LIKE in that table (errors only)."""
    if connection.vendor != "sqlite":
        return Q(error__icontains=term)
    if len(term) >= TRIGRAM:
        phrase = '"' + term.replace('"', '""') + '"'
        query = "SELECT run_id FROM runs_run_error_fts WHERE runs_run_error_fts MATCH %s"
        return Q(run_id__in=RawSQL(query, [phrase]))  # noqa: S611 — the term is a parameter
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = "SELECT run_id FROM runs_run_error_fts WHERE error LIKE %s ESCAPE '\\'"
    return Q(run_id__in=RawSQL(query, [f"%{escaped}%"]))  # noqa: S611 — a parameter


TRIGRAM = 3  # the shortest term the trigram index answers


def storable(text: str) -> bool:
    """Whether stored text could hold ``text``: none holds NUL (PostgreSQL text cannot,
    so the store refuses or replaces it) or a lone surrogate (no database encodes one).

    Comparing such a term with a column fails in the database driver; a search
    or an id lookup for one finds nothing without asking.
    """
    if "\x00" in text:
        return False
    try:
        text.encode()  # UTF-8, which has no encoding for a lone surrogate
    except UnicodeEncodeError:
        return False
    return True


def _prefix_upper_bound(prefix: str) -> str | None:
    """The least string after every string starting with ``prefix``, in code point
    order (UTF-8 byte order, as both databases compare run ids), or None when no
    string is (``prefix`` is all U+10FFFF).

    The surrogates U+D800 to U+DFFF are skipped: no stored string holds one, and
    none can be sent to a database (U+D7FF is followed by U+E000).
    """
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    following = ord(stem[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000
    return stem[:-1] + chr(following)


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


def step_counts(run_ids: list[str]) -> dict[str, int]:
    """How many steps each of these runs has (one grouped query on the steps' key)."""
    if not run_ids:
        return {}
    return dict(
        Step.objects.filter(run_id__in=run_ids)
        .order_by()
        .values_list("run_id")
        .annotate(n=Count("*"))
        .values_list("run_id", "n")
    )


@dataclass(frozen=True)
class Reopening:
    """A rejected run sent back to its gate: who rejected it and why, who reopened it and why."""

    rejection: Decision | None
    reopen: RunAction


def reopenings(runs: list[Run]) -> dict[str, Reopening]:
    """For each of these runs waiting at a gate it was reopened to, that reopening.

    Only a reopening made before the run's current suspension began is the
    story of the question asked now (two queries for any number of runs).
    """
    since = {run.run_id: run.suspension.since for run in runs if run.suspension is not None}
    if not since:
        return {}
    latest: dict[str, RunAction] = {}
    for action in RunAction.objects.filter(
        run_id__in=list(since), kind=RunAction.Kind.REOPEN
    ).order_by("run_id", "-requested_at", "-pk"):
        if action.requested_at <= since[action.run_id]:
            latest.setdefault(action.run_id, action)
    rejections: dict[str, list[Decision]] = {}
    for decision in Decision.objects.filter(run_id__in=list(latest), approved=False).order_by(
        "-decided_at"
    ):
        rejections.setdefault(decision.run_id, []).append(decision)
    return {
        run_id: Reopening(
            rejection=next(
                (d for d in rejections.get(run_id, []) if d.decided_at <= reopen.requested_at),
                None,
            ),
            reopen=reopen,
        )
        for run_id, reopen in latest.items()
    }


def open_action_of(run_id: str) -> RunAction | None:
    """The run's queued or running action, if any (it blocks every other one)."""
    return RunAction.objects.filter(run_id=run_id, state__in=RunAction.OPEN_STATES).first()


@dataclass(frozen=True)
class ActionPreview:
    """What an action on selected runs will do: the runs it will act on, and the refused."""

    allowed: list[Run]
    refused: list[tuple[Run, str]]


def action_preview(
    kind: str,
    runs: list[Run],
    actor: Actor,
    *,
    open_actions: dict[str, RunAction] | None = None,
) -> ActionPreview:
    """Check ``runs.rules.check_action`` for each run before a person confirms an action.

    The runs' open actions are read in one query, unless given (by run id).
    The service checks again under the run's lock when the action is confirmed.
    """
    if open_actions is None:
        open_actions = {
            action.run_id: action
            for action in RunAction.objects.filter(
                run_id__in=[run.run_id for run in runs], state__in=RunAction.OPEN_STATES
            )
        }
    allowed: list[Run] = []
    refused: list[tuple[Run, str]] = []
    for run in runs:
        try:
            check_action(kind, run, actor, open_action=open_actions.get(run.run_id))
        except (ConsoleError, PermissionDenied) as error:
            # Nothing was tried yet: "Nothing was changed." would say otherwise.
            refused.append((run, str(error).removesuffix(" Nothing was changed.")))
        else:
            allowed.append(run)
    return ActionPreview(allowed=allowed, refused=refused)


def status_breakdown(runs: QuerySet[Run]) -> list[tuple[str, str]]:
    """How many of ``runs`` are in each status: (label, count written out), most first."""
    counts = runs.order_by().values_list("status").annotate(n=Count("*")).values_list("status", "n")
    labels = dict(Run.Status.choices)
    ranked = sorted(counts, key=lambda item: -item[1])
    return [(labels.get(status, status), f"{count:,}") for status, count in ranked]
