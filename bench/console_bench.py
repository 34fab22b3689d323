"""The console's pages at scale: 1,000,000 runs and 10,000,000 steps.

    python bench/console_bench.py [--runs 1000000] [--repeat 50] [--keep]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/console_bench.py

Seeds its own database (``var/bench_console.sqlite3`` or ``bench_console``, never
the tests' database) in bulk (runs over the last year, ten steps each,
one run of 1,000 steps), then times each page server-side: a GET through the
production WSGI application, every middleware included and no test-client
instrumentation, signed in as a superuser (median and p95 of --repeat requests
after one warm-up): the runs
list unfiltered, by status, by blueprint, by both, a run-id prefix search,
page 1,000, the page of the 1,000-step run, and the dashboard. With --keep the
seeded database is kept and reused by the next --keep run (seeding takes minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurocore_console.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-key-never-used-to-sign-anything")
os.environ.setdefault("DJANGO_HTTPS", "0")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402

# The production entry point, as gunicorn's workers load it.
from neurocore_console.wsgi import application  # noqa: E402
from runs.services.imports import run_tallies_compact  # noqa: E402

STEPS = 10
BIG_RUN_STEPS = 1000
BLUEPRINTS = [f"blueprint-{n:02d}" for n in range(20)]
STATUSES = (
    ["completed"] * 80 + ["failed"] * 10 + ["suspended"] * 5 + ["cancelled"] * 4 + ["running"]
)
SNAPSHOT = json.dumps({"name": "bench", "components": [{"name": f"c{i}"} for i in range(STEPS)]})
RUN_COLUMNS = (
    "run_id, blueprint_name, blueprint_version, blueprint_path, blueprint_snapshot, flow_type, "
    "status, initial_data, final_context, error, suspended_at_node, suspension_reason, "
    "checkpoint_id, created_at, updated_at, duration_ms"
)
STEP_COLUMNS = (
    "run_id, step_index, component, skill_type, status, started_at, duration_ms, error, "
    "output_keys, context_snapshot"
)


def run_rows(count: int, start: datetime) -> Iterator[tuple]:
    span = timedelta(days=365).total_seconds()
    for n in range(count):
        created = start + timedelta(seconds=span * n / count)
        status = STATUSES[n % len(STATUSES)]
        yield (
            uuid.uuid4().hex,
            BLUEPRINTS[n % len(BLUEPRINTS)],
            "1.0",
            None,
            SNAPSHOT,
            "sequential",
            status,
            json.dumps({"n": n}),
            json.dumps({"data": {"n": n}}),
            f"error {n}" if status == "failed" else None,
            "gate" if status == "suspended" else None,
            "Approve?" if status == "suspended" else None,
            None,
            created,
            created,
            10.0 + n % 5000,
        )


def insert(table: str, columns: str, rows: list[tuple]) -> None:
    """Bulk insert: COPY on PostgreSQL, executemany on SQLite."""
    if connection.vendor == "postgresql":
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join(["%s"] * len(columns.split(",")))
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def seed(runs: int) -> str:
    """Bulk-load the runs and steps; return the id of the 1,000-step run."""
    start = datetime.now(UTC) - timedelta(days=365)
    batch: list[tuple] = []
    loaded = 0
    for row in run_rows(runs, start):
        batch.append(row)
        if len(batch) == 20_000:
            _load(batch)
            loaded += len(batch)
            batch = []
            print(f"\r  {loaded:,} runs", end="", flush=True)
    _load(batch)
    big = uuid.uuid4().hex
    now = datetime.now(UTC)
    with transaction.atomic():
        insert(
            "runs_run",
            RUN_COLUMNS,
            [
                (
                    big,
                    "blueprint-big",
                    "1.0",
                    None,
                    SNAPSHOT,
                    "sequential",
                    "completed",
                    "{}",
                    '{"data": {}}',
                    None,
                    None,
                    None,
                    None,
                    now,
                    now,
                    9000.0,
                )
            ],
        )
        insert(
            "runs_step",
            STEP_COLUMNS,
            [
                (
                    big,
                    i,
                    f"c{i}",
                    "skill",
                    "completed",
                    now,
                    1.0,
                    None,
                    '["out"]',
                    json.dumps({"i": i}),
                )
                for i in range(BIG_RUN_STEPS)
            ],
        )
    print()
    return big


def analyze() -> None:
    """Statistics (and PostgreSQL's visibility map), as autovacuum keeps them after a
    load, and the run tallies compacted, as ``runs import`` leaves them."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    run_tallies_compact()


def _load(rows: list[tuple]) -> None:
    if not rows:
        return
    with transaction.atomic():
        insert("runs_run", RUN_COLUMNS, rows)
        insert(
            "runs_step",
            STEP_COLUMNS,
            [
                (row[0], i, f"c{i}", "skill", "completed", row[13], 1.0, None, '["out"]', None)
                for row in rows
                for i in range(STEPS)
            ],
        )


def seeded_big_run(runs: int) -> str | None:
    """The 1,000-step run of a kept database seeded with ``runs`` runs, else None."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT run_id FROM runs_run WHERE blueprint_name = 'blueprint-big'")
        big = cursor.fetchone()
        cursor.execute("SELECT COUNT(*) FROM runs_run")
        (count,) = cursor.fetchone()
    return big[0] if big is not None and count == runs + 1 else None


def get(cookie: str, url: str) -> tuple[str, bytes]:
    """One GET through the production WSGI application, as gunicorn would call it
    (RequestFactory only builds the WSGI environ)."""
    environ = RequestFactory().get(url, HTTP_HOST="localhost", HTTP_COOKIE=cookie).environ
    status = []
    body = b"".join(application(environ, lambda line, headers: status.append(line)))
    return status[0], body


def timed(cookie: str, url: str, repeat: int) -> tuple[float, float]:
    status, _ = get(cookie, url)  # warm-up
    assert status.startswith("200"), (url, status)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        status, _ = get(cookie, url)
        samples.append((time.perf_counter() - started) * 1000)
        assert status.startswith("200"), (url, status)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument(
        "--keep", action="store_true", help="keep the seeded database and reuse a kept one"
    )
    args = parser.parse_args()

    call_command("collectstatic", interactive=False, verbosity=0)  # pages link hashed names
    connection.settings_dict["TEST"]["NAME"] = (
        str(ROOT / "var" / "bench_console.sqlite3")
        if connection.vendor == "sqlite"
        else "bench_console"
    )
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=args.keep)
    try:
        big = seeded_big_run(args.runs) if args.keep else None
        if big is None:
            if args.keep:  # a kept database of another size: start afresh
                connection.creation.destroy_test_db(test_db, verbosity=0)
                test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True)
            started = time.perf_counter()
            big = seed(args.runs)
            print(
                f"seeded {args.runs:,} runs, {args.runs * STEPS + BIG_RUN_STEPS:,} steps on "
                f"{connection.vendor} in {time.perf_counter() - started:.0f} s"
            )
        else:
            print(f"reusing the kept database of {args.runs:,} runs on {connection.vendor}")
        analyze()
        user, _ = get_user_model().objects.get_or_create(
            username="bench", defaults={"is_superuser": True, "is_staff": True}
        )
        client = Client()
        client.force_login(user)  # for its session cookie
        cookie = (
            f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT run_id FROM runs_run ORDER BY created_at LIMIT 1 OFFSET %s",
                [min(5000, args.runs // 2)],
            )
            prefix = cursor.fetchone()[0][:6]
        last_page = min(1000, args.runs // 50)
        pages = [
            ("runs list", "/admin/runs/run/"),
            ("by status", "/admin/runs/run/?status=failed"),
            ("by blueprint", "/admin/runs/run/?blueprint=blueprint-07"),
            ("status + blueprint", "/admin/runs/run/?status=suspended&blueprint=blueprint-07"),
            (f"id prefix search ({prefix})", f"/admin/runs/run/?q={prefix}"),
            (f"page {last_page:,}", f"/admin/runs/run/?p={last_page}"),
            ("1,000-step run page", f"/admin/runs/run/{big}/change/"),
            ("dashboard", "/admin/"),
        ]
        print(f"{'page':<32}{'median ms':>10}{'p95 ms':>10}")
        for name, url in pages:
            median, p95 = timed(cookie, url, args.repeat)
            print(f"{name:<32}{median:>10.1f}{p95:>10.1f}")
    finally:
        if not args.keep:
            connection.creation.destroy_test_db(test_db, verbosity=0)


if __name__ == "__main__":
    main()
