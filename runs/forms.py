"""Forms: parse and validate what people send; services decide what it means."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from runs.services.decisions import NOTE_MAX_LENGTH
from runs.zones import zone_choices


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

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("decision") == "reject" and not cleaned.get("note"):
            self.add_error("note", "Say why you reject this run: a note is required to reject.")
        return cleaned

    @property
    def approved(self) -> bool:
        return self.cleaned_data["decision"] == "approve"


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


class TimeZoneForm(forms.Form):
    """The zone a person's pages show instants in; none: their browser's."""

    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        choices=lambda: [("", "Your browser's time zone"), *zone_choices()],
        error_messages={"invalid_choice": "Choose a time zone from the list."},
        help_text="Type a city's first letters to find it in the list.",
    )
