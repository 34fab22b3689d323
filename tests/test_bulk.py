"""Actions on "all N runs matching the filter": a confirmation of the count, a worker."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from runs.models import BulkRequest, Run, RunAction
from runs.services.bulk import bulk_requests_process
from runs.store import UPSERT_RUN, format_timestamp, run_values
from tests.conftest import make_user
from tests.test_store import make_run

pytestmark = pytest.mark.django_db

RUNS = "/admin/runs/run/"


def seed(count: int, *, status: str = "running", blueprint: str = "nightly") -> None:
    """``count`` runs written as an import writes them (fast, through the tally triggers)."""
    start = timezone.now() - timedelta(days=1)
    rows = [
        run_values(
            make_run(
                run_id=f"{blueprint}-{status}-{n:06d}",
                blueprint_name=blueprint,
                status=status,
                created_at=format_timestamp(start + timedelta(seconds=n)),
            )
        )
        for n in range(count)
    ]
    for at in range(0, count, 5000):
        UPSERT_RUN.execute_many(rows[at : at + 5000], "default")


@pytest.fixture
def operator_client(client: Client) -> Client:
    client.force_login(make_user("otto", "Operators"))
    return client


def form_fields(html: str) -> int:
    return len(re.findall(r"<(?:input|textarea|select)\b", html))


def test_all_1200_runs_are_cancelled_from_a_confirmation_of_a_few_fields(
    operator_client: Client,
) -> None:
    seed(1_150)
    seed(50, status="completed")
    # What the browser sends: "select all", the page's checked boxes, the action.
    action = {
        "action": "cancel_runs",
        "select_across": "1",
        "index": "0",
        "_selected_action": ["nightly-running-001149"],
    }
    page = operator_client.post(f"{RUNS}?blueprint=nightly", action)
    html = page.content.decode()
    assert page.status_code == 200
    assert "Cancel all 1,200 runs matching the filter?" in html
    assert "1,150 running, 50 completed" in html
    assert form_fields(html) < 20  # not one per run (1,203 before: a 400)
    assert not RunAction.objects.exists()  # nothing before confirming

    response = operator_client.post(f"{RUNS}?blueprint=nightly", {**action, "confirm": "yes"})
    bulk = BulkRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/runs/bulkrequest/{bulk.pk}/change/"
    assert (bulk.kind, bulk.total, bulk.state) == ("cancel", 1_200, "queued")

    assert bulk_requests_process() == 1_200  # what a worker's bulk thread does
    bulk.refresh_from_db()
    assert (bulk.state, bulk.position, bulk.done, bulk.refused) == ("done", 1_200, 1_150, 50)
    assert len(bulk.refusals) == 50
    assert "only waiting or running runs can be cancelled" in bulk.refusals[0][1]
    assert Run.objects.filter(status="cancelled").count() == 1_150
    assert (
        RunAction.objects.filter(kind="cancel", requested_by_identity="otto@example.com").count()
        == 1_150
    )
    progress = operator_client.get(response["Location"])
    assert "1,200 of 1,200 runs (100 %)" in progress.content.decode()


def test_100000_selected_runs_are_confirmed_and_recorded_in_one_request(
    operator_client: Client,
) -> None:
    seed(100_000)
    action = {
        "action": "cancel_runs",
        "select_across": "1",
        "index": "0",
        "_selected_action": ["nightly-running-099999"],
    }
    page = operator_client.post(RUNS, action)
    html = page.content.decode()
    assert "Cancel all 100,000 runs matching the filter?" in html
    assert form_fields(html) < 20
    operator_client.post(RUNS, {**action, "confirm": "yes"})
    bulk = BulkRequest.objects.get()
    assert bulk.total == len(bulk.run_ids) == 100_000
    assert bulk.run_ids[0] == "nightly-running-099999"  # newest first, as listed


def test_a_viewer_may_not_ask_for_a_bulk_action(client: Client, viewer: Any) -> None:
    seed(60)
    client.force_login(viewer)
    response = client.post(RUNS, {"action": "cancel_runs", "select_across": "1", "confirm": "yes"})
    assert response.status_code == 200  # the list: no action a viewer may take
    assert not BulkRequest.objects.exists()
