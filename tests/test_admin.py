"""The admin: every page loads, history is read-only, decisions export as CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from runs.models import Decision, Source
from runs.services.decisions import decision_record
from tests.conftest import make_user, start_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client_with_data(client: Client, superuser: Any) -> Client:
    approver = make_user("ada", "Approvers")
    run = start_run(amount=5)
    decision_record(
        run_id=run.run_id,
        approved=True,
        note='=HYPERLINK("http://evil")',
        shown_gate=run.suspended_at_node,
        shown_suspended_at=run.updated_at,
        actor=approver,
        source=Source.WEB,
        client_address="192.0.2.7",
    )
    client.force_login(superuser)
    return client


def test_every_registered_admin_page_loads(admin_client_with_data: Client) -> None:
    for model in admin.site._registry:
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert admin_client_with_data.get(changelist).status_code == 200, changelist
        obj = model.objects.first()
        if obj is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            assert admin_client_with_data.get(change).status_code == 200, change
    assert admin_client_with_data.get(reverse("admin:index")).status_code == 200


def test_decisions_cannot_be_added_changed_or_deleted_in_the_admin(
    admin_client_with_data: Client,
) -> None:
    decision = Decision.objects.get()
    add = reverse("admin:runs_decision_add")
    delete = reverse("admin:runs_decision_delete", args=[decision.pk])
    change = reverse("admin:runs_decision_change", args=[decision.pk])
    assert admin_client_with_data.get(add).status_code == 403
    assert admin_client_with_data.post(delete, {"post": "yes"}).status_code == 403
    admin_client_with_data.post(change, {"note": "rewritten"})
    assert Decision.objects.get().note == '=HYPERLINK("http://evil")'


def test_decisions_export_as_csv_safe_for_spreadsheets(admin_client_with_data: Client) -> None:
    decision = Decision.objects.get()
    response = admin_client_with_data.post(
        reverse("admin:runs_decision_changelist"),
        {"action": "export_csv", "_selected_action": [decision.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    assert text.startswith("\ufeff")  # spreadsheet programs read it as UTF-8
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    header, row = rows
    assert header[:6] == ["decided_at", "run_id", "gate", "decision", "decided_by", "source"]
    record = dict(zip(header, row, strict=True))
    assert record["decision"] == "approved"
    assert record["decided_by"] == "ada@example.com"
    assert record["client_address"] == "192.0.2.7"
    assert record["note"] == '\'=HYPERLINK("http://evil")'  # not a formula
    assert len(record["evidence_sha256"]) == 64


def test_decision_list_filters(admin_client_with_data: Client) -> None:
    url = reverse("admin:runs_decision_changelist")
    assert admin_client_with_data.get(url, {"approved__exact": "1"}).context["cl"].result_count == 1
    assert admin_client_with_data.get(url, {"approved__exact": "0"}).context["cl"].result_count == 0
    by_ada = admin_client_with_data.get(url, {"decided_by_identity": "ada@example.com"})
    assert by_ada.context["cl"].result_count == 1


def test_admin_pages_show_the_waiting_count(client: Client, superuser: Any) -> None:
    start_run()
    client.force_login(superuser)
    html = client.get(reverse("admin:index")).content.decode()
    assert '<span class="count" title="Runs waiting for your decision">1</span>' in html
