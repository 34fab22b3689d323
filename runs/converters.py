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


class RunIdConverter:
    """``<run_id:name>``: an admin-quoted run id in the URL, the run id in the view."""

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return unquote(value)

    def to_url(self, value: str) -> str:
        return quote(value)


register_converter(RunIdConverter, "run_id")
