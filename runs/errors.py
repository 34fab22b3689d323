"""What the console refuses, with messages meant for the person asking.

Raised by services and the worker, shown as they are by views, the admin and
the command line. Nothing here imports beyond the models and how values are shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from runs.models import Decision, RunAction
from runs.presentation import instant_text


def when(instant: datetime) -> str:
    """An instant as the console writes it (``30 Nov 2026, 10:02 UTC``), in the zone of
    whoever reads the message (Django's current zone: the reader's, on a page)."""
    return instant_text(instant)


class ConsoleError(Exception):
    """A request the console refuses, with a message meant for the person asking."""


class RunNotFound(ConsoleError):
    """No run has the given id."""


class DecisionRefused(ConsoleError):
    """The decision cannot be recorded (not waiting, stale, invalid)."""


class AlreadyDecided(DecisionRefused):
    """Someone decided the suspension the person was shown first."""

    def __init__(
        self,
        decision: Decision,
        *,
        now_waiting_at: str | None = None,
        approvers: Sequence[str] = (),
    ) -> None:
        note = f' ("{decision.note}")' if decision.note else ""
        moved = (
            f" The run has moved on: it now waits at '{now_waiting_at}', a new question."
            if now_waiting_at
            else ""
        )
        if len(approvers) > 1:  # a quorum: name everyone it took
            said = f"approved by {', '.join(approvers[:-1])} and {approvers[-1]}, the last"
        else:
            said = f"{decision.decider} {decision.verdict.label.lower()} this"
        super().__init__(
            f"Already decided: {said} at {when(decision.decided_at)}{note}.{moved} "
            "Nothing was changed."
        )
        self.decision = decision


class ActionInFlight(ConsoleError):
    """Another action on the run is queued or running: one at a time."""

    def __init__(self, action: RunAction) -> None:
        super().__init__(
            f"A {action.get_kind_display().lower()} of this run, asked by "
            f"{action.requested_by_identity} at {when(action.requested_at)}, is "
            f"{action.get_state_display().lower()}. Wait for it to finish; nothing was changed."
        )
        self.action = action


class LeaseLost(Exception):
    """This worker no longer holds the action it was running: another worker took it."""


class ProgressUnknown(Exception):
    """A lost worker's resume cannot be run again without repeating completed steps."""


class WorkerLost(Exception):
    """The worker running a task stopped answering (killed or hung)."""
