"""What every admin of the console shares: its change list, read-only history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.http import Http404, HttpRequest
from django.utils.safestring import SafeString

from runs import (
    converters,  # noqa: F401 — registers <run_id:…>
)
from runs.presentation import instant_html


class ConsoleChangeList(ChangeList):
    """Django's change list, with out-of-range dates in the date hierarchy refused.

    Django 6.1.3 answers 500 for ``?decided_at__year=9999`` (fixed upstream
    after that release) and for a year too large for a C long: both are a bad
    parameter, shown as Django shows one (the list, unfiltered, with ``?e=1``).
    """

    def get_filters(self, request: HttpRequest) -> Any:
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error


class ConsoleModelAdmin(admin.ModelAdmin):
    """What every admin of the console shares: its change list, titled plainly."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ConsoleChangeList

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        """The list, titled with what it lists ("Runs"), not "Select run to view"."""
        title = str(self.model._meta.verbose_name_plural).capitalize()
        return super().changelist_view(request, {"title": title, **(extra_context or {})})


class ReadOnlyAdmin(ConsoleModelAdmin):
    """History is never edited: no add, change or delete through the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        """No "History" page: it lists the changes made through the admin, and nobody
        changes these rows (their own fields say who did what and when)."""
        raise Http404("These records are never changed, so they have no history of changes.")


def csv_safe(value: object) -> object:
    """Keep a spreadsheet from reading a stored text as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class Echo:
    """A file-like object whose write returns the line, for streaming CSV."""

    def write(self, value: str) -> str:
        return value


def instant_column(field: str, description: str) -> Any:
    """A list column showing the instant ``field`` as every page does (in the
    reader's zone, the zone said, the ISO instant as its tooltip), sorted by it."""

    @admin.display(description=description, ordering=field)
    def column(model_admin: admin.ModelAdmin, obj: Any) -> SafeString:
        return instant_html(getattr(obj, field))

    return column
