"""Many writers at once: no lost write, no "database is locked", no leaked connection."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from neurocore.persistence import StepStatus

from runs.models import Step
from runs.store import DjangoRunStore
from tests.test_store import make_run, make_step

THREADS = 20
CALLS_PER_THREAD = 50


def open_connections() -> int:
    """Connections to the test database that the server sees (PostgreSQL only)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_times_fifty_save_step_calls_all_persist() -> None:
    store = DjangoRunStore()
    run = make_run()
    store.save_run(run)
    start = threading.Barrier(THREADS)

    def writer(thread: int) -> int:
        start.wait()  # all threads write at the same instant
        try:
            for call in range(CALLS_PER_THREAD):
                store.save_step(make_step(run.run_id, thread * CALLS_PER_THREAD + call))
            return CALLS_PER_THREAD
        finally:
            connection.close()  # each thread owns its Django connection

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        written = sum(pool.map(writer, range(THREADS)))  # re-raises any error

    assert written == THREADS * CALLS_PER_THREAD == 1000
    assert Step.objects.filter(run_id=run.run_id).count() == 1000
    indexes = sorted(s.step_index for s in store.load_steps(run.run_id))
    assert indexes == list(range(1000))
    store.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_upserts_of_the_same_steps_keep_one_row_each() -> None:
    store = DjangoRunStore()
    run = make_run()
    store.save_run(run)
    start = threading.Barrier(THREADS)

    def writer(thread: int) -> None:
        start.wait()
        try:
            for index in range(10):
                store.save_step(make_step(run.run_id, index, component=f"t{thread}"))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(writer, range(THREADS)))

    steps = store.load_steps(run.run_id)
    assert [s.step_index for s in steps] == list(range(10))
    assert all(s.status == StepStatus.COMPLETED for s in steps)
    store.close()


@pytest.mark.django_db(transaction=True)
def test_event_loop_writers_share_the_helper_and_close_it() -> None:
    """Many coroutines saving steps from inside one loop (NeuroCore's async path)."""
    store = DjangoRunStore()
    run = make_run()
    store.save_run(run)

    async def many_writers() -> None:
        async def write(index: int) -> None:
            await asyncio.sleep(0)
            store.save_step(make_step(run.run_id, index))

        await asyncio.gather(*(write(i) for i in range(200)))

    asyncio.run(many_writers())
    assert Step.objects.filter(run_id=run.run_id).count() == 200
    store.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("django-run-store")]


@pytest.mark.django_db(transaction=True)
def test_no_connection_is_left_open_on_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("pg_stat_activity is PostgreSQL's; SQLite has no server connections")
    baseline = open_connections()
    for _ in range(3):
        store = DjangoRunStore()
        run = make_run()
        store.save_run(run)

        async def inside_loop(store: DjangoRunStore = store, run_id: str = run.run_id) -> None:
            store.save_step(make_step(run_id, 0))

        asyncio.run(inside_loop())
        assert open_connections() == baseline + 1  # the helper's
        store.close()
        # The server ends a backend a moment after its client hangs up.
        deadline = time.monotonic() + 10
        while open_connections() > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_connections() == baseline
    connections.close_all()
