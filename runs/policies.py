"""Approval policies: how many must approve a gate, who, who not, by when, with what answer.

A policy is declared by the blueprint's author in the approval component's
config (these key names are a contract)::

    approvals: 2                        # distinct people needed (default 1)
    approvers: [Finance]                # groups whose members may decide
    not_by: initial_data.requested_by   # the user named there may not decide
    distinct_gates: true                # nobody decides two gates of one run
    due: 24h                            # reminders from then on
    escalate_to: [Finance leads]        # groups that may also decide once overdue
    expires: 72h                        # then on_expiry happens
    on_expiry: reject                   # reject | approve | none
    inputs:                             # the answer the decider gives, validated
      cost_center: {type: string, required: true}

and may be set or tightened by an administrator in the console
(``runs.ApprovalPolicy``, for a blueprint name or glob and a gate). Where both
apply, the stricter holds, key by key (``stricter``), and ``GatePolicy.reasons``
says which one set what. A policy that cannot be read holds every decision
back (``GatePolicy.fault``) rather than let a gate pass on a default.

This module reads and validates; it writes nothing. ``runs.services.decisions``
enforces a policy, ``runs.services.deadlines`` acts on its times.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
DURATION_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Where a separation-of-duties rule may find the requester.
REQUESTER_IN_INPUTS = ("initial_data.", "inputs.")
REQUESTER_STARTED_BY = "started_by"


class OnExpiry(StrEnum):
    """What happens when a gate's ``expires`` time passes undecided."""

    NONE = "none"  # it keeps waiting (reminders go on)
    REJECT = "reject"
    APPROVE = "approve"


# From the least to the most strict: an expiry that lets a run through is the
# weakest, one that keeps waiting for a person stronger, a rejection strongest.
EXPIRY_STRICTNESS = [OnExpiry.APPROVE, OnExpiry.NONE, OnExpiry.REJECT]


def parse_duration(value: object) -> timedelta:
    """``"24h"``, ``"30m"``, ``"2d"``, ``"1w"``, ``"90s"`` or a number of seconds → timedelta.

    Raises ``ValueError`` for anything else, or for a duration not above zero.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := DURATION.match(value)):
        seconds = float(match.group(1)) * DURATION_UNITS[match.group(2).lower()]
    else:
        raise ValueError(f"{value!r} is not a duration: write it as 30m, 24h, 3d or 1w")
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a duration above zero")
    return timedelta(seconds=seconds)


def duration_text(value: timedelta) -> str:
    """A duration as policies write it: ``3d``, ``24h``, ``30m``."""
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration_words(value: timedelta) -> str:
    """A duration in words: ``3 days``, ``24 hours``, ``30 minutes``."""
    seconds = int(value.total_seconds())
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


@dataclass(frozen=True)
class InputSpec:
    """One field of the answer a gate asks its deciders for."""

    name: str
    type: Literal["string", "number", "integer", "boolean"] = "string"
    required: bool = False
    label: str = ""
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """The field's label, or its name in words (``cost_center`` → ``Cost center``)."""
        return self.label or self.name.replace("_", " ").capitalize()


class _InputDeclaration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "number", "integer", "boolean"] = "string"
    required: bool = False
    label: str = ""
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = Field(default=None, ge=1, le=10_000)
    choices: list[str] = []


class _Declared(BaseModel):
    """The policy keys of a gate's config, validated (other config keys are ignored)."""

    model_config = ConfigDict(extra="ignore")

    approvals: int = Field(default=1, ge=1, le=50)
    approvers: list[str] | None = None
    not_by: list[str] = []
    distinct_gates: bool = False
    due: timedelta | None = None
    escalate_to: list[str] = []
    expires: timedelta | None = None
    on_expiry: OnExpiry = OnExpiry.NONE
    inputs: dict[str, _InputDeclaration] = {}

    @field_validator("approvers", "escalate_to", "not_by", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return value

    @field_validator("approvers", "escalate_to")
    @classmethod
    def _groups(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not name.strip() for name in value):
            raise ValueError("a group name is empty")
        return value

    @field_validator("not_by")
    @classmethod
    def _requesters(cls, value: list[str]) -> list[str]:
        for where in value:
            if where != REQUESTER_STARTED_BY and not (
                where.startswith(REQUESTER_IN_INPUTS) and where.partition(".")[2]
            ):
                raise ValueError(
                    f"{where!r} names no requester: use initial_data.<field> or started_by"
                )
        return value

    @field_validator("due", "expires", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, value: dict[str, _InputDeclaration]) -> dict[str, _InputDeclaration]:
        for name in value:
            if not INPUT_NAME.match(name):
                raise ValueError(f"{name!r} is not a field name (letters, digits, _)")
        return value


@dataclass(frozen=True)
class GatePolicy:
    """What deciding one gate takes. The default asks one approval from anyone allowed."""

    approvals: int = 1
    approvers: frozenset[str] | None = None  # group names; None: no group is required
    not_by: tuple[str, ...] = ()
    distinct_gates: bool = False
    due: timedelta | None = None
    escalate_to: frozenset[str] = frozenset()
    expires: timedelta | None = None
    on_expiry: OnExpiry = OnExpiry.NONE
    inputs: tuple[InputSpec, ...] = ()
    reasons: tuple[str, ...] = field(default=(), compare=False)
    # Why the policy cannot be read; while set, nobody may decide the gate.
    fault: str = ""

    @property
    def is_default(self) -> bool:
        """Whether nothing beyond one approval by anyone allowed is asked."""
        return self == GatePolicy()

    def due_at(self, since: datetime) -> datetime | None:
        """When a suspension that began at ``since`` is due, if the policy sets a time."""
        return since + self.due if self.due else None

    def expires_at(self, since: datetime) -> datetime | None:
        """When a suspension that began at ``since`` expires, if the policy sets a time."""
        return since + self.expires if self.expires else None

    def deciding_groups(self, *, overdue: bool) -> frozenset[str] | None:
        """The groups one must belong to to decide now (None: no group is required)."""
        if self.approvers is None:
            return None
        return self.approvers | self.escalate_to if overdue else self.approvers

    @property
    def deciders(self) -> str:
        """Who may decide, in words, for lists: "Finance decides (Finance leads once
        overdue)"; "" when no group is required."""
        if self.approvers is None:
            return ""
        escalation = f" ({_names(self.escalate_to)} once overdue)" if self.escalate_to else ""
        return f"{_names(self.approvers)} decides{escalation}"

    def summary(self) -> list[str]:
        """The policy in plain sentences, for the review page and emails."""
        lines = []
        if self.fault:
            return [f"This gate's policy cannot be read, so nobody can decide it: {self.fault}"]
        if self.approvals > 1:
            lines.append(f"Needs {self.approvals} approvals from different people.")
        if self.approvers is not None:
            lines.append(f"Only members of {_names(self.approvers)} may decide.")
        if self.not_by:
            lines.append("Whoever requested the run may not decide it.")
        if self.distinct_gates:
            lines.append("Nobody may decide two gates of the same run.")
        if self.due:
            escalation = (
                f"; then {_names(self.escalate_to)} may decide too" if self.escalate_to else ""
            )
            lines.append(f"Due {duration_words(self.due)} after it began to wait{escalation}.")
        if self.expires:
            outcome = {
                OnExpiry.REJECT: "it is rejected",
                OnExpiry.APPROVE: "it is approved",
                OnExpiry.NONE: "it keeps waiting",
            }[self.on_expiry]
            lines.append(
                f"Expires {duration_words(self.expires)} after it began to wait: then {outcome}."
            )
        return lines


def _names(groups: Iterable[str]) -> str:
    names = sorted(groups)
    return " or ".join(", ".join(names).rsplit(", ", 1)) if names else "no group"


def declared_policy(config: Mapping[str, Any], *, source: str) -> GatePolicy:
    """The policy declared in a gate's ``config`` (a blueprint's, or the console's as a dict).

    ``source`` names where it comes from, for ``reasons``. Never raises: a config
    that cannot be read gives a policy whose ``fault`` says why.
    """
    try:
        declared = _Declared.model_validate(dict(config))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'config'}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        )
        return GatePolicy(fault=f"{source}: {problems}", reasons=(f"{source} (unreadable)",))
    policy = GatePolicy(
        approvals=declared.approvals,
        approvers=frozenset(declared.approvers) if declared.approvers is not None else None,
        not_by=tuple(declared.not_by),
        distinct_gates=declared.distinct_gates,
        due=declared.due,
        escalate_to=frozenset(declared.escalate_to),
        expires=declared.expires,
        on_expiry=declared.on_expiry,
        inputs=tuple(
            InputSpec(
                name=name,
                type=spec.type,
                required=spec.required,
                label=spec.label or spec.description,
                minimum=spec.minimum,
                maximum=spec.maximum,
                max_length=spec.max_length,
                choices=tuple(spec.choices),
            )
            for name, spec in declared.inputs.items()
        ),
    )
    return replace(policy, reasons=(source,) if not policy.is_default else ())


def stricter(first: GatePolicy, second: GatePolicy) -> GatePolicy:
    """The two policies combined so that each holds: key by key, the stricter value.

    More approvals; approver groups both name (an intersection, which may leave
    nobody: then nobody may decide, and the review page says so); every
    requester rule; the earlier due and expiry; escalation only to groups both
    allow where both name some; the stricter expiry outcome; the inputs of both
    (the first's declaration of a field wins).
    """
    if first.fault or second.fault:
        fault = "; ".join(policy.fault for policy in (first, second) if policy.fault)
        return GatePolicy(fault=fault, reasons=first.reasons + second.reasons)
    names = {spec.name for spec in first.inputs}
    return GatePolicy(
        approvals=max(first.approvals, second.approvals),
        approvers=_narrowest(first.approvers, second.approvers),
        not_by=tuple(dict.fromkeys(first.not_by + second.not_by)),
        distinct_gates=first.distinct_gates or second.distinct_gates,
        due=_earliest(first.due, second.due),
        escalate_to=_narrowest(first.escalate_to or None, second.escalate_to or None)
        or frozenset(),
        expires=_earliest(first.expires, second.expires),
        on_expiry=max(first.on_expiry, second.on_expiry, key=EXPIRY_STRICTNESS.index),
        inputs=first.inputs + tuple(spec for spec in second.inputs if spec.name not in names),
        reasons=first.reasons + second.reasons,
    )


Groups = frozenset[str] | None


def _narrowest(first: Groups, second: Groups) -> Groups:
    if first is None:
        return second
    if second is None:
        return first
    return first & second


def _earliest(first: timedelta | None, second: timedelta | None) -> timedelta | None:
    present = [value for value in (first, second) if value is not None]
    return min(present) if present else None
