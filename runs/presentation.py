"""How stored values are shown to people: instants, durations, JSON, summaries of inputs."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil

from runs.policies import GatePolicy, OnExpiry

# A lone surrogate: legal in a Python str (and in NeuroCore's JSON), not in UTF-8.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def displayable(text: str) -> str:
    """``text`` with each lone surrogate written as its JSON escape (``\\udcff``).

    Lone surrogates cannot be encoded as UTF-8, so a page, email or terminal
    holding one would fail; the escape shows the value, and inside JSON text it
    is the same value (``json.loads`` gives the surrogate back).
    """
    return LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


# The one way the console writes an instant for people (Django's date format
# characters): "30 Nov 2026, 08:35 CET", in the reader's zone, the zone always
# said. Pages (the ``instant`` filter), admin columns and detail pages (Django's
# DATETIME_FORMAT, neurocore_console/formats), emails and messages all use it.
INSTANT_FORMAT = "j M Y, H:i T"


def _in_zone(value: datetime, zone: tzinfo | None) -> datetime:
    """``value`` in ``zone`` (the reader's: Django's current time zone when None)."""
    if timezone.is_naive(value):  # the console stores aware instants; naive means UTC
        value = value.replace(tzinfo=UTC)
    return timezone.localtime(value, zone)


def instant_text(value: datetime, zone: tzinfo | None = None) -> str:
    """``value`` as people read it: ``30 Nov 2026, 08:35 CET`` (``INSTANT_FORMAT``)."""
    return dateformat.format(_in_zone(value, zone), INSTANT_FORMAT)


def instant_iso(value: datetime, zone: tzinfo | None = None) -> str:
    """``value`` in ISO 8601 to the second, with its offset: ``2026-11-30T08:35:12+01:00``."""
    return _in_zone(value, zone).replace(microsecond=0).isoformat()


def instant_html(value: datetime | None) -> SafeString:
    """``value`` for a page: its text in a ``<time>`` whose tooltip is the ISO instant;
    an em dash when there is none."""
    if value is None:
        return format_html("{}", "—")
    iso = instant_iso(value)
    return format_html('<time datetime="{}" title="{}">{}</time>', iso, iso, instant_text(value))


INPUT_SUMMARY_ITEMS = 3


def input_summary(data: Any) -> str:
    """A line of a run's inputs for a list: its first few fields, each whole
    (``invoice: vendor Globex, amount 420`` — a nested object one level flat)."""
    if not isinstance(data, dict) or not data:
        return "no inputs"
    items = [
        f"{inert_text(key)}: {_inline(value)}"
        for key, value in list(data.items())[:INPUT_SUMMARY_ITEMS]
    ]
    more = len(data) - INPUT_SUMMARY_ITEMS
    return "; ".join(items) + (f" (+{more} more)" if more > 0 else "")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{inert_text(key)} {_scalar(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(_scalar(item) for item in value)
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return inert_text(value)
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, dict | list):
        return displayable(json.dumps(value, ensure_ascii=False, default=str))
    return displayable(str(value))


@dataclass(frozen=True)
class Field:
    """A value of a run's data as a person reads it: a label, and either the value
    as text or the fields inside it (a nested object or a list of objects)."""

    label: str
    text: str = ""
    fields: tuple[Field, ...] = ()


def labelled_fields(data: Any, *, first: tuple[str, ...] = ()) -> list[Field]:
    """``data`` (a run's inputs or produced data) as labelled fields, nested objects as
    sections; the dotted paths in ``first`` (a gate's ``evidence`` config) lead."""
    if not isinstance(data, dict):
        return [Field("Value", _scalar(data))] if data not in (None, {}) else []
    keys = list(data)
    leading = [path.split(".", 1)[0] for path in first if path.split(".", 1)[0] in data]
    ordered = list(dict.fromkeys([*leading, *keys]))
    return [_field(key, data[key]) for key in ordered]


def _field(key: Any, value: Any) -> Field:
    label = inert_text(str(key)).replace("_", " ").strip().capitalize() or "(no name)"
    if isinstance(value, dict):
        return Field(label, fields=tuple(_field(k, v) for k, v in value.items()))
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return Field(
            label,
            fields=tuple(_field(f"{number}", item) for number, item in enumerate(value, 1)),
        )
    if isinstance(value, list):
        return Field(label, ", ".join(_scalar(item) for item in value) or "none")
    return Field(label, _scalar(value))


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON for a page, displayable whatever it holds."""
    return displayable(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str))


def human_duration(milliseconds: float | None) -> str:
    """1.2 s, 340 ms, 3 min 5 s, 2 h 4 min; an em dash when unknown."""
    if milliseconds is None or not math.isfinite(milliseconds):
        return "—"  # unknown, or a value no clock gives (NaN, infinity)
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def due_words(due_at: datetime, *, now: datetime) -> str:
    """A due time in words as seen at ``now``: "Due in 3 hours", "Overdue by 2 days",
    "Due now" (within a minute either side); the largest unit only."""
    if abs((due_at - now).total_seconds()) < 60:
        return "Due now"
    if due_at > now:
        return f"Due in {_words(timeuntil(due_at, now, depth=1))}"
    return f"Overdue by {_words(timesince(due_at, now, depth=1))}"


def _words(text: str) -> str:
    return text.replace("\xa0", " ")  # Django's non-breaking spaces, plain for emails


def policy_paragraph(policy: GatePolicy, progress: str) -> str:
    """How a gate is decided and where it stands, as an email paragraph ("" when it
    asks for nothing beyond one approval and none is in)."""
    lines = ([progress] if progress else []) + policy.summary()
    if not lines:
        return ""
    return "How it is decided:\n" + "".join(f"    {line}\n" for line in lines) + "\n"


def deadline_sentences(
    policy: GatePolicy, since: datetime, *, now: datetime, zone: tzinfo | None = None
) -> list[str]:
    """When a suspension that began at ``since`` is due and expires under ``policy``,
    as seen at ``now``, in sentences for emails (none when the policy sets no time),
    its instants in ``zone`` (default: the current zone)."""
    lines = []
    if (due_at := policy.due_at(since)) is not None:
        lines.append(f"{due_words(due_at, now=now)} (due {instant_text(due_at, zone)}).")
        if policy.escalate_to and due_at > now:
            lines.append(
                f"Once overdue, members of {', '.join(sorted(policy.escalate_to))} may decide too."
            )
    if (expires_at := policy.expires_at(since)) is not None:
        outcome = {
            OnExpiry.REJECT: "it is rejected",
            OnExpiry.APPROVE: "it is approved",
            OnExpiry.NONE: "it keeps waiting",
        }[policy.on_expiry]
        if expires_at > now:
            until = _words(timeuntil(expires_at, now, depth=1))
            lines.append(f"Expires {instant_text(expires_at, zone)} (in {until}): then {outcome}.")
        else:
            lines.append(f"Expired {instant_text(expires_at, zone)}: {outcome}.")
    return lines


def access_change_summary(change: Any) -> str:
    """What an access change changed, in a line: ``groups: Viewers → Approvers``."""
    before, after = change.before or {}, change.after or {}
    keys = [key for key in {**before, **after} if before.get(key) != after.get(key)]

    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ", ".join(map(str, value)) or "none"
        return "—" if value in (None, "") else str(value)

    return "; ".join(f"{key}: {shown(before.get(key))} → {shown(after.get(key))}" for key in keys)


@dataclass(frozen=True)
class StepRow:
    """A step as a person reads it: numbered from 1, its outcome in plain words."""

    number: int
    step: Any
    outcome: str
    badge: str  # the status class of its badge
    took: str
    outputs: str  # the keys it wrote, shown inert


def step_rows(run: Any, steps: Any) -> list[StepRow]:
    """``steps`` of ``run`` for a page: the step paused at shows the suspension
    ("Waiting for a decision"), the gate a run was rejected at shows "Rejected"."""
    suspension = run.suspension
    rows = []
    for step in steps:
        outcome, badge = step.get_status_display(), step.status
        if (
            suspension is not None
            and step.component == suspension.gate
            and step.status == "skipped"
        ):
            outcome, badge = suspension.label, "suspended"
        elif run.status == "rejected" and step.component == run.suspended_at_node:
            outcome, badge = "Rejected", "rejected"
        outputs = inert_text(", ".join(map(str, step.output_keys or [])))
        rows.append(
            StepRow(
                step.step_index + 1, step, outcome, badge, human_duration(step.duration_ms), outputs
            )
        )
    return rows


# What a terminal or a page acts on or hides rather than shows: controls (C0, DEL,
# C1; ESC opens screen-clearing CSI and OSC 8 link sequences), format characters
# (bidi overrides and isolates, zero-width characters, tags), line and paragraph
# separators, and lone surrogates (no UTF-8 text holds one).
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def inert_text(value: object, *, multiline: bool = False) -> str:
    """Stored text shown as it is, never acted on: each character a terminal, a mail
    header or a page would act on or hide (``HIDDEN_CATEGORIES``) is written as its
    Python escape (``\\x1b``, ``\\u202e``). ``multiline`` keeps newlines and tabs."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(
        char
        if char.isprintable()
        or (multiline and char in "\n\t")
        or unicodedata.category(char) not in HIDDEN_CATEGORIES
        else _escaped(char)
        for char in text
    )


def _escaped(char: str) -> str:
    if char in NAMED_ESCAPES:
        return NAMED_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
