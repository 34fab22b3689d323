"""Approval pages: the inbox, the review page, and the decision it posts."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import LogoutView
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from runs import clientip, selectors
from runs.errors import ConsoleError
from runs.forms import DecisionForm, ReopenForm
from runs.models import Run, Source
from runs.permissions import can_decide, can_view_runs, signed_in
from runs.presentation import input_summary, labelled_fields, pretty_json, step_rows
from runs.services.decisions import decision_record
from runs.services.operations import run_reopen


def _may_see_approvals(request: HttpRequest) -> None:
    if not (can_view_runs(request.user) or can_decide(request.user)):
        raise PermissionDenied("You have no role in this console yet. Ask an administrator.")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Approvers start at their inbox; everyone else who may see runs at the runs list."""
    if not can_decide(request.user) and can_view_runs(request.user):
        return redirect("admin:runs_run_changelist")
    return redirect("approvals:inbox")


INBOX_PAGE = 50  # waiting runs a page of the inbox shows, soonest due first

INBOX_TABS = {
    "waiting": "Waiting",
    "mine": "Decided by me",
    "recent": "Decided recently",
}


@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    """Runs waiting for a decision (the user's to make, or, for someone who may only
    look, everyone's), those due soonest first, then longest waiting; or the
    decisions made lately."""
    _may_see_approvals(request)
    may_decide = can_decide(request.user)
    tab = request.GET.get("show", "waiting")
    if tab not in INBOX_TABS:
        tab = "waiting"
    context: dict[str, Any] = {
        "tab": tab,
        "tabs": [(key, label, key == tab) for key, label in INBOX_TABS.items()],
        "may_decide": may_decide,
        "now": timezone.now(),  # one instant for every row's due time
    }
    if tab == "waiting":
        page = Paginator(selectors.runs_waiting_seen_by(request.user), INBOX_PAGE).get_page(
            request.GET.get("page")
        )
        runs = list(page)
        reopened = selectors.reopenings(runs)
        context["rows"] = [
            (run, input_summary(run.initial_data), reopened.get(run.run_id)) for run in runs
        ]
        context["page"] = page
        if may_decide:  # the header's count is the list's count here: no second count
            context["waiting_count"] = page.paginator.count
    else:
        context["decisions"] = list(selectors.decisions_listed(request.user, mine=tab == "mine"))
    return render(request, "approvals/inbox.html", context)


@require_http_methods(["GET", "POST"])
def review(request: HttpRequest, run_id: str) -> HttpResponse:
    """A waiting run in plain language, and the Approve / Reject form."""
    _may_see_approvals(request)
    if request.method == "GET" and selectors.run_by_id(run_id) is None:
        return _short_id(run_id)
    run = _run_or_404(run_id)
    may_decide = can_decide(request.user, run)
    form = None
    status = 200
    if request.method == "POST":
        if not may_decide:
            raise PermissionDenied("You may not approve or reject this run.")
        form = DecisionForm(request.POST)
        if form.is_valid():
            try:
                decision = decision_record(
                    run_id=run.run_id,
                    approved=form.approved,
                    note=form.cleaned_data["note"],
                    shown_gate=form.cleaned_data["gate"],
                    shown_suspended_at=form.cleaned_data["suspended_at"],
                    actor=signed_in(request.user),
                    source=Source.WEB,
                    client_address=clientip.client_address(request),
                )
            except ConsoleError as error:
                # Refused (decided by someone else, moved on, busy): say why, keep
                # the typed note, and put the run's current question in the form.
                messages.error(request, str(error))
                run.refresh_from_db()
                note = form.cleaned_data["note"]
                form = _decision_form(run, note=note)
                if form is None and note:  # nothing left to decide: give the note back
                    messages.info(request, f"Your note was not recorded: “{note}”")
                status = 409
            else:
                messages.success(
                    request,
                    "Approved. The run continues in the background."
                    if decision.approved
                    else "Rejected. The run ends as rejected once the worker has recorded it.",
                )
                return redirect("approvals:review", run_id=run.run_id)
        else:
            messages.error(request, "The decision was not recorded: see below.")
            status = 400
    return render(
        request,
        "approvals/review.html",
        _review_context(run, may_decide=may_decide, form=form),
        status=status,
    )


@require_POST
def reopen(request: HttpRequest, run_id: str) -> HttpResponse:
    """Send a rejected run back to its gate, with a reason (needs the right to decide it)."""
    _may_see_approvals(request)
    run = _run_or_404(run_id)
    form = ReopenForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(map(str, form.errors.get("reason", ["Give a reason."]))))
        return redirect("approvals:review", run_id=run.run_id)
    try:
        run_reopen(
            run_id=run.run_id,
            reason=form.cleaned_data["reason"],
            actor=signed_in(request.user),
            source=Source.WEB,
        )
    except ConsoleError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Reopened: the run goes back to its gate for a new decision.")
    return redirect("approvals:review", run_id=run.run_id)


def _run_or_404(run_id: str) -> Run:
    run = selectors.run_by_id(run_id)
    if run is None:
        raise Http404(f"No run has the id “{run_id}”. It may have been deleted.")
    return run


def _short_id(run_id: str) -> HttpResponse:
    """A run named by the first characters of its id: its page, or the runs it could be."""
    run, ambiguous = selectors.run_for_short_id(run_id)
    if run is not None:
        return redirect("approvals:review", run_id=run.run_id)
    if ambiguous:
        return redirect(f"{reverse('admin:runs_run_changelist')}?{urlencode({'q': run_id})}")
    raise Http404(f"No run has the id “{run_id}”, nor one starting with it.")


def _decision_form(run: Run, *, note: str = "") -> DecisionForm | None:
    """A decision form for the suspension the run waits at now, if it waits for one."""
    suspension = run.suspension
    if suspension is None or not suspension.is_approval:
        return None
    return DecisionForm(
        initial={
            "gate": suspension.gate,
            "suspended_at": suspension.since.isoformat(),
            "note": note,
        }
    )


def _review_context(run: Run, *, may_decide: bool, form: DecisionForm | None) -> dict[str, Any]:
    evidence = selectors.review_evidence(run)
    suspension = run.suspension
    # A blueprint's author may name the fields an approver sees first (the gate's
    # "evidence" config: dotted paths such as "invoice.amount").
    wanted = run.gate_config(evidence.gate).get("evidence") if evidence.gate else None
    shown_first = tuple(str(path) for path in wanted) if isinstance(wanted, list) else ()
    decision = selectors.current_decision(run)
    decisions = list(selectors.decisions_of(run.run_id))
    waiting = suspension is not None and suspension.is_approval and decision is None
    in_flight = selectors.open_action_of(run.run_id)
    if may_decide and waiting and form is None:
        form = _decision_form(run)
    resumption = selectors.latest_resumption(run.run_id)
    reopening = selectors.reopenings([run]).get(run.run_id)
    # Back on the page after deciding, the run may wait at its next gate: say so
    # (after a reopening it waits at the same gate again, as its banner says).
    earlier = (
        decisions[0]
        if waiting
        and reopening is None
        and decisions
        and (decisions[0].gate, decisions[0].suspended_at) != (suspension.gate, suspension.since)  # type: ignore[union-attr]
        else None
    )
    return {
        "run": run,
        "suspension": suspension,
        "evidence": evidence,
        "step_rows": step_rows(run, evidence.steps),
        "inputs_fields": labelled_fields(evidence.inputs, first=shown_first),
        "data_fields": labelled_fields(evidence.data, first=shown_first),
        "inputs_json": pretty_json(evidence.inputs),
        "data_json": pretty_json(evidence.data),
        "waiting": waiting,
        "decision": decision,
        # Once the run has gone on, the last decision stays at the top of the page.
        "last_decision": decisions[0]
        if decisions and not waiting and run.status != Run.Status.REJECTED
        else None,
        "decisions": decisions,
        "earlier_decision": earlier,
        "reopening": reopening,
        "rejection": decisions[0]
        if run.status == Run.Status.REJECTED and decisions and not decisions[0].approved
        else None,
        "reopen_form": ReopenForm()
        if may_decide and run.status == Run.Status.REJECTED and in_flight is None
        else None,
        "in_flight": in_flight,
        "resumption": resumption,
        "resuming": resumption is not None and resumption.is_open,
        "form": form if (may_decide and waiting and in_flight is None) else None,
        "may_decide": may_decide,
    }


@login_not_required
@require_http_methods(["GET", "POST"])
def logout(request: HttpRequest) -> HttpResponse:
    """Log out on POST (Django's view); a link followed here (GET) asks first."""
    if request.method == "POST":
        return LogoutView.as_view()(request)
    return render(request, "registration/logout_confirm.html")


@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Whether the database and the worker queue answer (for load balancers and monitors).

    Anyone gets ``{"ok": …}`` (200 or 503); the queue's figures are for people
    who may see runs. JSON whatever the session, even with the database down.
    """
    report = selectors.health()
    status = 200 if report["ok"] else 503
    if not (report["ok"] and _may_see_health_details(request)):
        report = {"ok": report["ok"]}
    return JsonResponse(report, status=status)


def _may_see_health_details(request: HttpRequest) -> bool:
    try:
        return can_view_runs(request.user)
    except DatabaseError:  # the session could not be read: answer as to anyone
        return False


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A forged or expired form: say so plainly; nothing was changed."""
    return render(request, "403_csrf.html", status=403)
