"""Telling approvers that a run waits for them: once per suspension, by email.

What this module guarantees (``suspensions_announce`` is called by every worker's
notifications thread):

- The approvers of a suspension are emailed once: a ``SuspensionNotice`` row is
  committed before anything is sent, so a second worker finds it and sends nothing.
- A failed send is tried again with back-off, per suspension: 1 minute after the
  first attempt, then 2, 4, 8 … up to one hour apart, for as long as the run
  waits at that suspension (and for at most a day). The notice row stays and
  says where it stands: ``attempts``, ``retry_at`` (empty once sent or given up)
  and ``last_error``. A worker that dies while sending leaves ``retry_at`` set, so
  the notice is tried again by another worker at that time.
- Each approver gets a message of their own, on one connection. An approver who
  can never be sent to (the mail library refuses their address or a header, or
  the server refuses them for good) is reported once: logged as an error,
  recorded in ``last_error``, ``retry_at`` cleared; the others are still sent
  to, and nothing is tried again.
- One run that raises does not stop the sweep: the error is logged, recorded on
  its notice (which backs off like a failed send), and the other runs go on.
- While the mail server cannot be reached, a sweep waits for it once (the SMTP
  backend's ``timeout``): the other notices due in that sweep are postponed with
  the same error instead of each waiting in turn. The first failure of such an
  outage is logged as a warning, the next ones only at debug level, and a line
  says when mail goes out again.

Subjects are one line (line breaks in a blueprint name or a gate's question
become spaces) and the review link is built for any run id (``/``, ``?``, ``#``,
``%`` and spaces are percent-encoded).
"""

from __future__ import annotations

import logging
import smtplib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, mailers
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.urls import reverse
from django.utils import timezone

from runs.gates import Tally, decide_refusal, gate_policy, tally_of
from runs.models import Run, Suspension, SuspensionNotice
from runs.permissions import can_decide
from runs.presentation import deadline_sentences, inert_text, instant_text, policy_paragraph
from runs.zones import zone_named

logger = logging.getLogger(__name__)

# Suspensions older than this are not announced any more (nor tried again).
ANNOUNCE_WITHIN = timedelta(days=1)
RETRY_FIRST = timedelta(minutes=1)
RETRY_LONGEST = timedelta(hours=1)
SUBJECT_LENGTH = 200

# The database stopped answering: the caller (the worker's thread) reports the outage.
DATABASE_LOST = (OperationalError, InterfaceError)


def retry_delay(attempts: int) -> timedelta:
    """How long after its ``attempts``-th failed attempt a notice is tried again."""
    return min(RETRY_FIRST * 2 ** min(max(attempts - 1, 0), 16), RETRY_LONGEST)


def review_url(run_id: str) -> str:
    """The absolute address of a run's review page, for any run id.

    The id is one path segment, every reserved character percent-encoded, so the
    link reaches the run whether the URL pattern takes ``<str:…>`` or ``<path:…>``.
    """
    return settings.CONSOLE_BASE_URL + reverse("approvals:review", args=[run_id])


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, line breaks included, made one space."""
    return " ".join(text.split())


def notice_subject(run: Run) -> str:
    """The subject of a waiting run's email: one line, at most ``SUBJECT_LENGTH`` characters."""
    question = run.suspension_reason or run.suspended_at_node or ""
    subject = one_line(f"Approval needed: {run.blueprint_name} — {question}")
    return inert_text(subject)[:SUBJECT_LENGTH]  # no control character in a mail header


def approvers_of(run: Run) -> list[Any]:
    """Active users with an email address who may decide ``run``."""
    candidates = (
        get_user_model()
        .objects.with_perm(
            "runs.approve_run",
            include_superusers=True,
            backend="django.contrib.auth.backends.ModelBackend",
        )
        .filter(is_active=True)
        .exclude(email="")
        .select_related("console_preference")  # their time zone, for the message
        .order_by("pk")
    )
    return [user for user in candidates if can_decide(user, run)]


def deciders_at(run: Run, suspension: Suspension, tally: Tally, *, at: datetime) -> list[Any]:
    """Of ``approvers_of(run)``, those the gate's policy (``tally.policy``) lets decide
    ``suspension`` at ``at``: its groups (and, once overdue, its escalation groups),
    not the requester, not who already decided."""
    return [
        user
        for user in approvers_of(run)
        if not decide_refusal(user, run, suspension=suspension, tally=tally, at=at)
    ]


def zone_of(user: Any) -> tzinfo:
    """The zone ``user`` chose for the console (their email's times are in it), else UTC."""
    preference = getattr(user, "console_preference", None)  # None: never chose
    return zone_named(preference.time_zone if preference else "") or UTC


def suspensions_announce(*, now: datetime | None = None, limit: int = 100) -> int:
    """Email the approvers of new suspensions, and try again those whose time has come.

    Returns the number of emails sent. Raises only when the database stops
    answering (``OperationalError``/``InterfaceError``); anything else one run
    raises is logged and recorded on its notice.
    """
    now = now or timezone.now()
    _give_up_ended(now)
    sweep = _Sweep(now)
    for run in _unannounced(now, limit):
        sweep.guarded(sweep.announce, run)
    due = _due_retries(now, limit)
    runs = Run.objects.in_bulk([notice.run_id for notice in due])
    for notice in due:
        if notice.run_id in runs:
            sweep.guarded(sweep.retry, runs[notice.run_id], notice)
    return sweep.sent


def _waiting_at() -> Exists:
    """Whether the notice's run still waits, undecided, at the notice's suspension."""
    return Exists(
        Run.objects.awaiting_decision().filter(
            run_id=OuterRef("run_id"),
            suspended_at_node=OuterRef("gate"),
            updated_at=OuterRef("suspended_at"),
        )
    )


def _unannounced(now: datetime, limit: int) -> list[Run]:
    told = SuspensionNotice.objects.filter(
        run_id=OuterRef("run_id"),
        gate=OuterRef("suspended_at_node"),
        suspended_at=OuterRef("updated_at"),
    )
    return list(
        Run.objects.awaiting_decision()
        .filter(updated_at__gte=now - ANNOUNCE_WITHIN)
        .exclude(Exists(told))
        .order_by("updated_at")[:limit]
    )


def _due_retries(now: datetime, limit: int) -> list[SuspensionNotice]:
    return list(
        SuspensionNotice.objects.filter(retry_at__lte=now, suspended_at__gte=now - ANNOUNCE_WITHIN)
        .filter(_waiting_at())
        .order_by("retry_at")[:limit]
    )


def _give_up_ended(now: datetime) -> None:
    """Stop trying for suspensions that ended (decided, resumed, cancelled) or are too old."""
    SuspensionNotice.objects.filter(retry_at__isnull=False).filter(
        Q(suspended_at__lt=now - ANNOUNCE_WITHIN) | ~_waiting_at()
    ).update(retry_at=None)


class Unmailable(Exception):
    """The message can never be sent as it is: trying again would not help."""


@dataclass
class _Sweep:
    """One pass over the due notices; remembers whether the mail server answered."""

    now: datetime
    sent: int = 0
    server_error: str = ""

    def guarded(self, step: Callable[..., None], run: Run, *args: Any) -> None:
        """``step`` for one run; what it raises is logged and the sweep goes on."""
        try:
            step(run, *args)
        except DATABASE_LOST:
            raise
        except Exception:
            logger.exception("Announcing the suspension of run %s failed", run.run_id)

    def announce(self, run: Run) -> None:
        try:
            with transaction.atomic():
                notice = SuspensionNotice.objects.create(
                    run=run,
                    gate=run.suspended_at_node or "",
                    suspended_at=run.updated_at,
                    sent_at=self.now,
                    attempts=1,
                    # Also a lease: if this worker dies while sending, another tries then.
                    retry_at=self.now + retry_delay(1),
                )
        except IntegrityError:
            return  # another worker announces it
        self.attempt(run, notice)

    def retry(self, run: Run, notice: SuspensionNotice) -> None:
        claimed = SuspensionNotice.objects.filter(pk=notice.pk, retry_at=notice.retry_at).update(
            attempts=F("attempts") + 1, retry_at=self.now + retry_delay(notice.attempts + 1)
        )
        if not claimed:
            return  # another worker is trying it
        notice.attempts += 1
        self.attempt(run, notice)

    def attempt(self, run: Run, notice: SuspensionNotice) -> None:
        if self.server_error:
            # The mail server did not answer a moment ago: do not wait for it again.
            self.failed(run, notice, f"not tried: {self.server_error}", log=logger.debug)
            return
        try:
            sent, refused = _send(run)
        except DATABASE_LOST:
            raise
        except Unmailable as error:  # no approver can be sent to
            self.unmailable(run, notice, str(error))
        except smtplib.SMTPRecipientsRefused as error:  # for now: a 4xx reply
            self.failed(run, notice, _describe(error), log=logger.warning)
        except smtplib.SMTPDataError as error:  # the server refused this message
            if error.smtp_code >= 500:
                self.unmailable(run, notice, f"anyone: {_describe(error)}")
            else:
                self.failed(run, notice, _describe(error), log=logger.warning)
        except OSError as error:  # smtplib.SMTPException is one too
            self.server_error = _describe(error)
            _mail_outage.failed(run.run_id, self.server_error)
            self.failed(run, notice, self.server_error, log=logger.debug)
        except Exception as error:
            logger.exception(
                "Could not email the approvers of run %s (attempt %s); trying again at %s",
                run.run_id,
                notice.attempts,
                self.now + retry_delay(notice.attempts),
            )
            self.failed(run, notice, _describe(error), log=None)
        else:
            _mail_outage.answered()
            self.sent += sent
            if refused:
                self.unmailable(run, notice, "; ".join(refused), recipients=sent)
            else:
                SuspensionNotice.objects.filter(pk=notice.pk).update(
                    recipients=sent, sent_at=timezone.now(), retry_at=None, last_error=""
                )

    def failed(self, run: Run, notice: SuspensionNotice, error: str, *, log: Any) -> None:
        retry_at = self.now + retry_delay(notice.attempts)
        if log is not None:
            log(
                "Could not email the approvers of run %s (attempt %s): %s; trying again at %s",
                run.run_id,
                notice.attempts,
                error,
                retry_at,
            )
        SuspensionNotice.objects.filter(pk=notice.pk).update(retry_at=retry_at, last_error=error)

    def unmailable(
        self, run: Run, notice: SuspensionNotice, error: str, *, recipients: int = 0
    ) -> None:
        logger.error(
            "The approvers of run %s at %r cannot be emailed (%s); not trying again",
            run.run_id,
            run.suspended_at_node,
            error,
        )
        SuspensionNotice.objects.filter(pk=notice.pk).update(
            recipients=recipients, retry_at=None, last_error=f"not sent, for good, to {error}"
        )


def _send(run: Run) -> tuple[int, list[str]]:
    """Email ``run``'s approvers, one message each on one connection.

    Returns the number sent and, for each approver who can never be sent to (the
    mail library refuses the address or a header, or the server refuses the
    recipient for good), why. Raises ``Unmailable`` when that is every approver;
    other errors of the mail server propagate.
    """
    suspension = run.suspension
    if suspension is None:
        return 0, []
    policy = gate_policy(run, suspension.gate)
    tally = tally_of(run.run_id, suspension, policy)
    recipients = deciders_at(run, suspension, tally, at=timezone.now())
    progress = tally.progress
    if not recipients:
        return 0, []
    link = review_url(run.run_id)
    subject = notice_subject(run)
    sent, refused = 0, []
    now = timezone.now()
    with mailers.default as backend:
        for user in recipients:
            zone = zone_of(user)
            sentences = deadline_sentences(policy, run.updated_at, now=now, zone=zone)
            deadlines = "".join(f"    {line}\n" for line in sentences) + ("\n" if sentences else "")
            body = (
                f"Run {run.run_id} of {run.blueprint_name} waits for your decision at "
                f"'{run.suspended_at_node}' since {instant_text(run.updated_at, zone)}:"
                f"\n\n    {run.suspension_reason or ''}\n\n"
                f"{policy_paragraph(policy, progress)}{deadlines}"
                f"Review it and approve or reject: {link}\n"
            )
            message = EmailMessage(subject=subject, body=body, to=[user.email])
            try:
                sent += backend.send_messages([message]) or 0
            except ValueError as error:  # Django's checks of headers and addresses
                refused.append(f"{user.email!r}: {error}")
            except smtplib.SMTPRecipientsRefused as error:
                if not _permanent(error):
                    raise
                refused.append(f"{user.email!r}: {_describe(error)}")
    if refused and not sent:
        raise Unmailable("; ".join(refused))
    return sent, refused


def _permanent(error: smtplib.SMTPRecipientsRefused) -> bool:
    """Whether the server refused every recipient for good (5xx), not for now (4xx)."""
    return all(code >= 500 for code, _ in error.recipients.values())


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


class _MailOutage:
    """The mail server's state as this process last saw it: logged when it changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: datetime | None = None

    def failed(self, run_id: str, error: str) -> None:
        with self._lock:
            first, self.since = self.since is None, self.since or timezone.now()
        if first:
            logger.warning(
                "Cannot send email (%s, for run %s); notices are tried again with back-off "
                "(%g min doubling to %g min); a line follows when email goes out again",
                error,
                run_id,
                RETRY_FIRST / timedelta(minutes=1),
                RETRY_LONGEST / timedelta(minutes=1),
            )

    def answered(self) -> None:
        with self._lock:
            since, self.since = self.since, None
        if since is not None:
            logger.warning("Email goes out again (it failed since %s)", since)


_mail_outage = _MailOutage()
