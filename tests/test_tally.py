"""The run tallies the database keeps (migration 0008) equal counting the runs,
whoever writes them and however."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neurocore.persistence import RunStatus

from runs import selectors
from runs.models import Run, RunTally
from runs.services.imports import run_tallies_compact
from runs.store import UPSERT_RUN, DjangoRunStore, run_values
from tests.test_store import make_run

pytestmark = pytest.mark.django_db(transaction=True)

# Instants around midnight, in several offsets: the tally's day is the UTC day.
CREATED = [
    "2026-03-01T23:30:00-02:00",  # 2 March in UTC
    "2026-03-01T23:59:59.999999+00:00",
    "2026-03-02T00:00:00+00:00",
    "2026-03-01T00:30:00+05:00",  # 28 February in UTC
    "2025-12-31T12:00:00+00:00",
]
STATUSES = [status.value for status in RunStatus]


def counted() -> dict[tuple[date, str], int]:
    """Runs per (UTC day of creation, status), counted row by row."""
    return dict(
        Counter(
            (created.astimezone(UTC).date(), status)
            for created, status in Run.objects.values_list("created_at", "status")
        )
    )


def tallied() -> dict[tuple[date, str], int]:
    return {(t.day, t.status): t.runs for t in RunTally.objects.all() if t.runs}


writes = st.lists(
    st.tuples(
        st.sampled_from(["save", "save", "save", "delete", "orm_update", "orm_delete"]),
        st.integers(0, 5),  # which run
        st.sampled_from(STATUSES),
        st.sampled_from(CREATED),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes=writes)
def test_every_kind_of_write_keeps_the_tally_exact(writes: list[tuple[str, int, str, str]]) -> None:
    Run.objects.all().delete()
    store = DjangoRunStore()
    ids = [f"run-{n}" for n in range(6)]
    for kind, which, status, created in writes:
        run_id = ids[which]
        match kind:
            case "save":
                store.save_run(make_run(run_id=run_id, status=status, created_at=created))
            case "delete":
                store.delete_run(run_id)
            case "orm_update":
                Run.objects.filter(pk=run_id).update(status=status)
            case "orm_delete":
                Run.objects.filter(pk=run_id).delete()
    assert tallied() == counted()
    total = Run.objects.count()
    assert selectors.run_count() == total
    assert sum(selectors.run_count(status=s) for s in STATUSES) == total
    assert selectors.dashboard().by_status == dict(
        Counter(Run.objects.values_list("status", flat=True))
    )


def test_runs_moving_both_ways_at_once_never_deadlock() -> None:
    """Writers moving runs running → suspended and suspended → running at the
    same instant adjust the same two tally rows in opposite directions."""
    store = DjangoRunStore()
    threads = 8
    moves = 25
    runs = [
        make_run(
            status=RunStatus.RUNNING if n % 2 else RunStatus.SUSPENDED,
            created_at="2026-03-02T10:00:00+00:00",
        )
        for n in range(threads)
    ]
    for run in runs:
        store.save_run(run)
    start = threading.Barrier(threads)

    def mover(n: int) -> int:
        run = runs[n]
        start.wait()
        try:
            for _ in range(moves):
                flipped = (
                    RunStatus.SUSPENDED if run.status == RunStatus.RUNNING else RunStatus.RUNNING
                )
                run = run.model_copy(update={"status": flipped})
                store.save_run(run)
            return moves
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        assert sum(pool.map(mover, range(threads))) == threads * moves  # re-raises any error
    assert (
        tallied()
        == counted()
        == {(date(2026, 3, 2), "running"): 4, (date(2026, 3, 2), "suspended"): 4}
    )
    store.close()


def test_the_migration_tallies_the_runs_already_there() -> None:
    call_command("migrate", "runs", "0007", verbosity=0)
    try:
        # The runs table as it was at 0007: the columns of NeuroCore's record only.
        columns = ["run_id", "blueprint_name", "blueprint_version", "blueprint_snapshot"]
        columns += ["flow_type", "status", "initial_data", "created_at", "updated_at"]
        with connection.cursor() as cursor:
            for n, created in enumerate(CREATED * 3):
                values = run_values(
                    make_run(status=STATUSES[n % len(STATUSES)], created_at=created)
                )
                cursor.execute(
                    f"INSERT INTO runs_run ({', '.join(columns)}) "
                    f"VALUES ({', '.join(['%s'] * len(columns))})",
                    [
                        json.dumps(values[c]) if c.endswith(("snapshot", "data")) else values[c]
                        for c in columns
                    ],
                )
    finally:
        call_command("migrate", "runs", verbosity=0)
    assert sum(tallied().values()) == len(CREATED) * 3
    assert tallied() == counted()


def test_compacting_drops_what_a_bulk_load_leaves_behind() -> None:
    with transaction.atomic():  # one transaction: no version can be pruned on the way
        UPSERT_RUN.execute_many(
            [run_values(make_run(created_at=CREATED[n % 2])) for n in range(3000)], "default"
        )
    before = tally_table_bytes()
    run_tallies_compact()
    assert tallied() == counted()
    assert sum(tallied().values()) == 3000
    if connection.vendor == "postgresql":
        assert before > 10 * 8192  # thousands of dead versions of two rows
        assert tally_table_bytes() == 8192  # one page
    else:
        assert tally_table_bytes() == before  # SQLite updates rows in place


def tally_table_bytes() -> int:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_relation_size('runs_runtally')")
        else:
            cursor.execute("SELECT SUM(pgsize) FROM dbstat WHERE name = 'runs_runtally'")
        return cursor.fetchone()[0]
