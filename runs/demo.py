"""Demo data: people in every role and runs in every status, made by NeuroCore itself.

Used by ``manage.py seed_demo`` (``make run``). The runs come from the demo
project's blueprints executed through NeuroCore with ``DjangoRunStore``;
decisions, resumes and cancellations go through the console's services and are
carried out as the worker would. Runs are then spread over the last two weeks
(decisions keep the time they were really taken: the audit is append-only).
"""

from __future__ import annotations

import contextlib
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import F
from django_tasks_db.management.commands.db_worker import Worker
from neurocore.errors import NeuroCoreError

from runs import runtime
from runs.models import Run, Source, Step
from runs.runtime import NeuroCoreProject, current_project
from runs.services.access import (
    group_provision,
    user_exists,
    user_provision,
    user_superuser_set,
)
from runs.services.decisions import decision_record
from runs.services.operations import run_cancel
from runs.store import DjangoRunStore

DEMO_MARKER = "demo"  # every demo run's initial data carries {"demo": true}
DEMO_IDENTITY = "make run (demo seed)"  # who the access audit says created the demo users
SPREAD_DAYS = 14


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str | None
    superuser: bool = False
    teams: tuple[str, ...] = ()


# The teams an approval policy names (large-payment.yaml: two of Finance).
DEMO_TEAMS = ["Finance", "Finance leads"]
DEMO_USERS = [
    DemoUser("admin", "demo-admin-pass", None, superuser=True),
    DemoUser("ada", "demo-approver-pass", "Approvers", teams=("Finance",)),
    DemoUser("bob", "demo-approver-pass", "Approvers", teams=("Finance",)),
    DemoUser("otto", "demo-operator-pass", "Operators"),
    DemoUser("vera", "demo-viewer-pass", "Viewers"),
]

VENDORS = ["ACME GmbH", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Hooli"]
TOPICS = ["Q3 results", "New pricing", "Security update", "Hiring plan", "Roadmap 2027"]
TABLES = ["customers", "orders", "invoices", "tickets"]


def demo_seeded() -> bool:
    """Whether the demo runs are there already (seeding is idempotent)."""
    return Run.objects.filter(initial_data__demo=True).exists()


def create_demo_users() -> list[DemoUser]:
    """Create the demo users with their roles, through the access services (so the
    access audit records them); return them. A password someone changed since is
    left alone."""
    for team in DEMO_TEAMS:
        group_provision(name=team, identity=DEMO_IDENTITY)
    for demo in DEMO_USERS:
        user, _ = user_provision(
            username=demo.username,
            email=f"{demo.username}@example.com",
            groups=([demo.role] if demo.role else []) + list(demo.teams),
            password=None if user_exists(demo.username) else demo.password,
            identity=DEMO_IDENTITY,
        )
        user_superuser_set(user=user, superuser=demo.superuser, actor=None, identity=DEMO_IDENTITY)
    return DEMO_USERS


def seed_demo_runs(*, seed: int = 7) -> int:
    """Run the demo blueprints into every status; return how many runs were made."""
    rng = random.Random(seed)  # noqa: S311 — demo data, not secrets
    project = current_project()
    approver = get_user_model().objects.get(username="ada")
    operator = get_user_model().objects.get(username="otto")
    made: list[Run] = []

    def start(blueprint: str, data: dict[str, Any]) -> Run:
        run = _execute(project, blueprint, {**data, DEMO_MARKER: True})
        made.append(run)
        return run

    def decide(run: Run, *, approved: bool, note: str) -> None:
        run.refresh_from_db()
        decision_record(
            run_id=run.run_id,
            approved=approved,
            note=note,
            shown_gate=run.suspended_at_node or "",
            shown_suspended_at=run.updated_at,
            actor=approver,
            source=Source.WEB,
            client_address="127.0.0.1",
        )
        _work_off_queue()

    for n in range(14):
        invoice = {"vendor": rng.choice(VENDORS), "amount": rng.choice([420, 1200, 8800, 15400])}
        run = start("payment.yaml", {"invoice": {**invoice, "number": f"INV-{2400 + n}"}})
        if n < 7:
            decide(run, approved=True, note="Matches the purchase order.")
        elif n < 9:
            decide(run, approved=False, note="Duplicate of an invoice already paid.")
        elif n == 9:
            run_cancel(run_id=run.run_id, actor=operator, source=Source.WEB)
    for n, topic in enumerate(TOPICS * 2):
        run = start("publication.yaml", {"topic": topic})
        if n < 6:
            decide(run, approved=True, note="Reads well.")
        if n < 3:
            decide(run, approved=True, note="No legal concerns.")
    for n in range(10):
        start("data_cleanup.yaml", {"table": TABLES[n % len(TABLES)], "rows": 1000 * (n + 2)})
    flag = _upstream_flag(project)
    for n in range(10):
        flag.parent.mkdir(parents=True, exist_ok=True)
        if n in (2, 5, 8):
            flag.touch()
        start("nightly_import.yaml", {"source": "crm", "night": n})
        flag.unlink(missing_ok=True)
    made.append(_running_run(project))
    _spread_over_days(made, rng)
    # Large payments, made last and left recent (their gate expires after three days):
    # two of Finance approve, never whoever requested it.
    large = []
    for n, requester in enumerate(["vera@example.com", "ada@example.com", "otto@example.com"]):
        invoice = {"vendor": VENDORS[n], "amount": 48000 + 1000 * n, "number": f"LP-{n + 1}"}
        run = _execute(
            project,
            "large_payment.yaml",
            {"invoice": invoice, "requested_by": requester, DEMO_MARKER: True},
        )
        large.append(run)
        if n == 0:  # one approval in: it waits for a second person (bob)
            run.refresh_from_db()
            decision_record(
                run_id=run.run_id,
                approved=True,
                note="Checked against the contract.",
                shown_gate=run.suspended_at_node or "",
                shown_suspended_at=run.updated_at,
                actor=approver,
                source=Source.WEB,
                client_address="127.0.0.1",
                answers={"cost_center": "CC-4100", "amount_approved": invoice["amount"]},
            )
    return len(made) + len(large)


def _execute(project: NeuroCoreProject, blueprint: str, data: dict[str, Any]) -> Run:
    with contextlib.suppress(NeuroCoreError):  # a failure is recorded on the run
        runtime.execute(blueprint, data, project=project)
    run = Run.objects.order_by("-created_at").first()
    if run is None:
        raise RuntimeError(f"NeuroCore recorded no run of {blueprint}.")
    return run


def _work_off_queue() -> None:
    """Run the queued tasks here, as ``db_worker --batch`` does: each task is marked
    done, so the worker that ``make run`` starts next finds none left to skip."""
    Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="seed-demo",
        excluded_queue_names=[],
    ).run()


def _upstream_flag(project: NeuroCoreProject) -> Any:
    return project.root / "data" / "upstream-down.flag"


def _running_run(project: NeuroCoreProject) -> Run:
    """A run an agent is executing right now (saved as NeuroCore saves it first)."""
    from neurocore.persistence import RunRecord

    blueprint = project.blueprint("data_cleanup.yaml")
    record = RunRecord(
        run_id=uuid.uuid4().hex,
        blueprint_name=blueprint.name,
        blueprint_version=blueprint.version,
        blueprint_snapshot=blueprint.model_dump(),
        flow_type=blueprint.flow.type,
        initial_data={"table": "events", "rows": 250_000, DEMO_MARKER: True},
    )
    DjangoRunStore().save_run(record)
    return Run.objects.get(pk=record.run_id)


def _spread_over_days(runs: list[Run], rng: random.Random) -> None:
    """Move each run back to a moment of the last two weeks.

    A run somebody decided keeps what happened since the first decision (taken
    now, and the audit cannot be backdated): it started earlier and waited.
    """
    for run in runs:
        age = timedelta(days=rng.uniform(0.1, SPREAD_DAYS), minutes=rng.uniform(0, 60))
        if run.status == Run.Status.RUNNING:
            age = timedelta(minutes=3)
        first_decision = run.decisions.order_by("decided_at").first()
        steps = Step.objects.filter(run_id=run.pk)
        if first_decision is None:
            Run.objects.filter(pk=run.pk).update(
                created_at=F("created_at") - age, updated_at=F("updated_at") - age
            )
        else:
            Run.objects.filter(pk=run.pk).update(created_at=F("created_at") - age)
            steps = steps.filter(started_at__lt=first_decision.decided_at)
        steps.update(started_at=F("started_at") - age)
