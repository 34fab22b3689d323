"""Reminders and escalation of overdue approval gates, by email.

What this module guarantees (``deadline_remind`` is called by the deadlines pass,
``runs.services.deadlines``, for each deadline whose ``remind_at`` has come):

- From the due time on, the people who may decide the suspension *now* are
  reminded: who may approve the run (role and blueprint scopes) and whom the
  gate's policy lets decide at that moment (its groups, and the ``escalate_to``
  groups, since it is overdue; not the requester, not who already decided).
- Reminders repeat every ``due`` period of the gate, but never more often than
  hourly nor less often than daily (``remind_every``): a gate due after 30
  minutes is reminded hourly, one due after a week daily.
- The first reminder of a gate with ``escalate_to`` is its escalation: members
  of those groups who could not decide before it was overdue are told that they
  may decide now; the others get the reminder.
- A reminder is claimed before it is sent (a conditional update of
  ``remind_at``): two workers send it once. When the mail server fails, it is
  tried again ``REMIND_RETRY`` later, and the error is kept in ``last_error``.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime, timedelta, tzinfo

from django.contrib.auth.models import User
from django.core.mail import EmailMessage, mailers
from django.db.models import F

from runs.gates import Tally, gate_policy, group_names, tally_of
from runs.models import GateDeadline, Run, Suspension
from runs.policies import GatePolicy
from runs.presentation import deadline_sentences, due_words, inert_text, instant_text
from runs.services.notifications import (
    DATABASE_LOST,
    SUBJECT_LENGTH,
    deciders_at,
    one_line,
    review_url,
    zone_of,
)

logger = logging.getLogger(__name__)

REMIND_EVERY_LEAST = timedelta(hours=1)
REMIND_EVERY_MOST = timedelta(days=1)
REMIND_RETRY = timedelta(minutes=10)


def remind_every(due: timedelta) -> timedelta:
    """How long after a reminder the next one goes, for a gate due after ``due``."""
    return min(max(due, REMIND_EVERY_LEAST), REMIND_EVERY_MOST)


def deciders_now(
    run: Run, suspension: Suspension, tally: Tally, *, at: datetime
) -> list[tuple[User, bool]]:
    """Who may decide ``suspension`` at ``at`` and has an email address, each with
    whether they may only because it is overdue (an escalation group's member)."""
    approvers = tally.policy.approvers
    return [
        (user, approvers is not None and not (group_names(user) & approvers))
        for user in deciders_at(run, suspension, tally, at=at)
    ]


def deadline_remind(*, deadline: GateDeadline, now: datetime) -> int:
    """Remind those who may decide ``deadline``'s overdue suspension (or tell the
    escalation groups), if its reminder is still due at ``now``.

    Returns the number of emails sent (0 when another worker claimed it, the
    suspension ended, or nobody can be told). Raises only when the database
    stops answering; a mail server's failure is recorded and tried again later.
    """
    claimed = GateDeadline.objects.filter(
        pk=deadline.pk, remind_at=deadline.remind_at, settled_at__isnull=True
    ).update(remind_at=now + REMIND_RETRY)  # also a lease, should this worker die sending
    if not claimed:
        return 0
    run = Run.objects.filter(pk=deadline.run_id).first()
    suspension = run.suspension if run is not None else None
    if (
        run is None
        or suspension is None
        or (suspension.gate, suspension.since) != (deadline.gate, deadline.suspended_at)
    ):
        GateDeadline.objects.filter(pk=deadline.pk).update(settled_at=now, remind_at=None)
        return 0
    policy = gate_policy(run, suspension.gate)
    tally = tally_of(run.run_id, suspension, policy)
    due_at = policy.due_at(suspension.since)
    if tally.closing is not None or policy.due is None or due_at is None or due_at > now:
        # Settled, or the policy changed since the deadline was recorded.
        GateDeadline.objects.filter(pk=deadline.pk).update(
            settled_at=now if tally.closing is not None else None,
            due_at=due_at,
            remind_at=None if tally.closing is not None else due_at,
        )
        return 0
    escalating = bool(policy.escalate_to) and deadline.escalated_at is None
    # Told of the escalation once, with its first reminder; reminded like anyone after.
    recipients = [
        (user, escalated and escalating)
        for user, escalated in deciders_now(run, suspension, tally, at=now)
    ]
    try:
        sent = _send(run, suspension, policy, recipients, now, tally.progress)
    except DATABASE_LOST:
        raise
    except (OSError, smtplib.SMTPException) as error:  # the server: try again later
        described = f"{type(error).__name__}: {error}"[:2000]
        logger.warning(
            "Could not remind the approvers of run %s (%s); trying again at %s",
            run.run_id,
            described,
            now + REMIND_RETRY,
        )
        GateDeadline.objects.filter(pk=deadline.pk).update(last_error=described)
        return 0
    GateDeadline.objects.filter(pk=deadline.pk).update(
        reminders=F("reminders") + 1,
        reminded_at=now,
        remind_at=now + remind_every(policy.due),
        escalated_at=now if escalating else deadline.escalated_at,
        last_error="",
    )
    return sent


def reminder_subject(run: Run, *, escalated: bool, due_at: datetime, now: datetime) -> str:
    """The subject of a reminder: one line, at most ``SUBJECT_LENGTH`` characters."""
    lead = "Escalated to you" if escalated else "Reminder"
    question = run.suspension_reason or run.suspended_at_node or ""
    overdue = due_words(due_at, now=now)
    subject = one_line(f"{lead} — {overdue}: {run.blueprint_name} — {question}")
    return inert_text(subject)[:SUBJECT_LENGTH]


def _send(
    run: Run,
    suspension: Suspension,
    policy: GatePolicy,
    recipients: list[tuple[User, bool]],
    now: datetime,
    progress: str,
) -> int:
    """Email each recipient the reminder or the escalation, on one connection.

    Returns the number sent; a recipient the mail library or the server refuses
    is skipped (logged). Errors of the mail server propagate.
    """
    if not recipients:
        return 0
    due_at = policy.due_at(suspension.since)
    assert due_at is not None
    link = review_url(run.run_id)
    sent = 0
    with mailers.default as backend:
        for user, escalated in recipients:
            zone = zone_of(user)  # the times in the zone they chose, else UTC
            deadlines = "\n".join(
                f"    {line}"
                for line in deadline_sentences(policy, suspension.since, now=now, zone=zone)
            )
            message = EmailMessage(
                subject=reminder_subject(run, escalated=escalated, due_at=due_at, now=now),
                body=_body(run, suspension, policy, escalated, deadlines, progress, link, zone),
                to=[user.email],
            )
            try:
                sent += backend.send_messages([message]) or 0
            except ValueError as error:  # Django's checks of headers and addresses
                logger.error("Cannot remind %r of run %s: %s", user.email, run.run_id, error)
            except smtplib.SMTPRecipientsRefused as error:
                logger.error("The server refused to remind %r: %s", user.email, error)
    return sent


def _body(
    run: Run,
    suspension: Suspension,
    policy: GatePolicy,
    escalated: bool,
    deadlines: str,
    progress: str,
    link: str,
    zone: tzinfo,
) -> str:
    why = (
        f"It was escalated to {', '.join(sorted(policy.escalate_to))}: as a member, you may "
        "decide it now.\n\n"
        if escalated
        else ""
    )
    standing = f"    {progress}\n\n" if progress else ""  # "1 of 2 approvals — ada approved"
    return (
        f"Run {run.run_id} of {run.blueprint_name} has waited for a decision at "
        f"'{suspension.gate}' since {instant_text(suspension.since, zone)}:\n\n"
        f"    {suspension.message}\n\n{deadlines}\n\n{standing}{why}"
        f"Review it and approve or reject: {link}\n"
    )
