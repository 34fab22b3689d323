"""`manage.py runs …` against `neurocore runs …` on the same 100,000 runs x 10 steps.

    python bench/cli_bench.py [--runs 100000] [--repeat 20]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/cli_bench.py

1. Builds a NeuroCore project whose runs.db (NeuroCore's own schema, created by
   SQLiteRunStore) holds the runs, written in bulk.
2. Imports it into a fresh console test database: `manage.py runs import` (runs/s).
3. Times, in this one process, `runs list --limit 50` of both CLIs through their
   entry points (click for NeuroCore, call_command here: argument parsing and
   output included; median and p95 of --repeat calls, output discarded) and the
   prefix lookup of the oldest run (NeuroCore's CLI only searches the newest
   1,000 runs for prefixes).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurocore_console.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-key-never-used-to-sign-anything")
django.setup()

import typer  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from neurocore.cli.app import app as neurocore_app  # noqa: E402
from neurocore.persistence import SQLiteRunStore  # noqa: E402

from runs import selectors  # noqa: E402

STEPS = 10
STATUSES = ["completed"] * 7 + ["failed", "suspended", "cancelled"]
BLUEPRINTS = ["payment", "refund", "publication", "nightly-import", "data-cleanup"]


def build_runs_db(project: Path, runs: int) -> tuple[Path, str]:
    """A NeuroCore project with ``runs`` runs in data/runs.db; returns it and the oldest id."""
    (project / "neurocore.yaml").write_text("project: {name: bench}\n")
    path = project / "data" / "runs.db"
    SQLiteRunStore(path).close()  # NeuroCore creates its schema
    import sqlite3

    db = sqlite3.connect(path)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    snapshot = json.dumps(
        {"name": "bench", "components": [{"name": f"c{i}"} for i in range(STEPS)]}
    )
    oldest = ""
    for offset in range(0, runs, 10_000):
        run_rows, step_rows = [], []
        for n in range(offset, min(offset + 10_000, runs)):
            run_id = uuid.uuid4().hex
            oldest = oldest or run_id
            created = (start + timedelta(seconds=n)).isoformat()
            status = STATUSES[n % len(STATUSES)]
            run_rows.append(
                (
                    run_id,
                    BLUEPRINTS[n % len(BLUEPRINTS)],
                    "1.0",
                    None,
                    snapshot,
                    "sequential",
                    status,
                    json.dumps({"n": n}),
                    json.dumps({"data": {"n": n}}),
                    None,
                    "gate" if status == "suspended" else None,
                    None,
                    None,
                    created,
                    created,
                    12.5,
                )
            )
            step_rows.extend(
                (run_id, i, f"c{i}", "skill", "completed", created, 1.0, None, '["out"]', None)
                for i in range(STEPS)
            )
        db.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", run_rows)
        db.executemany("INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?,?)", step_rows)
        db.commit()
    db.close()
    return path, oldest


def timings(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and p95 milliseconds of ``call``, its output discarded."""
    samples = []
    for _ in range(repeat):
        sink = io.StringIO()
        started = time.perf_counter()
        with redirect_stdout(sink), redirect_stderr(sink):
            call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        with tempfile.TemporaryDirectory(dir=ROOT / "var") as tmp:
            project = Path(tmp)
            started = time.perf_counter()
            runs_db, oldest = build_runs_db(project, args.runs)
            built = time.perf_counter() - started
            print(f"built runs.db: {args.runs} runs x {STEPS} steps in {built:.1f} s")

            started = time.perf_counter()
            call_command("runs", "import", str(runs_db), stdout=io.StringIO(), stderr=io.StringIO())
            seconds = time.perf_counter() - started
            rate = args.runs / seconds
            print(f"runs import ({connection.vendor}): {seconds:.1f} s = {rate:,.0f} runs/s")

            # Both through their command-line entry points, parsing included.
            neurocore = typer.main.get_command(neurocore_app)
            peer_args = ["runs", "list", "--limit", "50", "--project-root", str(project)]
            peer = timings(lambda: neurocore.main(peer_args, standalone_mode=False), args.repeat)
            ours = timings(lambda: call_command("runs", "list", "--limit", "50"), args.repeat)
            print(
                f"runs list --limit 50   neurocore: median {peer[0]:.1f} ms, p95 {peer[1]:.1f} ms"
            )
            print(
                f"                       console:   median {ours[0]:.1f} ms, p95 {ours[1]:.1f} ms"
            )
            print(f"                       speed-up (median): {peer[0] / ours[0]:.1f}x")

            prefix = oldest[:8]
            lookup = timings(
                lambda: selectors.runs_with_id_prefix(prefix, limit=6), args.repeat * 5
            )
            found = selectors.runs_with_id_prefix(prefix, limit=6)
            print(
                f"prefix lookup of the oldest run ({prefix}): median {lookup[0]:.2f} ms, "
                f"p95 {lookup[1]:.2f} ms, found {len(found)} (NeuroCore's CLI: not found, "
                "it searches the newest 1,000 runs)"
            )
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)


if __name__ == "__main__":
    main()
