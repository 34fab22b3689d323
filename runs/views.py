"""Approval pages: the inbox, the review page, and the decision it posts."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from runs import selectors, services
from runs.forms import DecisionForm
from runs.models import Run, Source
from runs.permissions import can_decide, can_view_runs
from runs.presentation import input_summary, pretty_json


def _may_see_approvals(request: HttpRequest) -> None:
    if not (can_view_runs(request.user) or can_decide(request.user)):
        raise PermissionDenied("You have no role in this console yet. Ask an administrator.")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Approvers start at their inbox; everyone else who may see runs at the runs list."""
    if not can_decide(request.user) and (can_view_runs(request.user) or request.user.is_staff):
        return redirect("admin:runs_run_changelist")
    return redirect("approvals:inbox")


@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    """Every run waiting for a decision the user may make, longest waiting first."""
    _may_see_approvals(request)
    runs = selectors.runs_awaiting_decision_for(request.user)
    rows = [(run, input_summary(run.initial_data)) for run in runs]
    return render(
        request,
        "approvals/inbox.html",
        # The header's count is the list's length here: no second query.
        {"rows": rows, "may_decide": can_decide(request.user), "waiting_count": len(rows)},
    )


@require_http_methods(["GET", "POST"])
def review(request: HttpRequest, run_id: str) -> HttpResponse:
    """A waiting run in plain language, and the Approve / Reject form."""
    _may_see_approvals(request)
    run = selectors.run_by_id(run_id)
    if run is None:
        raise Http404(f"No run has the id “{run_id}”. It may have been deleted.")
    may_decide = can_decide(request.user, run)
    form = None
    if request.method == "POST":
        if not may_decide:
            raise PermissionDenied("You may not approve or reject this run.")
        form = DecisionForm(request.POST)
        if form.is_valid():
            return _decide(request, run, form)
        messages.error(request, "The decision was not recorded: see below.")
    return render(
        request,
        "approvals/review.html",
        _review_context(request, run, may_decide=may_decide, form=form),
        status=400 if form is not None else 200,
    )


def _decide(request: HttpRequest, run: Run, form: DecisionForm) -> HttpResponse:
    try:
        decision = services.decision_record(
            run_id=run.run_id,
            approved=form.approved,
            note=form.cleaned_data["note"],
            shown_gate=form.cleaned_data["gate"],
            shown_suspended_at=form.cleaned_data["suspended_at"],
            actor=request.user,
            source=Source.WEB,
            client_address=request.META.get("REMOTE_ADDR"),
        )
    except services.ConsoleError as error:
        messages.error(request, str(error))
    else:
        verdict = "Approved" if decision.approved else "Rejected"
        messages.success(request, f"{verdict}. The run resumes in the background.")
    return redirect("approvals:review", run_id=run.run_id)


def _review_context(
    request: HttpRequest, run: Run, *, may_decide: bool, form: DecisionForm | None
) -> dict[str, Any]:
    evidence = selectors.review_evidence(run)
    decision = selectors.current_decision(run)
    waiting = run.status == Run.Status.SUSPENDED and decision is None
    if may_decide and waiting and form is None:
        form = DecisionForm(
            initial={"gate": run.suspended_at_node, "suspended_at": run.updated_at.isoformat()}
        )
    resumption = selectors.latest_resumption(run.run_id)
    return {
        "run": run,
        "evidence": evidence,
        "inputs_json": pretty_json(evidence.inputs),
        "data_json": pretty_json(evidence.data),
        "waiting": waiting,
        "decision": decision,
        "decisions": selectors.decisions_of(run.run_id),
        "resumption": resumption,
        "resuming": resumption is not None and resumption.state != resumption.State.DONE,
        "form": form if (may_decide and waiting) else None,
        "may_decide": may_decide,
    }


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Whether the database and the worker queue answer (for load balancers and monitors)."""
    report = selectors.health()
    return JsonResponse(report, status=200 if report["ok"] else 503)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A forged or expired form: say so plainly; nothing was changed."""
    return render(request, "403_csrf.html", status=403)
