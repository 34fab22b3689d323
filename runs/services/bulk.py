"""Actions on every run a filter matched: recorded at once, carried out by a worker.

"Select all 100,000 runs" must not become 100,000 form fields nor one request
that times out: the confirmation records a ``BulkRequest`` with the matched run
ids, and a worker's bulk thread goes through them a chunk at a time, each run
through its own service (its own permission check, transaction and audit), as
if selected alone. Progress is saved after each chunk, so a lost worker's
request is carried on by another.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.utils import timezone

from runs.models import BulkRequest, RunAction, Source
from runs.permissions import can_delete, can_operate
from runs.services.actions import who
from runs.services.operations import runs_act

logger = logging.getLogger(__name__)

BULK_KINDS = (
    RunAction.Kind.RESUME,
    RunAction.Kind.REPLAY,
    RunAction.Kind.CANCEL,
    RunAction.Kind.DELETE,
)
CHUNK = 200


def bulk_request_create(
    *,
    kind: str,
    run_ids: list[str],
    actor: User,
    source: Source,
    resume_data: dict[str, Any] | None = None,
) -> BulkRequest:
    """Record an action on ``run_ids`` for a worker to carry out; return the request.

    Raises ``PermissionDenied`` unless ``actor`` has the role the action needs
    (each run is checked again, scopes included, when the worker gets to it).
    """
    if kind not in BULK_KINDS:
        raise PermissionDenied(f"{kind!r} is not an action on many runs.")
    allowed = can_delete if kind == RunAction.Kind.DELETE else can_operate
    if not allowed(actor):
        raise PermissionDenied("You may not do this to runs.")
    return BulkRequest.objects.create(
        kind=kind,
        run_ids=run_ids,
        total=len(run_ids),
        resume_data=resume_data,
        requested_by=actor,
        requested_by_identity=who(actor, None),
        source=source,
    )


def bulk_requests_process(*, now: datetime | None = None, chunk: int = CHUNK) -> int:
    """Carry out the oldest waiting bulk request (or one a lost worker left); return how
    many runs this call handled (0 when there was nothing to do)."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.RESUME_STALE_AFTER)
    waiting = (
        BulkRequest.objects.filter(
            Q(state=BulkRequest.State.QUEUED)
            | Q(state=BulkRequest.State.RUNNING, heartbeat_at__lt=stale_before)
        )
        .order_by("requested_at")
        .values_list("pk", "state", "heartbeat_at")
        .first()
    )
    if waiting is None:
        return 0
    pk, state, heartbeat = waiting
    claimed = BulkRequest.objects.filter(pk=pk, state=state, heartbeat_at=heartbeat).update(
        state=BulkRequest.State.RUNNING, heartbeat_at=timezone.now()
    )
    if not claimed:  # another worker took it
        return 0
    request = BulkRequest.objects.select_related("requested_by").get(pk=pk)
    handled = 0
    done: list[RunAction]
    refused: list[tuple[str, str]]
    while request.position < request.total:
        ids = request.run_ids[request.position : request.position + chunk]
        if request.requested_by is None or not request.requested_by.is_active:
            done, refused = (
                [],
                [(run_id, "The person who asked can no longer act.") for run_id in ids],
            )
        else:
            done, refused = runs_act(
                kind=request.kind,
                run_ids=ids,
                actor=request.requested_by,
                source=Source(request.source),
                resume_data=request.resume_data,
            )
        request.position += len(ids)
        request.done += len(done)
        request.refused += len(refused)
        room = BulkRequest.REFUSALS_KEPT - len(request.refusals)
        request.refusals = [*request.refusals, *[list(r) for r in refused[: max(room, 0)]]]
        request.heartbeat_at = timezone.now()
        request.save(update_fields=["position", "done", "refused", "refusals", "heartbeat_at"])
        handled += len(ids)
    request.state = BulkRequest.State.DONE
    request.finished_at = timezone.now()
    request.save(update_fields=["state", "finished_at"])
    logger.info("Bulk request %s done: %s done, %s refused", pk, request.done, request.refused)
    return handled
