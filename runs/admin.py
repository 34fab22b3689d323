"""The console's admin: runs (read-only history) and the approval audit."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ALL_VAR, ORDER_VAR, PAGE_VAR, ChangeList
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from runs import (
    converters,  # noqa: F401 — registers <run_id:…>
    selectors,
)
from runs.filters import (
    BlueprintFilter,
    CreatedFilter,
    FlowTypeFilter,
    HasErrorFilter,
    StatusFilter,
)
from runs.forms import ResumeDataForm
from runs.models import (
    AccessChange,
    BlueprintScope,
    BulkRequest,
    Decision,
    Run,
    RunAction,
    Source,
)
from runs.permissions import can_administer_access, can_delete, can_operate
from runs.presentation import human_duration, pretty_json
from runs.services.access import access_change_record
from runs.services.bulk import bulk_request_create
from runs.services.operations import runs_act


class ConsoleChangeList(ChangeList):
    """Django's change list, with out-of-range dates in the date hierarchy refused.

    Django 6.1.3 answers 500 for ``?decided_at__year=9999`` (fixed upstream
    after that release) and for a year too large for a C long: both are a bad
    parameter, shown as Django shows one (the list, unfiltered, with ``?e=1``).
    """

    def get_filters(self, request: HttpRequest) -> Any:
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error


class ConsoleModelAdmin(admin.ModelAdmin):
    """What every admin of the console shares: its change list."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ConsoleChangeList


class ReadOnlyAdmin(ConsoleModelAdmin):
    """History is never edited: no add, change or delete through the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class RunPaginator(Paginator):
    """Pages of runs that stay fast among a million.

    The count is ``known_count`` when given (the runs' tally), else at most
    ``CAP`` runs counted from an index: "more than 100,000 runs". A page reads
    its run ids from the listing index first, so an OFFSET skips index
    entries, not rows, then reads those runs by key.
    """

    CAP = 100_000

    def __init__(self, *args: Any, known_count: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.known_count = known_count

    @cached_property
    def count(self) -> int:
        if self.known_count is not None:
            return self.known_count
        # Only keys, unordered: the count reads an index, not the rows.
        return self.object_list.order_by().values("pk")[: self.CAP + 1].count()

    @property
    def capped(self) -> bool:
        return self.known_count is None and self.count > self.CAP

    @property
    def summary(self) -> str:
        """The count in words: 1,234 runs, or more than 100,000 when counting stopped there."""
        if self.capped:
            return f"more than {self.CAP:,} runs (narrow the list with the filters)"
        return f"{self.count:,} run{'' if self.count == 1 else 's'}"

    def _get_page(self, object_list: QuerySet[Run], *args: Any, **kwargs: Any) -> Page:
        """Django's hook for the page of runs ``object_list`` (the list, sliced)."""
        ids = list(object_list.values_list("pk", flat=True))
        runs = self.object_list.in_bulk(ids)
        return super()._get_page(
            [runs[run_id] for run_id in ids if run_id in runs], *args, **kwargs
        )


class RunChangeList(ConsoleChangeList):
    """Counts the steps of the page's runs only, in one query after paging.

    A per-row count in the listing query would be computed for every row an
    OFFSET skips too (50,000 of them on page 1,000).
    """

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        counts = selectors.step_counts([run.run_id for run in self.result_list])
        for run in self.result_list:
            run.step_count = counts.get(run.run_id, 0)


STEPS_PAGE_VAR = "steps"  # the run page's parameter: which page of its steps


def steps_page_link(request: HttpRequest) -> str:
    """The run page's address without its steps page, ready for one: ``?…&steps=``
    (the list's filters it came from, ``_changelist_filters``, are kept)."""
    others = request.GET.copy()
    others.pop(STEPS_PAGE_VAR, None)
    return f"?{others.urlencode()}{'&' if others else ''}{STEPS_PAGE_VAR}="


BULK_SAMPLE = 20  # runs shown (and checked) on the confirmation of "all N runs"

# The actions a run's page offers, each when the rules allow it.
ADMIN_RUN_ACTIONS = [
    RunAction.Kind.RESUME,
    RunAction.Kind.REPLAY,
    RunAction.Kind.CANCEL,
    RunAction.Kind.DELETE,
]

# The query parameters the runs list's filters read.
RUN_FILTER_PARAMETERS = frozenset(
    {
        StatusFilter.parameter_name,
        BlueprintFilter.parameter_name,
        FlowTypeFilter.parameter_name,
        HasErrorFilter.parameter_name,
        *CreatedFilter.PARAMETERS,
    }
)

# The list's query parameters that leave its count equal to a tally.
TALLIED_PARAMETERS = {StatusFilter.parameter_name, PAGE_VAR, ORDER_VAR, ALL_VAR}


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    """Every run: newest first, filtered and searched through indexes; a read-only page each."""

    list_display = [
        "short_id",
        "blueprint",
        "status_badge",
        "step_count",
        "duration",
        "created",
        "waiting_at",
    ]
    list_filter = [
        StatusFilter,
        BlueprintFilter,
        FlowTypeFilter,
        CreatedFilter,
        HasErrorFilter,
    ]
    search_fields = ["run_id"]  # see get_search_results
    search_help_text = "A run id or its first characters, a blueprint name, or text in the error."
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    change_form_template = "admin/runs/run/detail.html"
    actions = ["resume_runs", "replay_runs", "cancel_runs", "delete_runs"]

    # -- actions on runs: each through its service, after a confirmation page --------
    @admin.action(description="Resume selected runs", permissions=["operate"])
    def resume_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> Any:
        return self._confirm_and_run(request, queryset, RunAction.Kind.RESUME)

    @admin.action(description="Replay selected runs", permissions=["operate"])
    def replay_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> Any:
        return self._confirm_and_run(request, queryset, RunAction.Kind.REPLAY)

    @admin.action(description="Cancel selected runs", permissions=["operate"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> Any:
        return self._confirm_and_run(request, queryset, RunAction.Kind.CANCEL)

    @admin.action(description="Delete selected runs", permissions=["remove"])
    def delete_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> Any:
        return self._confirm_and_run(request, queryset, RunAction.Kind.DELETE)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return can_operate(request.user)

    def has_remove_permission(self, request: HttpRequest) -> bool:
        return can_delete(request.user)

    def get_urls(self) -> list[Any]:
        act = self.admin_site.admin_view(self.act_view)
        return [
            path("<run_id:object_id>/act/<str:kind>/", act, name="runs_run_act"),
            *super().get_urls(),
        ]

    def act_view(self, request: HttpRequest, object_id: str, kind: str) -> Any:
        """One action on one run, from its page: the same confirmation and services."""
        if kind not in ADMIN_RUN_ACTIONS:  # decisions and reopenings are the review page's
            raise Http404("No such action.")
        queryset = Run.objects.filter(pk=object_id)
        if not queryset.exists():
            raise Http404(f"No run has the id “{object_id}”.")
        return self._confirm_and_run(request, queryset, kind, single=True)

    def _confirm_and_run(
        self, request: HttpRequest, queryset: QuerySet[Run], kind: str, *, single: bool = False
    ) -> Any:
        allowed = can_delete if kind == RunAction.Kind.DELETE else can_operate
        if not allowed(request.user):
            raise PermissionDenied("You may not do this to runs.")
        if not single and request.POST.get("select_across") == "1":
            return self._confirm_bulk(request, queryset, kind)
        runs = list(
            queryset.order_by("-created_at").only(
                "run_id",
                "blueprint_name",
                "status",
                "suspended_at_node",
                "awaits_decision",
                "updated_at",
            )
        )
        if not runs:  # deleted meanwhile (by someone else, or in another tab)
            self.message_user(
                request, "The selected runs no longer exist. Nothing was done.", messages.WARNING
            )
            return redirect("admin:runs_run_changelist")
        form = ResumeDataForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and (kind != RunAction.Kind.RESUME or form.is_valid()):
            resume_data = (
                form.cleaned_data.get("resume_data") if kind == RunAction.Kind.RESUME else None
            )
            done, refused = runs_act(
                kind=kind,
                run_ids=[run.run_id for run in runs],
                actor=request.user,
                source=Source.WEB,
                resume_data=resume_data,
            )
            verb = RunAction.Kind(kind).label.lower()
            queued = kind in RunAction.BACKGROUND_KINDS
            if done:
                outcome = "queued for the worker" if queued else "done"
                self.message_user(
                    request, f"{len(done)} run(s): {verb} {outcome}.", messages.SUCCESS
                )
            for run_id, reason in refused:
                self.message_user(request, f"Run {run_id[:12]}: {reason}", messages.ERROR)
            if single and kind != RunAction.Kind.DELETE:
                return redirect("admin:runs_run_change", quote(runs[0].run_id))
            return redirect("admin:runs_run_changelist")
        preview = selectors.action_preview(kind, runs, request.user)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{RunAction.Kind(kind).label} {len(preview.allowed)} run(s)?",
            "preview": preview,
            "kind": kind,
            "form": form if kind == RunAction.Kind.RESUME else None,
            "action_name": request.POST.get("action", ""),
            "selected": [run.run_id for run in runs],
            "opts": self.model._meta,
            "single": single,
            "back_run_id": runs[0].run_id,
        }
        return TemplateResponse(request, "admin/runs/run/confirm_action.html", context)

    def _confirm_bulk(self, request: HttpRequest, queryset: QuerySet[Run], kind: str) -> Any:
        """ "All N runs matching the filter": a count, a sample and what it will refuse;
        once confirmed, a bulk request for the worker, followed on its own page."""
        form = ResumeDataForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and (kind != RunAction.Kind.RESUME or form.is_valid()):
            bulk = bulk_request_create(
                kind=kind,
                run_ids=list(
                    queryset.order_by("-created_at", "-run_id").values_list("pk", flat=True)
                ),
                actor=request.user,
                source=Source.WEB,
                resume_data=form.cleaned_data.get("resume_data")
                if kind == RunAction.Kind.RESUME
                else None,
            )
            self.message_user(
                request,
                f"{bulk.total:,} runs: {RunAction.Kind(kind).label.lower()} queued for the "
                "worker, one run at a time. This page follows it.",
                messages.SUCCESS,
            )
            return redirect("admin:runs_bulkrequest_change", bulk.pk)
        sample = list(queryset.order_by("-created_at", "-run_id")[:BULK_SAMPLE])
        if not sample:
            self.message_user(request, "No run matches the filter now. Nothing was done.")
            return redirect("admin:runs_run_changelist")
        total = queryset.count()
        context = {
            **self.admin_site.each_context(request),
            "title": f"{RunAction.Kind(kind).label} all {total:,} runs matching the filter?",
            "total": f"{total:,}",
            "sample_size": len(sample),
            "first_run_id": sample[0].run_id,
            "by_status": selectors.status_breakdown(queryset),
            "preview": selectors.action_preview(kind, sample, request.user),
            "kind": kind,
            "form": form if kind == RunAction.Kind.RESUME else None,
            "action_name": request.POST.get("action", ""),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/runs/run/confirm_bulk.html", context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Run]:
        return (
            super()
            .get_queryset(request)
            .defer("blueprint_snapshot", "initial_data", "final_context")
        )

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        """Only the list's own filters filter runs: another parameter (``?steps=1``, a
        field lookup) is refused with a 400, not run against the database."""
        return lookup in RUN_FILTER_PARAMETERS

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RunChangeList

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Run],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> RunPaginator:
        """Unfiltered or filtered by status only, the list is counted by the runs' tally
        (every viewer sees every run, so the tally is the list's count)."""
        given = {name for name, value in request.GET.items() if value}
        known_count = (
            selectors.run_count(status=request.GET.get(StatusFilter.parameter_name) or None)
            if given <= TALLIED_PARAMETERS
            else None
        )
        return RunPaginator(
            queryset, per_page, orphans, allow_empty_first_page, known_count=known_count
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Run], search_term: str
    ) -> tuple[QuerySet[Run], bool]:
        return selectors.runs_matching(queryset, search_term.strip()), False

    @admin.display(description="Run", ordering="run_id")
    def short_id(self, run: Run) -> str:
        return format_html('<code title="{}">{}</code>', run.run_id, run.run_id[:12])

    @admin.display(description="Blueprint", ordering="blueprint_name")
    def blueprint(self, run: Run) -> str:
        return format_html(
            '{} <span class="quiet">v{}</span>', run.blueprint_name, run.blueprint_version
        )

    @admin.display(description="Status", ordering="status")
    def status_badge(self, run: Run) -> str:
        return format_html(
            '<span class="badge status-{}">{}</span>', run.status, run.get_status_display()
        )

    @admin.display(description="Steps")
    def step_count(self, run: Run) -> int:
        return run.step_count

    @admin.display(description="Duration", ordering="duration_ms")
    def duration(self, run: Run) -> str:
        return human_duration(run.duration_ms)

    @admin.display(description="Created", ordering="created_at")
    def created(self, run: Run) -> str:
        return format_html(
            '<time datetime="{}" title="{}">{} ago</time>',
            run.created_at.isoformat(),
            run.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            timesince(run.created_at),
        )

    @admin.display(description="Waiting at")
    def waiting_at(self, run: Run) -> str:
        suspension = run.suspension
        return suspension.gate if suspension else ""

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        run = self.get_object(request, unquote(object_id))
        if run is None or not self.has_view_permission(request, run):
            return super().change_view(request, object_id, form_url, extra_context)
        detail = selectors.run_detail(run, steps_page=request.GET.get(STEPS_PAGE_VAR))
        in_flight = next((a for a in detail.actions if a.is_open), None)
        available = selectors.action_preview  # the same rules the services apply
        context = {
            **(extra_context or {}),
            "detail": detail,
            "suspension": run.suspension,
            "in_flight": in_flight,
            "refreshing": in_flight is not None,
            "actions": [
                (kind, RunAction.Kind(kind).label)
                for kind in ADMIN_RUN_ACTIONS
                if available(
                    kind,
                    [run],
                    request.user,
                    open_actions={run.run_id: in_flight} if in_flight else {},
                ).allowed
            ],
            "duration": human_duration(run.duration_ms),
            "initial_json": pretty_json(run.initial_data),
            "final_json": pretty_json(run.final_context) if run.final_context is not None else "",
            "snapshot_json": pretty_json(run.blueprint_snapshot),
            "step_rows": [
                (step, human_duration(step.duration_ms), pretty_json(step.context_snapshot))
                for step in detail.steps
            ],
            "steps_page_link": steps_page_link(request),
        }
        return super().change_view(request, object_id, form_url, context)


def csv_safe(value: object) -> object:
    """Keep a spreadsheet from reading a stored text as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose write returns the line, for streaming CSV."""

    def write(self, value: str) -> str:
        return value


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
]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ["decided_at", "run_id", "gate", "verdict", "decided_by_identity", "source"]
    list_filter = ["approved", "source", "decided_at", "decided_by_identity"]
    search_fields = ["=run__run_id", "decided_by_identity", "note"]
    date_hierarchy = "decided_at"
    actions = ["export_csv"]
    show_full_result_count = False

    @admin.display(description="Decision", ordering="approved")
    def verdict(self, decision: Decision) -> str:
        return "approved" if decision.approved else "rejected"

    @admin.action(description="Export selected decisions as CSV", permissions=["view"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[Decision]
    ) -> StreamingHttpResponse:
        writer = csv.writer(_Echo())

        def rows() -> Iterator[str]:
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

    list_display = ["requested_at", "kind", "requested_by_identity", "state", "progress"]
    list_filter = ["state", "kind"]
    fields = [
        "kind",
        "requested_by_identity",
        "requested_at",
        "state",
        "progress",
        "done",
        "refused",
        "refusal_list",
        "finished_at",
    ]
    readonly_fields = fields
    change_form_template = "admin/runs/bulkrequest/change_form.html"
    show_full_result_count = False

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
class RunActionAdmin(ReadOnlyAdmin):
    list_display = [
        "requested_at",
        "run_id",
        "requested_by_identity",
        "state",
        "attempts",
        "outcome_status",
    ]
    list_filter = ["state", "outcome_status"]
    search_fields = ["=run__run_id"]
    show_full_result_count = False


class AccessAuditedAdmin(ConsoleModelAdmin):
    """Records every addition, change and deletion made here in the access audit."""

    audit_type = ""

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)
        self._audit(request, "added", obj, message)
        return entry

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        self._audit(request, "changed", obj, message)
        return entry

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        for obj in queryset:
            self._audit(request, "deleted", obj, [])
        return super().log_deletions(request, queryset)

    def _audit(self, request: HttpRequest, action: str, obj: Any, message: Any) -> None:
        access_change_record(
            actor=request.user,
            action=action,
            target_type=self.audit_type,
            target=str(obj),
            details={"change": message} if message else {},
        )


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class ConsoleUserAdmin(AccessAuditedAdmin, UserAdmin):
    audit_type = "user"


@admin.register(Group)
class ConsoleGroupAdmin(AccessAuditedAdmin, GroupAdmin):
    audit_type = "group"


@admin.register(BlueprintScope)
class BlueprintScopeAdmin(AccessAuditedAdmin):
    audit_type = "blueprint scope"
    list_display = ["pattern", "action", "group_names", "note"]
    list_filter = ["action", "groups"]
    search_fields = ["pattern"]
    filter_horizontal = ["groups"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BlueprintScope]:
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="Groups")
    def group_names(self, scope: BlueprintScope) -> str:
        return ", ".join(group.name for group in scope.groups.all())


@admin.register(AccessChange)
class AccessChangeAdmin(ReadOnlyAdmin):
    list_display = ["changed_at", "actor_identity", "action", "target_type", "target"]
    list_filter = ["target_type", "action", "changed_at"]
    search_fields = ["actor_identity", "target"]
    date_hierarchy = "changed_at"
    show_full_result_count = False

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return can_administer_access(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_administer_access(request.user)
