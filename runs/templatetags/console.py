"""Template filters of the console's pages."""

from __future__ import annotations

from django import template

from runs.converters import quote_run_id
from runs.presentation import inert_text

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
