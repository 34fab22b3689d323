"""Approval pages: the inbox, the review page, and the decision it posts."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
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
from runs.forms import DecisionForm, ReopenForm, TimeZoneForm
from runs.models import Decision, Run, Source
from runs.permissions import AnyUser, can_decide, can_view_runs, signed_in
from runs.presentation import input_summary, instant_text, labelled_fields, pretty_json, step_rows
from runs.services.decisions import decision_record
from runs.services.operations import run_reopen
from runs.services.preferences import preference_time_zone_set
from runs.zones import BROWSER_ZONE_COOKIE, zone_named


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
        tallies = selectors.gate_tallies(runs)
        context["rows"] = [
            (
                run,
                input_summary(run.initial_data),
                reopened.get(run.run_id),
                tallies.get(run.run_id),
            )
            for run in runs
        ]
        context["page"] = page
        if may_decide:  # the header's count is the list's count here: no second count
            context["waiting_count"] = page.paginator.count
    else:
        context["decisions"] = list(selectors.decisions_listed(request.user, mine=tab == "mine"))
    return render(request, "approvals/inbox.html", context)


@require_http_methods(["GET", "POST"])
def review(request: HttpRequest, run_id: str) -> HttpResponse:
    """A waiting run in plain language: the question, the evidence, how the gate is
    decided and where it stands, then the Approve / Reject form."""
    _may_see_approvals(request)
    if request.method == "GET" and selectors.run_by_id(run_id) is None:
        return _short_id(run_id)
    run = _run_or_404(run_id)
    gate = selectors.gate_review(run, request.user)
    may_decide = can_decide(request.user, run)
    form = None
    status = 200
    if request.method == "POST":
        if not may_decide:
            raise PermissionDenied("You may not approve or reject this run.")
        # A run no longer waiting gets a plain form: the service says why it refuses.
        form = _decision_form(run, gate, request.user, data=request.POST) or DecisionForm(
            request.POST
        )
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
                    answers=form.answers,
                    on_behalf_of=_person(form.on_behalf_of_id, gate),
                )
            except ConsoleError as error:
                # Refused (decided by someone else, moved on, busy, the policy): say
                # why, keep what was typed, and put the run's current question in the form.
                messages.error(request, str(error))
                run.refresh_from_db()
                gate = selectors.gate_review(run, request.user)
                note = form.cleaned_data["note"]
                typed = request.POST if _same_suspension(run, form) else None
                form = _decision_form(run, gate, request.user, data=typed, note=note)
                if form is None and note:  # nothing left to decide: give the note back
                    messages.info(request, f"Your note was not recorded: “{note}”")
                status = 409
            else:
                messages.success(request, _decided_message(decision))
                return redirect("approvals:review", run_id=run.run_id)
        else:
            messages.error(request, "The decision was not recorded: see below.")
            status = 400
    return render(
        request,
        "approvals/review.html",
        _review_context(run, gate, request.user, may_decide=may_decide, form=form),
        status=status,
    )


def _decided_message(decision: Decision) -> str:
    if not decision.approved:
        return "Rejected. The run ends as rejected once the worker has recorded it."
    if not decision.settles:
        return "Approved. The gate needs more approvals: the run waits for them."
    return "Approved. The run continues in the background."


def _same_suspension(run: Run, form: DecisionForm) -> bool:
    suspension = run.suspension
    return suspension is not None and (suspension.gate, suspension.since) == (
        form.cleaned_data["gate"],
        form.cleaned_data["suspended_at"],
    )


def _person(user_id: int | None, gate: selectors.GateReview | None) -> User | None:
    """The person chosen to decide for, among those offered (None: oneself)."""
    if user_id is None or gate is None:
        return None
    for person in gate.deciding_as:
        if person.pk == user_id:
            return person
    raise PermissionDenied("You may not decide for that person.")


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


def _decision_form(
    run: Run,
    gate: selectors.GateReview | None,
    user: AnyUser,
    *,
    data: Any = None,
    note: str = "",
) -> DecisionForm | None:
    """A decision form for the suspension the run waits at now, if it still takes
    decisions: its inputs, and whom the user may decide as."""
    suspension = run.suspension
    if suspension is None or not suspension.is_approval or gate is None or not gate.open:
        return None
    return DecisionForm(
        data,
        initial={
            "gate": suspension.gate,
            "suspended_at": suspension.since.isoformat(),
            "note": note,
        },
        inputs=gate.policy.inputs,
        deciding_as=gate.deciding_as,
        user=user if isinstance(user, User) else None,
    )


def _review_context(
    run: Run,
    gate: selectors.GateReview | None,
    user: AnyUser,
    *,
    may_decide: bool,
    form: DecisionForm | None,
) -> dict[str, Any]:
    evidence = selectors.review_evidence(run)
    suspension = run.suspension
    # A blueprint's author may name the fields an approver sees first (the gate's
    # "evidence" config: dotted paths such as "invoice.amount").
    wanted = run.gate_config(evidence.gate).get("evidence") if evidence.gate else None
    shown_first = tuple(str(path) for path in wanted) if isinstance(wanted, list) else ()
    decisions = list(selectors.decisions_of(run.run_id))
    waiting = gate is not None and gate.open
    in_flight = selectors.open_action_of(run.run_id)
    if waiting and form is None and gate is not None and gate.deciding_as:
        form = _decision_form(run, gate, user)
    resumption = selectors.latest_resumption(run.run_id)
    selectors.note_progress([run])
    shown_form = (
        form if (waiting and in_flight is None and gate is not None and gate.deciding_as) else None
    )
    reopen_form = (
        ReopenForm()
        if may_decide and run.status == Run.Status.REJECTED and in_flight is None
        else None
    )
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
    # Once the run has gone on, the last decision stays at the top of the page.
    last_decision = (
        decisions[0] if decisions and not waiting and run.status != Run.Status.REJECTED else None
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
        "gate": gate,
        "policy_lines": gate.policy.summary() if gate else [],
        # Once the run has gone on, the last decision stays at the top of the page.
        "last_decision": last_decision,
        # A quorum is everyone's: "Approved by Ada and Bob".
        "last_deciders": " and ".join(
            d.decider
            for d in reversed(decisions)
            if last_decision is not None
            and (d.gate, d.suspended_at, d.approved)
            == (last_decision.gate, last_decision.suspended_at, last_decision.approved)
        ),
        "decisions": decisions,
        "earlier_decision": earlier,
        "reopening": reopening,
        "rejection": decisions[0]
        if run.status == Run.Status.REJECTED and decisions and not decisions[0].approved
        else None,
        "reopen_form": reopen_form,
        "in_flight": in_flight,
        "resumption": resumption,
        "resuming": resumption is not None and resumption.is_open,
        "stall": run.stall,
        # The page follows a run in flight, but never while it holds a form to fill in.
        "refreshing": ((resumption is not None and resumption.is_open) or run.is_progressing)
        and shown_form is None
        and reopen_form is None,
        "form": shown_form,
        "may_decide": may_decide,
    }


@require_http_methods(["GET", "POST"])
def time_zone(request: HttpRequest) -> HttpResponse:
    """Choose the time zone one's pages show instants in (anyone signed in, for themselves)."""
    chosen = selectors.chosen_time_zone(request.user)
    form = TimeZoneForm(request.POST or None, initial={"time_zone": chosen})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                preference_time_zone_set(
                    actor=signed_in(request.user), time_zone=form.cleaned_data["time_zone"]
                )
            except ConsoleError as error:
                messages.error(request, str(error))
            else:
                messages.success(request, "Saved: times are now shown in the zone below.")
                return redirect("time_zone")
        status = 400
    browser = request.COOKIES.get(BROWSER_ZONE_COOKIE, "")
    return render(
        request,
        "time_zone.html",
        {
            "form": form,
            "chosen": chosen,
            "browser_zone": browser if zone_named(browser) else "",
            "now_shown": instant_text(timezone.now()),
        },
        status=status,
    )


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
