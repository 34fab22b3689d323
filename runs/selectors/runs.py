"""Reads of runs for the runs list, the run page, search and the command line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import (
    Case,
    Count,
    Exists,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import RawSQL

from runs.models import Decision, Run, RunAction, RunInputText, RunQuerySet, Step
from runs.selectors.approvals import decisions_of


def runs_by_ids(run_ids: list[str]) -> list[Run]:
    """The runs with these full ids, in the order given (unknown ids left out)."""
    found = {run.run_id: run for run in Run.objects.filter(pk__in=run_ids)}
    return [found[run_id] for run_id in dict.fromkeys(run_ids) if run_id in found]


def run_by_id(run_id: str) -> Run | None:
    """A run by its full id, or None."""
    return Run.objects.filter(pk=run_id).first()


def runs_with_id_prefix(prefix: str, *, limit: int) -> list[Run]:
    """Runs whose id starts with ``prefix``: an exact id first, else a range of the
    primary key index (run ids sort byte by byte on both databases). Nothing for a
    prefix no id can hold (NUL, a lone surrogate)."""
    if not storable(prefix):
        return []
    if exact := Run.objects.filter(pk=prefix).first():
        return [exact]
    runs = Run.objects.filter(id_prefix(prefix))
    return [run for run in runs.order_by("run_id")[:limit] if run.run_id.startswith(prefix)]


def id_prefix(prefix: str, field: str = "run_id") -> Q:
    """``field`` starts with ``prefix``, as a range its index answers (bytewise order)."""
    bound = Q(**{f"{field}__gte": prefix})
    if prefix and (upper := _prefix_upper_bound(prefix)):
        bound &= Q(**{f"{field}__lt": upper})
    return bound


def run_for_short_id(run_id: str) -> tuple[Run | None, bool]:
    """The run an address names: by its id, else by a unique prefix of it (as shown, 12
    characters). Returns the run (or None) and whether the prefix was ambiguous."""
    matches = runs_with_id_prefix(run_id, limit=2) if run_id else []
    if len(matches) == 1:
        return matches[0], False
    return None, len(matches) > 1


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
    with it, whose error contains it, or one of whose input values contains it —
    all four, whichever matches.

    Run ids are hex, so a word like ``bad``, ``cafe`` or ``feed`` is often an id
    prefix too; it must not hide the runs whose error or inputs mention it. The
    id matches come first, then the others, each in ``runs``' order.

    Rare matches are resolved to their ids first, each through its own index, so
    the list and its count read a few rows by key: the id prefix and the
    blueprint prefix as ranges of their indexes, the error text through the
    error index (migration 0011), the inputs through theirs (migration 0014).
    Common ones (more than ``PREFIX_IDS_LIMIT``) stay conditions: a range of
    the primary key for the id prefix (it ranks no run first: no one run is
    looked for), the blueprint range, for errors a plain "contains", and for
    inputs a lookup of the run's input text by its key; the newest-first list
    meets each within a page. Inputs are searched for terms of ``TRIGRAM``
    characters or more: no trigram index answers a shorter one, which would read
    the inputs of every run. A term no stored text can hold (NUL, a lone
    surrogate) matches nothing, without a query.
    """
    if not term:
        return runs
    if not storable(term):
        return runs.none()
    by_id = id_prefix(term)
    # A range of the blueprint index first (LIKE alone reads every run: SQLite's is
    # case-insensitive, PostgreSQL's collation is not bytewise), then the exact test.
    by_blueprint = id_prefix(term, "blueprint_name") & Q(blueprint_name__startswith=term)
    ids = _first_keys(Run.objects.filter(by_id).order_by("run_id"))
    # Each text match looked up on its own, through its own index: an OR of them
    # would make the database read every run.
    blueprints = _first_keys(runs.filter(by_blueprint).order_by())
    errors = _error_keys(runs, term)
    inputs = _input_keys(term)
    few_ids, few_blueprints, few_errors, few_inputs = (
        len(keys) <= PREFIX_IDS_LIMIT for keys in (ids, blueprints, errors, inputs)
    )
    keys = frozenset({*ids, *blueprints, *errors, *inputs})
    if few_ids and few_blueprints and few_errors and few_inputs:  # read by key
        matched = runs.filter(run_id__in=keys)
    else:
        matched = runs.filter(
            (Q(run_id__in=ids) if few_ids else by_id)
            | (Q(run_id__in=blueprints) if few_blueprints else by_blueprint)
            # Common in errors: a condition the newest-first list meets within a page.
            | (Q(run_id__in=errors) if few_errors else Q(error__icontains=term))
            | (Q(run_id__in=inputs) if few_inputs else inputs_contain(term))
        )
        if isinstance(matched, RunQuerySet):  # a count starts from the runs found
            matched = matched.with_search_keys(keys)
    if not ids or not few_ids:
        return matched
    # The admin's changelist orders the list before searching it: keep that
    # order (or the model's), after the id matches.
    ordering: list[Any] = list(runs.query.order_by) or (
        list(Run._meta.ordering or []) if runs.query.default_ordering else []
    )
    return matched.alias(
        search_rank=Case(When(run_id__in=ids, then=Value(0)), default=Value(1))
    ).order_by("search_rank", *ordering)


PREFIX_IDS_LIMIT = 1000


def _first_keys(runs: QuerySet[Run]) -> list[str]:
    """The keys of up to ``PREFIX_IDS_LIMIT`` + 1 of ``runs`` (one more: "too many")."""
    return list(runs.values_list("run_id", flat=True)[: PREFIX_IDS_LIMIT + 1])


def _error_keys(runs: QuerySet[Run], term: str) -> list[str]:
    """Up to ``PREFIX_IDS_LIMIT`` + 1 keys of runs whose error contains ``term``. On
    SQLite they are read from the FTS5 table alone, with its own LIMIT: asked
    through ``runs``, SQLite lists every match before taking the first ones (a word
    in 100,000 errors: half a second); ``runs``' filters apply when the keys are
    used."""
    if connection.vendor != "sqlite":
        return _first_keys(runs.filter(error_contains(term)).order_by())
    query, params = _fts_error_query(term)
    with connection.cursor() as cursor:
        cursor.execute(f"{query} LIMIT %s", [*params, PREFIX_IDS_LIMIT + 1])
        return [run_id for (run_id,) in cursor.fetchall()]


def _input_keys(term: str) -> list[str]:
    """Up to ``PREFIX_IDS_LIMIT`` + 1 keys of runs one of whose input values contains
    ``term`` (any case), read from the input text's index alone (migration 0014);
    the list's filters apply when the keys are used. None for a term shorter than
    ``TRIGRAM``: no trigram index answers it. PostgreSQL's trigram index serves
    ``icontains``; on SQLite the FTS5 trigram table answers a phrase query (the
    term quoted as an FTS5 string: its own syntax, ``"``, ``*``, ``NEAR``, ``-``,
    parentheses, is then plain text)."""
    if len(term) < TRIGRAM:
        return []
    if connection.vendor != "sqlite":
        inputs = RunInputText.objects.filter(text__icontains=term)
        return list(inputs.values_list("run_id", flat=True)[: PREFIX_IDS_LIMIT + 1])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT inputs.run_id FROM runs_runinputtext_fts"
            " JOIN runs_runinputtext AS inputs ON inputs.id = runs_runinputtext_fts.rowid"
            " WHERE runs_runinputtext_fts MATCH %s LIMIT %s",
            [_fts_phrase(term), PREFIX_IDS_LIMIT + 1],
        )
        return [run_id for (run_id,) in cursor.fetchall()]


def inputs_contain(term: str) -> Q:
    """Runs one of whose input values contains ``term`` (any case), tested run by
    run: the run's input text read by its key (the condition a newest-first list
    evaluates until its page is full). Nothing for a term shorter than ``TRIGRAM``,
    as ``runs_matching`` searches inputs."""
    if len(term) < TRIGRAM:
        return Q(pk__in=[])
    return Q(Exists(RunInputText.objects.filter(run=OuterRef("pk"), text__icontains=term)))


def error_contains(term: str) -> Q:
    """Runs whose error contains ``term`` (any case), answered from the error index
    (migration 0011). PostgreSQL's trigram index serves ``icontains`` itself. On
    SQLite the FTS5 trigram table answers (``_fts_error_query``)."""
    if connection.vendor != "sqlite":
        return Q(error__icontains=term)
    query, params = _fts_error_query(term)
    return Q(run_id__in=RawSQL(query, params))  # noqa: S611 — the term is a parameter


def _fts_phrase(term: str) -> str:
    """``term`` as an FTS5 phrase: a string, in which nothing is FTS5 syntax."""
    return '"' + term.replace('"', '""') + '"'


def _fts_error_query(term: str) -> tuple[str, list[str]]:
    """SQLite: the ids of runs whose error contains ``term``, from the FTS5 trigram
    table: a phrase query for three characters or more, LIKE over the table's errors
    for a shorter term."""
    if len(term) >= TRIGRAM:
        return "SELECT run_id FROM runs_run_error_fts WHERE runs_run_error_fts MATCH %s", [
            _fts_phrase(term)
        ]
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "SELECT run_id FROM runs_run_error_fts WHERE error LIKE %s ESCAPE '\\'", [f"%{escaped}%"]


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


def note_progress(runs: Iterable[Run]) -> None:
    """Set ``progress_seen_at`` on the running runs among ``runs``: the end of their last
    step, or the last heartbeat of the worker resuming them (its lease), whichever is
    later. One query, and none when no run is running. ``Run.stall`` reads it."""
    running = {run.run_id: run for run in runs if run.status == Run.Status.RUNNING}
    if not running:
        return
    last_step = Step.objects.filter(run_id=OuterRef("pk")).order_by("-step_index")
    lease = RunAction.objects.filter(run_id=OuterRef("pk"), state=RunAction.State.RUNNING)
    rows = (
        Run.objects.filter(pk__in=list(running))
        .annotate(
            step_started=Subquery(last_step.values("started_at")[:1]),
            step_ms=Subquery(last_step.values("duration_ms")[:1]),
            heartbeat=Subquery(lease.order_by().values("heartbeat_at")[:1]),
        )
        .values_list("pk", "step_started", "step_ms", "heartbeat")
    )
    for run_id, started, took, heartbeat in rows:
        step_ended = started + timedelta(milliseconds=took or 0) if started else None
        signs = [instant for instant in (step_ended, heartbeat) if instant is not None]
        running[run_id].progress_seen_at = max(signs, default=None)


def status_breakdown(runs: QuerySet[Run]) -> list[tuple[str, str]]:
    """How many of ``runs`` are in each status: (label, count written out), most first."""
    counts = runs.order_by().values_list("status").annotate(n=Count("*")).values_list("status", "n")
    labels = dict(Run.Status.choices)
    ranked = sorted(counts, key=lambda item: -item[1])
    return [(labels.get(status, status), f"{count:,}") for status, count in ranked]
