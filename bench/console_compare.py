"""The console's pages at a million runs, for any checkout: one script, two codes.

    python bench/console_compare.py --db-name NAME [--checkout PATH] [--runs 1000000]
        [--repeat 50] [--slow-repeat 10] [--seed-only] [--keep] [--json FILE]

It replaces ``bench/console_bench.py`` (session 2), which could not seed a schema
with ``awaits_decision``. It times the code of ``--checkout`` (default: the
checkout holding it, as ``make bench`` runs it), so an older commit checked
out as a git worktree is timed with the same seed, the same pages and the same
measurement as the current code; run it from that checkout's directory with the
same environment, e.g.::

    cd /tmp/bench-base && DATABASE_URL=sqlite:////tmp/bench_base.sqlite3 \\
        /work/main/.venv/bin/python /work/main/bench/console_compare.py \\
        --checkout /tmp/bench-base --db-name /tmp/bench_console_base.sqlite3 --keep

It seeds the database named by ``--db-name`` (a file on SQLite, a database on
PostgreSQL; never the tests'), so two checkouts never share
one. The seed is session 2's console_bench.py's (1,000,000 runs over the last year, 20
blueprints, 80 % completed, 10 % failed with the error ``error <n>``, 5 % waiting
at a gate, 4 % cancelled, 1 % running; ten steps each; one run of 1,000 steps),
with two differences a newer schema needs: the snapshot names the gate as an
approval component, and where the table has ``awaits_decision`` (migration 0009)
the waiting runs are marked as waiting for a decision, as the store marks them.

Beyond console_bench.py's pages it times searches in the error text (a word in
every failed run's error, a phrase in a few, a word in none), in the inputs (a
vendor in a tenth of the runs, a topic in ten, a key in all) and the approvals
inbox. The inputs are ``{"n": …, "vendor": …, "topic": …, "demo": true}``
(``inputs()``); before migration 0014 they were ``{"n": …}``. A page that
fails is reported as such instead of stopping the run.
Pages slower than a second are timed ``--slow-repeat`` times instead of
``--repeat``. ``--json`` writes every sample, for combining several passes.
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
from urllib.parse import urlencode


def _checkout() -> Path:
    for n, arg in enumerate(sys.argv):
        if arg == "--checkout":
            return Path(sys.argv[n + 1]).resolve()
        if arg.startswith("--checkout="):
            return Path(arg.split("=", 1)[1]).resolve()
    return Path(__file__).resolve().parent.parent


ROOT = _checkout()
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neurocore_console.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-key-never-used-to-sign-anything")
os.environ.setdefault("DJANGO_HTTPS", "0")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402

# The production entry point, as gunicorn's workers load it.
from neurocore_console.wsgi import application  # noqa: E402

try:  # the runs.services package (session 3)
    from runs.services.imports import run_tallies_compact
except ImportError:  # the runs.services module before it
    from runs.services import run_tallies_compact

STEPS = 10
BIG_RUN_STEPS = 1000
BLUEPRINTS = [f"blueprint-{n:02d}" for n in range(20)]
STATUSES = (
    ["completed"] * 80 + ["failed"] * 10 + ["suspended"] * 5 + ["cancelled"] * 4 + ["running"]
)
SNAPSHOT = json.dumps(
    {
        "name": "bench",
        "components": [{"name": f"c{i}"} for i in range(STEPS)]
        + [{"name": "gate", "type": "approval"}],
    }
)
RUN_COLUMNS = [
    "run_id",
    "blueprint_name",
    "blueprint_version",
    "blueprint_path",
    "blueprint_snapshot",
    "flow_type",
    "status",
    "initial_data",
    "final_context",
    "error",
    "suspended_at_node",
    "suspension_reason",
    "checkpoint_id",
    "created_at",
    "updated_at",
    "duration_ms",
]
STEP_COLUMNS = (
    "run_id, step_index, component, skill_type, status, started_at, duration_ms, error, "
    "output_keys, context_snapshot"
)


def run_columns() -> tuple[str, bool]:
    """The runs_run columns the seed writes, and whether awaits_decision is one."""
    with connection.cursor() as cursor:
        names = {c.name for c in connection.introspection.get_table_description(cursor, "runs_run")}
    awaits = "awaits_decision" in names
    return ", ".join(RUN_COLUMNS + (["awaits_decision"] if awaits else [])), awaits


VENDORS = ["ACME Corp", "Globex", "Initech", "Umbrella", "Hooli"] + [
    f"Vendor {n}" for n in range(5)
]
TOPICS = ["Sales", "Support", "Billing", "Onboarding"]


def inputs(n: int) -> dict:
    """Run ``n``'s inputs: ``ACME`` in every tenth run's vendor (100,000 of a million),
    ``Hiring`` the topic of ten runs (n % 100,000 == 42), ``demo`` a key of all."""
    topic = "Hiring" if n % 100_000 == 42 else TOPICS[n % len(TOPICS)]
    return {"n": n, "vendor": VENDORS[n % len(VENDORS)], "topic": topic, "demo": True}


def run_rows(count: int, start: datetime, awaits: bool) -> Iterator[tuple]:
    span = timedelta(days=365).total_seconds()
    for n in range(count):
        created = start + timedelta(seconds=span * n / count)
        status = STATUSES[n % len(STATUSES)]
        row = (
            uuid.uuid4().hex,
            BLUEPRINTS[n % len(BLUEPRINTS)],
            "1.0",
            None,
            SNAPSHOT,
            "sequential",
            status,
            json.dumps(inputs(n)),
            json.dumps({"data": {"n": n}}),
            f"error {n}" if status == "failed" else None,
            "gate" if status == "suspended" else None,
            "Approve?" if status == "suspended" else None,
            None,
            created,
            created,
            10.0 + n % 5000,
        )
        yield (*row, status == "suspended") if awaits else row


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
    columns, awaits = run_columns()
    start = datetime.now(UTC) - timedelta(days=365)
    batch: list[tuple] = []
    loaded = 0
    for row in run_rows(runs, start, awaits):
        batch.append(row)
        if len(batch) == 20_000:
            _load(columns, batch)
            loaded += len(batch)
            batch = []
            print(f"\r  {loaded:,} runs", end="", flush=True)
    _load(columns, batch)
    big = uuid.uuid4().hex
    now = datetime.now(UTC)
    big_row = (big, "blueprint-big", "1.0", None, SNAPSHOT, "sequential", "completed", "{}")
    big_row += ('{"data": {}}', None, None, None, None, now, now, 9000.0)
    with transaction.atomic():
        insert("runs_run", columns, [(*big_row, False) if awaits else big_row])
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


def _load(columns: str, rows: list[tuple]) -> None:
    if not rows:
        return
    with transaction.atomic():
        insert("runs_run", columns, rows)
        insert(
            "runs_step",
            STEP_COLUMNS,
            [
                (row[0], i, f"c{i}", "skill", "completed", row[13], 1.0, None, '["out"]', None)
                for row in rows
                for i in range(STEPS)
            ],
        )


def analyze() -> None:
    """Statistics (and PostgreSQL's visibility map), as autovacuum keeps them after a
    load, and the run tallies compacted, as ``runs import`` leaves them."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    run_tallies_compact()


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


def timed(cookie: str, url: str, repeat: int, slow_repeat: int) -> list[float] | str:
    """The samples of ``url`` in milliseconds, or why the page failed."""
    started = time.perf_counter()
    try:
        status, _ = get(cookie, url)  # warm-up
    except Exception as error:  # reported; the other pages are still timed
        return f"{type(error).__name__}: {error}"[:200]
    if not status.startswith("200"):
        return status
    if time.perf_counter() - started > 1.0:
        repeat = slow_repeat
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        status, _ = get(cookie, url)
        samples.append((time.perf_counter() - started) * 1000)
        if not status.startswith("200"):
            return status
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def pages(runs: int, big: str) -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT run_id FROM runs_run ORDER BY created_at LIMIT 1 OFFSET %s",
            [min(5000, runs // 2)],
        )
        prefix = cursor.fetchone()[0][:6]
    # At a million runs "error 40008" is in the errors of runs 400,080-400,089 only
    # (failed: n % 100 in 80-89).
    rare = f"error {runs * 4 // 100 + 8}"
    last_page = min(1000, runs // 50)
    return [
        ("runs list", "/admin/runs/run/"),
        ("by status", "/admin/runs/run/?status=failed"),
        ("by blueprint", "/admin/runs/run/?blueprint=blueprint-07"),
        ("status + blueprint", "/admin/runs/run/?status=suspended&blueprint=blueprint-07"),
        ("id prefix search", f"/admin/runs/run/?q={prefix}"),
        ("search 'error' (all failed)", "/admin/runs/run/?" + urlencode({"q": "error"})),
        (f"search '{rare}'", "/admin/runs/run/?" + urlencode({"q": rare})),
        ("search 'timeout' (none)", "/admin/runs/run/?" + urlencode({"q": "timeout"})),
        ("search input 'ACME' (a tenth)", "/admin/runs/run/?" + urlencode({"q": "ACME"})),
        ("search input 'Hiring' (10 runs)", "/admin/runs/run/?" + urlencode({"q": "Hiring"})),
        ("search input 'demo' (a key)", "/admin/runs/run/?" + urlencode({"q": "demo"})),
        (f"page {last_page:,}", f"/admin/runs/run/?p={last_page}"),
        ("1,000-step run page", f"/admin/runs/run/{big}/change/"),
        ("dashboard", "/admin/"),
        ("approvals inbox", "/approvals/"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", default=str(ROOT), help="the checkout whose code is timed")
    parser.add_argument(
        "--db-name", required=True, help="the seeded database: a file (SQLite) or a name"
    )
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--slow-repeat", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the database, reuse a kept one")
    parser.add_argument("--seed-only", action="store_true", help="seed (or check) and stop")
    parser.add_argument("--only", help="comma-separated page names to time (default: all)")
    parser.add_argument("--json", help="write the samples here")
    args = parser.parse_args()

    print(f"code: {ROOT} ({connection.vendor}, database {args.db_name})")
    call_command("collectstatic", interactive=False, verbosity=0)  # pages link hashed names
    connection.settings_dict["TEST"]["NAME"] = args.db_name
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
            analyze()
        else:
            print(f"reusing the kept database of {args.runs:,} runs on {connection.vendor}")
            analyze()
        if args.seed_only:
            return
        user, _ = get_user_model().objects.get_or_create(
            username="bench", defaults={"is_superuser": True, "is_staff": True}
        )
        client = Client()
        client.force_login(user)  # for its session cookie
        cookie = (
            f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        )
        only = set(args.only.split(",")) if args.only else None
        results: dict[str, list[float] | str] = {}
        print(f"{'page':<34}{'median ms':>10}{'p95 ms':>10}{'n':>5}")
        for name, url in pages(args.runs, big):
            if only and name not in only:
                continue
            outcome = timed(cookie, url, args.repeat, args.slow_repeat)
            results[name] = outcome
            if isinstance(outcome, str):
                print(f"{name:<34}  failed: {outcome}")
            else:
                median, p95 = summary(outcome)
                print(f"{name:<34}{median:>10.1f}{p95:>10.1f}{len(outcome):>5}")
        if args.json:
            Path(args.json).write_text(
                json.dumps({"code": str(ROOT), "vendor": connection.vendor, "pages": results})
            )
    finally:
        if not args.keep:
            connection.creation.destroy_test_db(test_db, verbosity=0)


if __name__ == "__main__":
    main()
