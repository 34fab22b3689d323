"""Forms: parse and validate what people send; services decide what it means."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.db import models

from runs.policies import InputSpec
from runs.selectors import storable
from runs.services.decisions import NOTE_MAX_LENGTH
from runs.zones import zone_choices

INPUT_PREFIX = "input_"  # the form field of a gate input: input_<name>
MYSELF = ""  # deciding as oneself, not for someone whose delegation one holds


class DecisionForm(forms.Form):
    """Approve or reject one suspension of a run (the one the page was shown for)."""

    CHOICE_ERROR = "Choose Approve or Reject."

    decision = forms.ChoiceField(
        choices=[("approve", "Approve"), ("reject", "Reject")],
        error_messages={"required": CHOICE_ERROR, "invalid_choice": CHOICE_ERROR},
    )
    note = forms.CharField(
        required=False,
        max_length=NOTE_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": NOTE_MAX_LENGTH}),
        help_text="Why you decided so. Required to reject.",
        error_messages={
            "max_length": f"Keep the note to {NOTE_MAX_LENGTH} characters at most "
            "(it has %(show_value)d)."
        },
    )
    # Not stripped: a gate is named as NeuroCore named it, spaces and all.
    gate = forms.CharField(widget=forms.HiddenInput, strip=False)
    suspended_at = forms.DateTimeField(widget=forms.HiddenInput)

    def clean_suspended_at(self) -> datetime:
        return storable_instant(self.cleaned_data["suspended_at"])

    def __init__(
        self,
        *args: Any,
        inputs: Sequence[InputSpec] = (),
        deciding_as: Sequence[User] = (),
        user: User | None = None,
        **kwargs: Any,
    ) -> None:
        """The form for a gate asking for ``inputs``, decided by ``user`` as one of
        ``deciding_as`` (a choice appears when they may decide for someone else).
        The service validates the answers against the gate's declaration; the
        fields here only present them (type, bounds, choices)."""
        super().__init__(*args, **kwargs)
        self.inputs = list(inputs)
        for spec in self.inputs:
            self.fields[INPUT_PREFIX + spec.name] = _input_field(spec)
        others = [person for person in deciding_as if user is None or person.pk != user.pk]
        if others:
            choices = [(MYSELF, "Myself")] if user in deciding_as else []
            choices += [(str(person.pk), f"For {person.get_username()}") for person in others]
            self.fields["on_behalf_of"] = forms.ChoiceField(
                choices=choices,
                required=False,
                label="Deciding as",
                help_text="You hold a delegation: the decision records you for them.",
            )

    @property
    def input_fields(self) -> list[forms.BoundField]:
        """The gate's input fields, in the declared order, for the template."""
        return [self[INPUT_PREFIX + spec.name] for spec in self.inputs]

    @property
    def answers(self) -> dict[str, Any]:
        """The answers as sent (the service parses and validates them)."""
        return {spec.name: self.cleaned_data.get(INPUT_PREFIX + spec.name) for spec in self.inputs}

    @property
    def on_behalf_of_id(self) -> int | None:
        """The person chosen to decide for, by id (None: oneself)."""
        chosen = self.cleaned_data.get("on_behalf_of") or MYSELF
        return int(chosen) if chosen != MYSELF else None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("decision") == "reject" and not cleaned.get("note"):
            self.add_error("note", "Say why you reject this run: a note is required to reject.")
        return cleaned

    @property
    def approved(self) -> bool:
        return self.cleaned_data["decision"] == "approve"


def _input_field(spec: InputSpec) -> forms.Field:
    """A form field presenting one gate input: typed widgets, bounds, choices."""
    label = spec.title + ("" if spec.required else " (optional)")
    help_text = "Required to approve." if spec.required else ""
    if spec.choices:
        return forms.ChoiceField(
            choices=[("", "—"), *((choice, choice) for choice in spec.choices)],
            required=False,
            label=label,
            help_text=help_text,
        )
    if spec.type == "boolean":
        return forms.NullBooleanField(
            required=False,
            label=label,
            help_text=help_text,
            widget=forms.Select(choices=[("", "—"), ("true", "Yes"), ("false", "No")]),
        )
    attrs: dict[str, Any] = {}
    if spec.type in ("number", "integer"):
        attrs = {"inputmode": "decimal", "step": "1" if spec.type == "integer" else "any"}
        if spec.minimum is not None:
            attrs["min"] = spec.minimum
        if spec.maximum is not None:
            attrs["max"] = spec.maximum
        widget: forms.Widget = forms.NumberInput(attrs=attrs)
    else:
        if spec.max_length:
            attrs["maxlength"] = spec.max_length
        widget = forms.TextInput(attrs=attrs)
    # Sent as text: the service parses it, so a bad value gets the gate's own message.
    return forms.CharField(
        required=False, strip=True, label=label, help_text=help_text, widget=widget
    )


class BulkDecisionForm(DecisionForm):
    """One decision, note and answer for several runs waiting at the same gate.

    ``selection`` carries the suspensions the person was shown (run, gate,
    since), as JSON; each is decided on its own by the service."""

    LIMIT = 100  # runs decided together at most

    selection = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["gate"], self.fields["suspended_at"]
        self.fields.pop("on_behalf_of", None)  # deciding for someone else: one run at a time

    def clean_selection(self) -> list[tuple[str, str, datetime]]:
        try:
            chosen = json.loads(self.cleaned_data["selection"])
            shown = [
                (str(run_id), str(gate), storable_instant(datetime.fromisoformat(since)))
                for run_id, gate, since in chosen
            ]
        except (ValueError, TypeError, RecursionError, forms.ValidationError):
            raise forms.ValidationError(
                "The selection is damaged: choose the runs again."
            ) from None
        if not shown or len(shown) > self.LIMIT:
            raise forms.ValidationError(f"Choose between 1 and {self.LIMIT} runs.")
        if not all(storable(run_id) and storable(gate) for run_id, gate, _ in shown):
            # NUL or a lone surrogate: no run has such an id, and the database refuses it.
            raise forms.ValidationError("The selection is damaged: choose the runs again.")
        return shown


def storable_instant(value: datetime) -> datetime:
    """``value`` if a database can compare it (an aware instant between the years 1 and
    9999 in UTC); ``ValidationError`` otherwise (a form that was tampered with)."""
    try:
        if value.tzinfo is None:
            raise ValueError("no zone")
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise forms.ValidationError("The form is damaged: reload the page.") from None
    return value


class ReopenForm(forms.Form):
    """Why a rejected run goes back to its gate."""

    reason = forms.CharField(
        max_length=NOTE_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2, "maxlength": NOTE_MAX_LENGTH}),
        help_text="Why this run deserves a new decision. Required.",
        error_messages={"required": "Say why you reopen this run: a reason is required."},
    )


class ResumeDataForm(forms.Form):
    """Optional ``resume_data`` for a resume, as a JSON object."""

    resume_data = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text='Optional JSON object handed to the paused step, e.g. {"signal": "go"}. '
        "It cannot answer an approval gate: only a decision on the review page does.",
    )

    def clean_resume_data(self) -> dict[str, Any] | None:
        text = self.cleaned_data["resume_data"].strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(f"This is not valid JSON: {error}.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Give a JSON object ({…}), not a list or a single value.")
        return value


class DelegationForm(forms.Form):
    """Who decides for you while you are away, from when until when."""

    delegate = forms.CharField(
        max_length=254,
        label="Delegate",
        help_text="The username or email of an approver. They decide your runs in your "
        "place, recorded as “them for you”.",
    )
    # Typed as ISO (2026-12-01 09:00), in the reader's zone: a browser's date picker
    # would show its own locale's order (12/01/2026).
    starts_at = forms.DateTimeField(
        label="From",
        help_text="YYYY-MM-DD HH:MM, in your time zone.",
        widget=forms.DateTimeInput(
            format="%Y-%m-%d %H:%M", attrs={"placeholder": "YYYY-MM-DD HH:MM", "size": 16}
        ),
    )
    ends_at = forms.DateTimeField(
        label="Until",
        help_text="YYYY-MM-DD HH:MM, in your time zone.",
        widget=forms.DateTimeInput(
            format="%Y-%m-%d %H:%M", attrs={"placeholder": "YYYY-MM-DD HH:MM", "size": 16}
        ),
    )
    note = forms.CharField(
        required=False,
        max_length=500,
        label="Note (optional)",
        widget=forms.TextInput(attrs={"maxlength": 500}),
    )

    def clean_delegate(self) -> User:
        name = self.cleaned_data["delegate"].strip()
        user = (
            User.objects.filter(is_active=True)
            .filter(models.Q(username=name) | models.Q(email__iexact=name))
            .order_by("pk")
            .first()
        )
        if user is None:
            raise forms.ValidationError(f"No active console user is “{name}”.")
        return user


class TimeZoneForm(forms.Form):
    """The zone a person's pages show instants in; none: their browser's."""

    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        choices=lambda: [("", "Your browser's time zone"), *zone_choices()],
        error_messages={"invalid_choice": "Choose a time zone from the list."},
        help_text="Type a city's first letters to find it in the list.",
    )
