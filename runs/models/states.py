"""What a run's state means to people: the suspension it waits at, a stall.

Small values, computed by ``Run`` and read by every page, service and email
that needs them (one definition of each).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Suspension:
    """Where and since when a run waits: the one definition of "the suspension".

    ``gate`` is the node NeuroCore suspended the run at, ``since`` the instant it
    was suspended (the run's ``updated_at`` while it waits; with the gate it
    names the suspension a decision is about), ``message`` the question or reason.
    ``is_approval`` tells an approval gate (NeuroCore's ``approval`` skill,
    passed only by a ``Decision``) from any other suspension (a flowengine
    checkpoint, an external signal), which operators resume.
    """

    gate: str
    since: datetime
    message: str
    is_approval: bool

    @property
    def label(self) -> str:
        """The suspension in plain words, for badges and lists."""
        return "Waiting for a decision" if self.is_approval else "Paused, waiting to be resumed"


@dataclass(frozen=True)
class Stall:
    """A run that says "running" but has shown no progress for a while: the one definition.

    ``since`` is its last sign of progress (``Run.last_progress``). Past
    ``settings.RUN_STALLED_AFTER`` seconds without one, the process running it
    may be gone (killed, its machine lost) while the run still says "running".
    """

    since: datetime
    now: datetime

    @property
    def minutes(self) -> int:
        return int((self.now - self.since).total_seconds() // 60)

    @property
    def quiet_for(self) -> str:
        """How long without progress, in words: 14 minutes, 3 hours, 2 days."""
        minutes = self.minutes
        if minutes < 120:
            return f"{minutes} minute{'' if minutes == 1 else 's'}"
        if minutes < 48 * 60:
            return f"{minutes // 60} hours"
        return f"{minutes // (24 * 60)} days"

    @property
    def label(self) -> str:
        """Short, for lists: No progress for 14 minutes."""
        return f"No progress for {self.quiet_for}"

    @property
    def explanation(self) -> str:
        """For the run's page: what it may mean and what can be done."""
        return (
            f"No progress for {self.quiet_for} — it may have stopped (the process running "
            "it killed or its machine lost) while it still says Running. An operator can "
            "cancel it, then replay it with the same inputs."
        )
