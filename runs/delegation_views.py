"""The "out of office" page: naming who decides for you while you are away."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from runs.errors import ConsoleError
from runs.forms import DelegationForm
from runs.permissions import can_decide, signed_in
from runs.selectors import delegations_of
from runs.services.delegations import delegation_create, delegation_end


@require_http_methods(["GET", "POST"])
def away(request: HttpRequest) -> HttpResponse:
    """Your delegations (given and held) and a form to name a delegate."""
    user = signed_in(request.user)
    given, held = delegations_of(user)
    if not (can_decide(user) or given or held):
        raise PermissionDenied("Only people who approve or reject runs name delegates.")
    status = 200
    if request.method == "POST":
        form = DelegationForm(request.POST)
        if form.is_valid():
            try:
                delegation = delegation_create(
                    principal=user,
                    delegate=form.cleaned_data["delegate"],
                    starts_at=form.cleaned_data["starts_at"],
                    ends_at=form.cleaned_data["ends_at"],
                    note=form.cleaned_data["note"],
                    actor=user,
                )
            except ConsoleError as error:
                messages.error(request, str(error))
                status = 409
            else:
                messages.success(
                    request, f"{delegation.delegate.get_username()} decides for you until then."
                )
                return redirect("away")
        else:
            status = 400
    else:
        now = timezone.localtime().replace(second=0, microsecond=0)
        form = DelegationForm(initial={"starts_at": now, "ends_at": now + timedelta(days=7)})
    return render(
        request,
        "approvals/away.html",
        {"form": form, "given": given, "held": held, "now": timezone.now()},
        status=status,
    )


@require_POST
def away_end(request: HttpRequest, delegation_id: int) -> HttpResponse:
    """End one of your delegations now (given or held)."""
    try:
        delegation_end(delegation_id=delegation_id, actor=signed_in(request.user))
    except ConsoleError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Ended: the delegation no longer holds.")
    return redirect("away")
