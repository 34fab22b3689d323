"""The audits in the admin: decisions (with CSV), actions, bulk requests, access changes."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from runs import (
    converters,  # noqa: F401 — registers <run_id:…>
)
from runs.admin.base import Echo, ReadOnlyAdmin, csv_safe, instant_column
from runs.models import (
    AccessChange,
    BulkRequest,
    Decision,
    RunAction,
)
from runs.permissions import can_administer_access, can_delete, can_operate
from runs.presentation import access_change_summary, inert_text
from runs.selectors import id_prefix, storable

DECISION_CSV_COLUMNS = [
    ("decided_at", "decided_at"),
    ("run_id", "run_id"),
    ("gate", "gate"),
    ("decision", "approved"),
    ("decided_by", "decided_by_identity"),
    ("source", "source"),
    ("client_address", "client_address"),
    ("note", "note"),
    ("gate_message", "gate_message"),
    ("suspended_at", "suspended_at"),
    ("evidence_sha256", "evidence_digest"),
    # Added with approval policies, after the others: existing readers keep their columns.
    ("for", "on_behalf_of_identity"),
    ("answers", "answer_summary"),
    ("settled_the_gate", "settles"),
]


class RunIdPrefixSearch(ReadOnlyAdmin):
    """Search also finds the rows of runs whose id starts with the term (any length)."""

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term and storable(term):
            found = found | queryset.filter(id_prefix(term))
        return found, duplicates


@admin.register(Decision)
class DecisionAdmin(RunIdPrefixSearch):
    list_display = [
        "decided",
        "run",
        "gate",
        "verdict",
        "decider",
        "source",
        "note_shown",
    ]
    list_filter = ["approved", "source", "decided_at", "decided_by_identity"]
    search_fields = ["decided_by_identity", "note"]  # and a run id prefix: get_search_results
    date_hierarchy = "decided_at"
    actions = ["export_csv"]
    show_full_result_count = False

    decided = instant_column("decided_at", "Decided at")

    @admin.display(description="Decision", ordering="approved")
    def verdict(self, decision: Decision) -> str:
        return format_html(
            '<span class="badge verdict-{}">{}</span>', decision.verdict, decision.verdict.label
        )

    @admin.display(description="Run", ordering="run_id")
    def run(self, decision: Decision) -> str:
        return format_html(
            '<a href="{}"><code title="{}">{}</code></a>',
            reverse("approvals:review", args=[decision.run_id]),
            inert_text(decision.run_id),
            inert_text(decision.run_id[:12]),
        )

    @admin.display(description="By", ordering="decided_by_identity")
    def decider(self, decision: Decision) -> str:
        return decision.decider

    @admin.display(description="Note")
    def note_shown(self, decision: Decision) -> str:
        answers = decision.answer_summary
        return format_html(
            '<bdi class="note">{}</bdi>{}',
            Truncator(decision.note).chars(120),
            format_html('<p class="answers">{}</p>', answers) if answers else "",
        )

    @admin.action(description="Export selected decisions as CSV", permissions=["view"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[Decision]
    ) -> StreamingHttpResponse:
        writer = csv.writer(Echo())

        def rows() -> Iterator[str]:
            # A byte order mark first: spreadsheet programs then read the file as UTF-8.
            yield "\ufeff"
            yield writer.writerow([name for name, _ in DECISION_CSV_COLUMNS])
            for decision in queryset.order_by("decided_at").iterator():
                values = [getattr(decision, attr) for _, attr in DECISION_CSV_COLUMNS]
                values[3] = "approved" if decision.approved else "rejected"
                yield writer.writerow([csv_safe(value) for value in values])

        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="decisions.csv"'
        return response


@admin.register(BulkRequest)
class BulkRequestAdmin(ReadOnlyAdmin):
    """Actions on many runs: how far each got, and what was refused."""

    list_display = ["requested", "kind", "requested_by_identity", "state", "progress"]
    list_filter = ["state", "kind"]
    fields = readonly_fields = (
        "kind",
        "requested_by_identity",
        "requested_at",
        "state",
        "progress",
        "done",
        "refused",
        "refusal_list",
        "finished_at",
    )
    change_form_template = "admin/runs/bulkrequest/change_form.html"
    show_full_result_count = False

    requested = instant_column("requested_at", "Requested at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[BulkRequest]:
        return super().get_queryset(request).defer("run_ids")

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return can_operate(request.user) or can_delete(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    @admin.display(description="Progress")
    def progress(self, bulk: BulkRequest) -> str:
        return f"{bulk.position:,} of {bulk.total:,} runs ({bulk.percent} %)"

    @admin.display(description="Refused (the first 100)")
    def refusal_list(self, bulk: BulkRequest) -> str:
        return format_html_join(
            "", "<p><code>{}</code>: {}</p>", ((run_id[:12], why) for run_id, why in bulk.refusals)
        )


@admin.register(RunAction)
class RunActionAdmin(RunIdPrefixSearch):
    list_display = [
        "requested",
        "kind",
        "run_id",
        "requested_by_identity",
        "state",
        "attempts",
        "outcome_status",
    ]
    list_filter = ["kind", "state", "outcome_status"]
    search_fields = ["requested_by_identity"]  # and a run id prefix: get_search_results
    show_full_result_count = False

    requested = instant_column("requested_at", "Requested at")


@admin.register(AccessChange)
class AccessChangeAdmin(ReadOnlyAdmin):
    list_display = ["changed", "actor_identity", "kind", "target", "what_changed"]
    list_filter = ["kind", "target_type", "changed_at"]
    search_fields = ["actor_identity", "target"]
    date_hierarchy = "changed_at"
    show_full_result_count = False

    changed = instant_column("changed_at", "Changed at")

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return can_administer_access(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_administer_access(request.user)

    @admin.display(description="From → to")
    def what_changed(self, change: AccessChange) -> str:
        return access_change_summary(change)
