"""The runs list's filters: every option comes from a constant or an index, never a table scan."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from runs import selectors
from runs.models import Run
from runs.presentation import inert_text


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, label in Run.Status.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        value = self.value()
        if value is None:
            return queryset
        if value not in Run.Status.values:
            raise IncorrectLookupParameters(f"Unknown status {value!r}.")
        return queryset.filter(status=value)


class BlueprintFilter(admin.SimpleListFilter):
    """Blueprint names read from the (blueprint, created) index, one step per name."""

    title = "blueprint"
    parameter_name = "blueprint"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, inert_text(name)) for name in selectors.blueprint_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        value = self.value()
        return queryset if value is None else queryset.filter(blueprint_name=value)


class FlowTypeFilter(admin.SimpleListFilter):
    title = "flow type"
    parameter_name = "flow"
    FLOW_TYPES = ["sequential", "conditional", "graph"]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(flow, flow) for flow in self.FLOW_TYPES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        value = self.value()
        return queryset if value is None else queryset.filter(flow_type=value)


class HasErrorFilter(admin.SimpleListFilter):
    title = "error"
    parameter_name = "error"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Has an error"), ("no", "No error")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        match self.value():
            case None:
                return queryset
            case "yes":
                return queryset.exclude(error__isnull=True).exclude(error="")
            case "no":
                return queryset.filter(error__isnull=True)
            case other:
                raise IncorrectLookupParameters(f"Unknown error filter {other!r}.")


LAST_24_HOURS = "24h"
ISO_DAY = re.compile(r"\d{4}-\d\d-\d\d", re.ASCII)


def _midnight(day: date, zone: tzinfo | None) -> datetime | None:
    """The start of ``day`` in ``zone``; None when it is before the first instant a
    database can hold (1 January of year 1 east of UTC): no bound, then."""
    start = datetime.combine(day, time.min, tzinfo=zone)
    try:
        start.astimezone(UTC)
    except OverflowError:
        return None
    return start


class CreatedFilter(admin.ListFilter):
    """Created today, in the last 7 or 30 days, or between two dates (inclusive).

    Days are the reader's (Django's current time zone). A date that is not one
    (``2026-02-30``, ``yesterday``) or a From after the To is said above the list
    and next to the dates, and that range is not applied: the list is never
    silently empty, nor reset with Django's bare ``?e=1``.
    """

    title = "created"
    template = "admin/runs/created_filter.html"
    PRESETS = {"today": 0, "7d": 7, "30d": 30}
    PARAMETERS = ("created", "created_from", "created_to")

    def __init__(self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any):
        super().__init__(request, params, model, model_admin)
        self.values: dict[str, str] = {}
        for name in self.PARAMETERS:
            if name in params:
                value = params.pop(name)
                self.values[name] = value[-1] if isinstance(value, list) else value
        self.request = request
        self.error = ""
        self.start_day, self.end_day = self._range()

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.PARAMETERS)

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        current = self.values.get("created")
        options = [
            ("", "Any time"),
            (LAST_24_HOURS, "Last 24 hours"),
            ("today", "Today"),
            ("7d", "Last 7 days"),
            ("30d", "Last 30 days"),
        ]
        for value, label in options:
            yield {
                "selected": (current or "") == value and not self._range_given(),
                "query_string": changelist.get_query_string(
                    {"created": value} if value else {}, list(self.PARAMETERS)
                ),
                "display": label,
            }

    def _range_given(self) -> bool:
        return bool(self.values.get("created_from") or self.values.get("created_to"))

    def _range(self) -> tuple[date | None, date | None]:
        """The From and To days asked for; on a mistake, neither, and ``error`` says why."""
        mistakes = []
        days: dict[str, date | None] = {}
        for name, label in (("created_from", "From"), ("created_to", "To")):
            value = self.values.get(name, "").strip()
            days[name] = None
            if not value:
                continue
            try:
                # Only YYYY-MM-DD: fromisoformat also takes 20261130 and 2026-W48-1.
                if not ISO_DAY.fullmatch(value):
                    raise ValueError(value)
                days[name] = date.fromisoformat(value)
            except ValueError:
                mistakes.append(f"{label} “{inert_text(value[:40])}” is not a date")
        start, end = days["created_from"], days["created_to"]
        if mistakes:
            self.error = f"{'; '.join(mistakes)}: write dates as YYYY-MM-DD (2026-11-30)."
        elif start and end and start > end:
            self.error = (
                f"From ({start.isoformat()}) is after To ({end.isoformat()}): no run can be "
                "created in between. Swap the dates or change one."
            )
        if self.error:
            self.error += " The list is not filtered by these dates."
            return None, None
        return start, end

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        now = timezone.localtime()  # the reader's zone: their days
        preset = self.values.get("created")
        if preset:
            if preset == LAST_24_HOURS:  # the dashboard's "failures in the last 24 h"
                queryset = queryset.filter(created_at__gte=now - timedelta(hours=24))
            elif preset in self.PRESETS:
                start = datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)
                since = start - timedelta(days=self.PRESETS[preset])
                queryset = queryset.filter(created_at__gte=since)
            else:
                raise IncorrectLookupParameters(f"Unknown period {preset!r}.")
        if self.error and not getattr(request, "_created_filter_told", False):
            request._created_filter_told = True  # type: ignore[attr-defined]  # once a page
            messages.error(request, self.error)
        first = _midnight(self.start_day, now.tzinfo) if self.start_day else None
        if first is not None:
            queryset = queryset.filter(created_at__gte=first)
        # Up to the end of the To day (date.max: no bound).
        after = (
            _midnight(self.end_day + timedelta(days=1), now.tzinfo)
            if self.end_day and self.end_day < date.max
            else None
        )
        if after is not None:
            queryset = queryset.filter(created_at__lt=after)
        return queryset

    def other_params(self) -> list[tuple[str, str]]:
        """The list's other query parameters, kept by the custom range form."""
        return [
            (name, value)
            for name, values in self.request.GET.lists()
            if name not in self.PARAMETERS and name != "p"
            for value in values
        ]

    def zone_name(self) -> str:
        """The zone the days are in (the reader's), as the filter's help says it."""
        return timezone.get_current_timezone_name()

    def range_values(self) -> dict[str, str]:
        """The current custom range, for the filter's little form."""
        return {name: self.values.get(name, "") for name in ("created_from", "created_to")}
