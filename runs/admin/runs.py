"""Every run: newest first, filtered and searched through indexes; a read-only page
each, and operators' actions after a confirmation page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import Truncator

from runs import (
    converters,  # noqa: F401 — registers <run_id:…>
    selectors,
)
from runs.admin.base import ReadOnlyAdmin, instant_column
from runs.admin.listing import (
    ADMIN_RUN_ACTIONS,
    BULK_SAMPLE,
    RUN_FILTER_PARAMETERS,
    STEPS_PAGE_VAR,
    TALLIED_PARAMETERS,
    RunChangeList,
    RunPaginator,
    steps_page_link,
)
from runs.converters import DOT_SEGMENTS, quote_run_id
from runs.filters import (
    BlueprintFilter,
    CreatedFilter,
    FlowTypeFilter,
    HasErrorFilter,
    StatusFilter,
)
from runs.forms import ResumeDataForm
from runs.models import (
    Run,
    RunAction,
    Source,
)
from runs.permissions import can_delete, can_operate, signed_in
from runs.presentation import human_duration, inert_text, pretty_json, step_rows
from runs.services.bulk import bulk_request_create
from runs.services.operations import runs_act


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
                actor=signed_in(request.user),
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
                return redirect("admin:runs_run_change", quote_run_id(runs[0].run_id))
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
                actor=signed_in(request.user),
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
        when that is the count of what this person sees (``selectors.listed_run_count``)."""
        given = {name for name, value in request.GET.items() if value}
        known_count = (
            selectors.listed_run_count(
                request.user, status=request.GET.get(StatusFilter.parameter_name) or None
            )
            if given <= TALLIED_PARAMETERS
            else None
        )
        searched = bool(request.GET.get(SEARCH_VAR, "").strip())
        return RunPaginator(
            queryset,
            per_page,
            orphans,
            allow_empty_first_page,
            known_count=known_count,
            cap=RunPaginator.SEARCH_CAP if searched else None,
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Run], search_term: str
    ) -> tuple[QuerySet[Run], bool]:
        return selectors.runs_matching(queryset, search_term.strip()), False

    @admin.display(description="Run", ordering="run_id")
    def short_id(self, run: Run) -> str:
        return format_html(
            '<code title="{}">{}</code>', inert_text(run.run_id), inert_text(run.run_id[:12])
        )

    @admin.display(description="Blueprint", ordering="blueprint_name")
    def blueprint(self, run: Run) -> str:
        return format_html(
            '{} <span class="quiet">v{}</span>',
            inert_text(run.blueprint_name),
            inert_text(run.blueprint_version),
        )

    @admin.display(description="Status", ordering="status")
    def status_badge(self, run: Run) -> str:
        badge = format_html(
            '<span class="badge status-{}">{}</span>', run.status, run.get_status_display()
        )
        stall = run.stall
        if stall is None:
            return badge
        return format_html(
            '{}<span class="stall-note" title="{}">{}</span>', badge, stall.explanation, stall.label
        )

    @admin.display(description="Steps")
    def step_count(self, run: Run) -> int:
        return run.step_count

    @admin.display(description="Duration", ordering="duration_ms")
    def duration(self, run: Run) -> str:
        return human_duration(run.duration_ms)

    created = instant_column("created_at", "Created")

    def get_list_display(self, request: HttpRequest) -> Any:
        """The failed and rejected runs show their error: it is why one looks at them."""
        columns = list(super().get_list_display(request))
        if request.GET.get(StatusFilter.parameter_name) in (Run.Status.FAILED, Run.Status.REJECTED):
            columns.insert(columns.index("waiting_at"), "error_shown")
        return columns

    @admin.display(description="Error")
    def error_shown(self, run: Run) -> str:
        return inert_text(Truncator(run.error or "").chars(140))

    @admin.display(description="Waiting at")
    def waiting_at(self, run: Run) -> str:
        suspension = run.suspension
        return suspension.gate if suspension else ""

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        """The run an admin URL names: its id unquoted, "_2E"/"_2E_2E" being "."/".."
        (``quote_run_id``) unless a run has that very id."""
        run = super().get_object(request, object_id, from_field)
        if run is None and object_id in DOT_SEGMENTS:
            run = super().get_object(request, DOT_SEGMENTS[object_id], from_field)
        return run

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        run = self.get_object(request, unquote(object_id))
        if run is None and self.has_view_permission(request):
            found, ambiguous = selectors.run_for_short_id(unquote(object_id))
            if found is not None:  # the 12 characters shown everywhere open the run
                return redirect("admin:runs_run_change", quote_run_id(found.run_id))
            if ambiguous:
                return redirect(
                    f"{reverse('admin:runs_run_changelist')}?{urlencode({'q': unquote(object_id)})}"
                )
        if run is None or not self.has_view_permission(request, run):
            return super().change_view(request, object_id, form_url, extra_context)
        detail = selectors.run_detail(run, steps_page=request.GET.get(STEPS_PAGE_VAR))
        in_flight = next((a for a in detail.actions if a.is_open), None)
        selectors.note_progress([run])
        available = selectors.action_preview  # the same rules the services apply
        context = {
            **(extra_context or {}),
            "detail": detail,
            "suspension": run.suspension,
            "in_flight": in_flight,
            "stall": run.stall,
            "refreshing": in_flight is not None or run.is_progressing,
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
                (row, pretty_json(row.step.context_snapshot))
                for row in step_rows(run, detail.steps)
            ],
            "steps_page_link": steps_page_link(request),
        }
        return super().change_view(request, object_id, form_url, context)
