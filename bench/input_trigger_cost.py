"""The store's writes with and without the input-text triggers (migration 0014), sync off.

    python bench/input_trigger_cost.py [--runs 300] [--rounds 6]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/input_trigger_cost.py

``bench/store_bench.py`` measures what an agent sees, fsync included; on a busy
disk the fsync hides what the triggers cost. This times the same store writes
(``save_run`` running, then completed, per run) with the commit's sync off
(SQLite ``synchronous=OFF``, PostgreSQL ``synchronous_commit=off``), in rounds
alternating with and without the two triggers on ``runs_run``, in a fresh test
database dropped at the end.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
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
from neurocore.persistence import RunRecord, RunStatus  # noqa: E402
from neurocore.persistence.base import utcnow_iso  # noqa: E402

from runs.store import DjangoRunStore  # noqa: E402

migration = importlib.import_module("runs.migrations.0016_input_search")
INPUTS = {"amount": 120, "currency": "EUR", "customer": "c-42"}  # as store_bench.py's


def triggers() -> tuple[list[str], list[str]]:
    """The statements creating and dropping the triggers on ``runs_run``."""
    if connection.vendor == "sqlite":
        create = [s for s in migration.SQLITE if "TRIGGER runs_run_input_" in s]
        return create, ["DROP TRIGGER runs_run_input_insert", "DROP TRIGGER runs_run_input_update"]
    create = [s for s in migration.POSTGRESQL if "TRIGGER runs_run_input_" in s]
    return create, [
        "DROP TRIGGER runs_run_input_insert ON runs_run",
        "DROP TRIGGER runs_run_input_update ON runs_run",
    ]


def round_of(store: DjangoRunStore, runs: int) -> float:
    """Runs per second over ``runs`` runs, each saved running then completed."""
    started = time.perf_counter()
    for _ in range(runs):
        now = utcnow_iso()
        run = RunRecord(
            run_id=uuid.uuid4().hex,
            blueprint_name="payment",
            status=RunStatus.RUNNING,
            created_at=now,
            updated_at=now,
            initial_data=INPUTS,
        )
        store.save_run(run)
        store.save_run(run.model_copy(update={"status": RunStatus.COMPLETED}))
    return runs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "PRAGMA synchronous=OFF"
                if connection.vendor == "sqlite"
                else "SET synchronous_commit=off"
            )
        create, drop = triggers()
        assert len(create) == len(drop) == 2, create
        store = DjangoRunStore()
        rates: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(args.rounds):
            rates["with"].append(round_of(store, args.runs))
            with connection.cursor() as cursor:
                for statement in drop:
                    cursor.execute(statement)
            rates["without"].append(round_of(store, args.runs))
            with connection.cursor() as cursor:
                for statement in create:
                    cursor.execute(statement)
        medians = {mode: statistics.median(values) for mode, values in rates.items()}
        for mode, values in rates.items():
            rounds = ", ".join(f"{value:.0f}" for value in values)
            print(f"{connection.vendor} {mode} the triggers: {medians[mode]:.1f} runs/s ({rounds})")
        print(f"with / without: {medians['with'] / medians['without']:.3f}")
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)


if __name__ == "__main__":
    main()
