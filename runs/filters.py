"""The runs list's filters: every option comes from a constant or an index, never a table scan."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib import admin
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


class CreatedFilter(admin.ListFilter):
    """Created today, in the last 7 or 30 days, or between two dates (inclusive)."""

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

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        now = timezone.localtime()
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
        if start_day := self._day("created_from"):
            queryset = queryset.filter(
                created_at__gte=datetime.combine(start_day, time.min, tzinfo=now.tzinfo)
            )
        if (end_day := self._day("created_to")) and end_day < date.max:
            queryset = queryset.filter(  # up to the end of that day (date.max: no bound)
                created_at__lt=datetime.combine(
                    end_day + timedelta(days=1), time.min, tzinfo=now.tzinfo
                )
            )
        return queryset

    def _day(self, name: str) -> date | None:
        value = self.values.get(name)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise IncorrectLookupParameters(f"{value!r} is not a date (YYYY-MM-DD).") from None

    def other_params(self) -> list[tuple[str, str]]:
        """The list's other query parameters, kept by the custom range form."""
        return [
            (name, value)
            for name, values in self.request.GET.lists()
            if name not in self.PARAMETERS and name != "p"
            for value in values
        ]

    def range_values(self) -> dict[str, str]:
        """The current custom range, for the filter's little form."""
        return {name: self.values.get(name, "") for name in ("created_from", "created_to")}
