"""The demo: `manage.py seed_demo` makes what `make run` promises."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Count
from django.test import Client

from runs.models import Decision, Run, RunAction
from runs.runtime import current_project
from tests.conftest import ROOT, log_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_project(settings: Any) -> None:
    settings.NEUROCORE_PROJECT_ROOT = ROOT / "examples" / "demo"
    current_project.cache_clear()


def test_seed_demo_makes_runs_in_every_status_once(demo_project: None) -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "Made 48 demo runs." in out.getvalue()
    assert "ada    demo-approver-pass" in out.getvalue()

    by_status = dict(Run.objects.values_list("status").annotate(n=Count("*")))
    assert by_status == {
        "completed": 27,
        "failed": 3,
        "rejected": 2,
        "suspended": 14,
        "cancelled": 1,
        "running": 1,
    }
    assert set(Run.objects.values_list("blueprint_name", flat=True)) == {
        "vendor-payment",
        "large-payment",
        "content-publication",
        "data-cleanup",
        "nightly-import",
    }
    waiting_gates = set(Run.objects.awaiting_decision().values_list("suspended_at_node", flat=True))
    assert waiting_gates == {"finance_approval", "editor_review", "legal_review"}
    assert Decision.objects.filter(approved=False).count() == 2
    assert RunAction.objects.filter(kind="cancel").count() == 1
    days = {run.created_at.date() for run in Run.objects.all()}
    assert len(days) >= 7  # spread over the last two weeks

    again = StringIO()
    call_command("seed_demo", stdout=again)
    assert "Demo runs already there: nothing added." in again.getvalue()
    assert Run.objects.count() == 48


@pytest.mark.parametrize(
    ("username", "password", "lands_on"),
    [
        ("ada", "demo-approver-pass", "/approvals/"),
        ("otto", "demo-operator-pass", "/admin/runs/run/"),
        ("vera", "demo-viewer-pass", "/admin/runs/run/"),
        ("admin", "demo-admin-pass", "/approvals/"),
    ],
)
def test_demo_users_log_in_with_the_printed_passwords(
    demo_project: None, username: str, password: str, lands_on: str
) -> None:
    call_command("seed_demo", stdout=StringIO())
    client = Client(enforce_csrf_checks=True)
    response = log_in(client, username, password)
    assert response.status_code == 302
    assert response["Location"] == "/"
    home = client.get("/")
    assert home["Location"] == lands_on  # each person lands in their place
    assert client.get(lands_on).status_code == 200


def test_the_worker_finds_no_task_of_the_seeding_left_to_skip(
    demo_project: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The seeding runs its tasks as a worker does: `make run`'s worker then has none of
    them to pick up and skip ("taken over or finished by another task; skipped")."""
    from django_tasks_db.models import DBTaskResult

    from tests.conftest import run_queued_tasks

    call_command("seed_demo", stdout=StringIO())
    assert DBTaskResult.objects.exists()
    assert not DBTaskResult.objects.exclude(status="SUCCESSFUL").exists()
    with caplog.at_level("INFO", logger="runs"):
        run_queued_tasks()
    assert "skipped" not in caplog.text
