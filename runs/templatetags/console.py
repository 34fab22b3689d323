"""Template filters of the console's pages."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.safestring import SafeString

from runs.converters import quote_run_id
from runs.presentation import due_words, inert_text, instant_html

register = template.Library()


@register.filter
def inert(value: object) -> str:
    """Stored text with the characters a page would act on (bidi overrides, controls,
    lone surrogates) written as escapes; HTML escaping still follows."""
    return inert_text(value)


@register.filter
def run_id_in_url(run_id: str) -> str:
    """A run id as the one path segment admin URLs take (``quote_run_id``)."""
    return quote_run_id(run_id)


@register.filter
def instant(value: datetime | None) -> SafeString:
    """An instant in the reader's zone, the one way the console writes it
    (``30 Nov 2026, 08:35 CET``), its tooltip the ISO 8601 instant."""
    return instant_html(value)


@register.filter
def due_in_words(due_at: datetime | None, now: datetime | None = None) -> str:
    """A due time in words as of ``now`` (default: the clock): "Due in 3 hours",
    "Overdue by 2 days"; "" for none."""
    return due_words(due_at, now=now or timezone.now()) if due_at is not None else ""
