"""Run ids in URLs: one way of quoting them, everywhere.

NeuroCore accepts any text as a run id ("batch/2026/1", a newline, "job_5Fx").
URLs carry it quoted the way Django's admin quotes primary keys
(``django.contrib.admin.utils.quote``: "/" becomes "_2F", "_" becomes "_5F"),
so an id is one path segment and the admin's own links and ours agree.
``reverse()`` quotes, the view receives the id unquoted.
"""

from __future__ import annotations

from django.contrib.admin.utils import quote, unquote
from django.urls import register_converter


def quote_run_id(run_id: str) -> str:
    """A run id as one path segment: quoted as the admin quotes keys, and "." or ".."
    written "_2E" / "_2E_2E" (browsers and mail clients resolve dot segments away)."""
    quoted = quote(run_id)
    return quoted.replace(".", "_2E") if quoted in (".", "..") else quoted


DOT_SEGMENTS = {"_2E": ".", "_2E_2E": ".."}  # "_" of an id is quoted "_5F": no clash


def unquote_run_id(segment: str) -> str:
    """The run id a path segment written by ``quote_run_id`` names."""
    return DOT_SEGMENTS.get(segment) or unquote(segment)


class RunIdConverter:
    """``<run_id:name>``: an admin-quoted run id in the URL, the run id in the view."""

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return unquote_run_id(value)

    def to_url(self, value: str) -> str:
        return quote_run_id(value)


register_converter(RunIdConverter, "run_id")
