"""DjangoRunStore against NeuroCore's SQLiteRunStore, side by side in one process.

    python bench/store_bench.py [--runs 200] [--rounds 5] [--profile]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/store_bench.py

The workload is what NeuroCore writes for a run of ten steps: ``save_run``
(running), ten ``save_step`` calls, ``save_run`` (completed). Both stores write
with the same durability: every call commits and syncs before it returns
(SQLite WAL with ``synchronous=FULL``, PostgreSQL with ``synchronous_commit=on``).
Rounds alternate between the stores so drift on the machine hits both alike.
DjangoRunStore writes to a fresh test database (SQLite file or PostgreSQL,
from ``DATABASE_URL``), dropped at the end; SQLiteRunStore to a fresh file.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurocore_console.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-key-never-used-to-sign-anything")
django.setup()

from django.db import connection  # noqa: E402
from neurocore.persistence import (  # noqa: E402
    RunRecord,
    RunStatus,
    RunStore,
    SQLiteRunStore,
    StepRecord,
)
from neurocore.persistence.base import utcnow_iso  # noqa: E402

from runs.store import DjangoRunStore  # noqa: E402

STEPS_PER_RUN = 10
SNAPSHOT = {
    "name": "payment",
    "version": "1.0",
    "components": [{"name": f"c{i}", "type": "skill", "config": {}} for i in range(STEPS_PER_RUN)],
    "flow": {"type": "sequential", "steps": [{"component": f"c{i}"} for i in range(10)]},
}


def write_runs(store: RunStore, runs: int) -> None:
    """What NeuroCore writes for ``runs`` runs of ten steps each."""
    for _ in range(runs):
        run = RunRecord(
            run_id=uuid.uuid4().hex,
            blueprint_name="payment",
            blueprint_snapshot=SNAPSHOT,
            initial_data={"amount": 120, "currency": "EUR", "customer": "c-42"},
        )
        store.save_run(run)
        for index in range(STEPS_PER_RUN):
            store.save_step(
                StepRecord(
                    run_id=run.run_id,
                    step_index=index,
                    component=f"c{index}",
                    skill_type="skill",
                    duration_ms=1.25,
                    output_keys=[f"out{index}"],
                )
            )
        run.status = RunStatus.COMPLETED
        run.final_context = {"data": {"amount": 120, "result": "ok"}, "metadata": {}}
        run.updated_at = utcnow_iso()
        run.duration_ms = 12.5
        store.save_run(run)


def timed(store: RunStore, runs: int) -> float:
    started = time.perf_counter()
    write_runs(store, runs)
    return time.perf_counter() - started


def synchronous_mode(store: RunStore) -> str:
    if isinstance(store, SQLiteRunStore):
        mode = store._conn.execute("PRAGMA synchronous").fetchone()[0]
        journal = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
        return f"sqlite journal_mode={journal} synchronous={mode} (2=FULL)"
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            mode = cursor.execute("PRAGMA synchronous").fetchone()[0]
            journal = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            return f"sqlite journal_mode={journal} synchronous={mode} (2=FULL)"
        cursor.execute("SHOW synchronous_commit")
        return f"postgresql synchronous_commit={cursor.fetchone()[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per round per store")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="profile DjangoRunStore")
    args = parser.parse_args()

    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        # The peer's file sits beside the console's SQLite file: same disk.
        with tempfile.TemporaryDirectory(dir=ROOT / "var") as tmp:
            peer = SQLiteRunStore(Path(tmp) / "runs.db")
            ours = DjangoRunStore()
            write_runs(peer, 5)  # warm up both
            write_runs(ours, 5)
            peer_times, our_times = [], []
            for _ in range(args.rounds):
                peer_times.append(timed(peer, args.runs))
                our_times.append(timed(ours, args.runs))
            report(args, peer, ours, peer_times, our_times)
            if args.profile:
                profile(ours, args.runs)
            peer.close()
            ours.close()
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)


def report(
    args: argparse.Namespace,
    peer: RunStore,
    ours: RunStore,
    peer_times: list[float],
    our_times: list[float],
) -> None:
    total_runs = args.runs * args.rounds
    peer_s, our_s = sum(peer_times), sum(our_times)
    print(f"DjangoRunStore on {connection.vendor} vs SQLiteRunStore (NeuroCore 0.4)")
    print(f"workload: {args.rounds} rounds x {args.runs} runs x {STEPS_PER_RUN} steps")
    print(f"  peer durability: {synchronous_mode(peer)}")
    print(f"  ours durability: {synchronous_mode(ours)}")
    header = f"{'store':<16}{'runs/s':>10}{'steps/s':>10}{'calls/s':>10}{'median round':>14}"
    print(header)
    calls = STEPS_PER_RUN + 2
    for name, seconds, rounds in (
        ("SQLiteRunStore", peer_s, peer_times),
        ("DjangoRunStore", our_s, our_times),
    ):
        print(
            f"{name:<16}{total_runs / seconds:>10.1f}{total_runs * STEPS_PER_RUN / seconds:>10.1f}"
            f"{total_runs * calls / seconds:>10.1f}{statistics.median(rounds):>13.3f}s"
        )
    print(f"ratio (Django / SQLiteRunStore throughput): {peer_s / our_s:.2f}")


def profile(store: RunStore, runs: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    write_runs(store, runs)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
