"""Deciding several runs waiting at the same gate together: one note, one answer,
each run its own decision (``runs.services.decisions.decisions_record_many``)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.text import Truncator
from django.views.decorators.http import require_http_methods

from runs import clientip, selectors
from runs.forms import BulkDecisionForm
from runs.gates import console_policies, gate_policy
from runs.models import Source
from runs.permissions import can_decide, signed_in
from runs.presentation import inert_text, input_summary
from runs.services.decisions import Shown, decisions_record_many

REFUSALS_SHOWN = 10  # refusals listed one by one after deciding; the rest are counted


@require_http_methods(["GET", "POST"])
def decide_many(request: HttpRequest) -> HttpResponse:
    """GET ``?run=…&run=…``: the runs, and what each gate's policy will refuse, before
    confirming; POST: decide each of them."""
    user = signed_in(request.user)
    if not can_decide(user):
        raise PermissionDenied("Only people who approve or reject runs decide them together.")
    if request.method == "POST":
        form = BulkDecisionForm(request.POST, inputs=_inputs_of(request.POST))
        if not form.is_valid():
            problems = (str(e) for errors in form.errors.values() for e in errors)
            messages.error(request, " ".join(problems))
            return redirect("approvals:inbox")
        outcomes = decisions_record_many(
            shown=[Shown(*each) for each in form.cleaned_data["selection"]],
            approved=form.approved,
            note=form.cleaned_data["note"],
            actor=user,
            source=Source.WEB,
            answers=form.answers,
            client_address=clientip.client_address(request),
        )
        made = [decision for _, decision, _ in outcomes if decision is not None]
        verb = "Approved" if form.approved else "Rejected"
        if made:
            unsettled = sum(1 for decision in made if not decision.settles)
            more = (
                f" {unsettled} of them still need{'s' if unsettled == 1 else ''} more "
                "approvals from other people."
                if unsettled
                else ""
            )
            messages.success(
                request, f"{verb} {len(made)} run{'s' if len(made) != 1 else ''}.{more}"
            )
        refused = [(shown, why) for shown, decision, why in outcomes if decision is None]
        for shown, why in refused[:REFUSALS_SHOWN]:  # ids and reasons as sent: bounded, inert
            messages.error(request, inert_text(Truncator(f"{shown.run_id[:12]}: {why}").chars(300)))
        if len(refused) > REFUSALS_SHOWN:
            messages.error(request, f"…and {len(refused) - REFUSALS_SHOWN} more refused.")
        return redirect("approvals:inbox")
    runs = selectors.runs_by_ids(request.GET.getlist("run")[: BulkDecisionForm.LIMIT])
    same_gate = {(run.blueprint_name, run.suspended_at_node) for run in runs}
    waiting = [run for run in runs if run.suspension and run.suspension.is_approval]
    if not runs or len(same_gate) != 1 or len(waiting) != len(runs):
        messages.error(
            request,
            "Choose runs waiting for a decision at the same gate of the same blueprint: "
            "they are decided with one note and one answer.",
        )
        return redirect("approvals:inbox")
    rows = []
    policies = console_policies()  # once for every run listed
    for run in runs:
        review = selectors.gate_review(run, user, policies=policies)
        allowed = review is not None and review.open and user in review.deciding_as
        refusal = (
            ""
            if allowed
            else (review.refusal if review else "") or ("You may not decide this run yourself.")
        )
        rows.append((run, input_summary(run.initial_data), review, refusal))
    first = rows[0][2]
    selection = [
        [run.run_id, run.suspended_at_node, run.updated_at.isoformat()]
        for run, _, _, refusal in rows
        if not refusal
    ]
    form = BulkDecisionForm(
        initial={"selection": json.dumps(selection)},
        inputs=first.policy.inputs if first else (),
    )
    return render(
        request,
        "approvals/decide_many.html",
        {
            "rows": rows,
            "form": form if selection else None,
            "decidable": len(selection),
            "gate": runs[0].suspended_at_node,
            "blueprint": runs[0].blueprint_name,
        },
    )


def _inputs_of(data: Any) -> Any:
    """The inputs the selected runs' gate asks (from the first selected run)."""
    try:
        run_id = json.loads(data.get("selection", ""))[0][0]
    except (ValueError, TypeError, IndexError, KeyError, RecursionError):
        return ()
    if not selectors.storable(str(run_id)):  # the form refuses it: a damaged selection
        return ()
    run = selectors.run_by_id(str(run_id))
    if run is None or run.suspension is None:
        return ()
    return gate_policy(run, run.suspension.gate).inputs
