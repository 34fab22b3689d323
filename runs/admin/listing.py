"""The runs list at a million runs: its paginator, change list and parameters."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.admin.views.main import ALL_VAR, ORDER_VAR, PAGE_VAR
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property

from runs import (
    converters,  # noqa: F401 — registers <run_id:…>
    selectors,
)
from runs.admin.base import ConsoleChangeList
from runs.converters import quote_run_id
from runs.filters import (
    BlueprintFilter,
    CreatedFilter,
    FlowTypeFilter,
    HasErrorFilter,
    StatusFilter,
)
from runs.models import (
    Run,
    RunAction,
    RunQuerySet,
)


class RunPaginator(Paginator):
    """Pages of runs that stay fast among a million.

    The count is ``known_count`` when given (the runs' tally), else at most
    ``cap`` runs counted from an index: "more than 100,000 runs". A search counts
    at most ``SEARCH_CAP``: its common matches are conditions, tested run by run,
    and a list meets 1,001 of them long before 100,001. A page reads
    its run ids from the listing index first, so an OFFSET skips index
    entries, not rows, then reads those runs by key.
    """

    CAP = 100_000
    SEARCH_CAP = selectors.PREFIX_IDS_LIMIT

    def __init__(
        self, *args: Any, known_count: int | None = None, cap: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.known_count = known_count
        self.cap = self.CAP if cap is None else cap

    @cached_property
    def count(self) -> int:
        if self.known_count is not None:
            return self.known_count
        return self.runs.count_up_to(self.cap)

    @property
    def runs(self) -> RunQuerySet:
        """The list being paged (Django's ``object_list``, typed)."""
        return cast(RunQuerySet, self.object_list)

    @property
    def capped(self) -> bool:
        return self.known_count is None and self.count > self.cap

    @property
    def summary(self) -> str:
        """The count in words: 1,234 runs, or more than 100,000 when counting stopped there."""
        if self.capped:
            return f"more than {self.cap:,} runs (narrow the list with the filters)"
        return f"{self.count:,} run{'' if self.count == 1 else 's'}"

    # Django's private hook for building a page (django-stubs does not declare it;
    # tests/test_console.py pins the queries it makes).
    def _get_page(self, object_list: QuerySet[Run], *args: Any, **kwargs: Any) -> Page:
        """Django's hook for the page of runs ``object_list`` (the list, sliced)."""
        ids = list(object_list.values_list("pk", flat=True))
        runs = self.runs.in_bulk(ids)
        return super()._get_page(  # type: ignore[misc]
            [runs[run_id] for run_id in ids if run_id in runs], *args, **kwargs
        )


class RunChangeList(ConsoleChangeList):
    """Counts the steps of the page's runs only, in one query after paging (and notes the
    progress of its running runs: ``selectors.note_progress``).

    A per-row count in the listing query would be computed for every row an
    OFFSET skips too (50,000 of them on page 1,000).
    """

    def url_for_result(self, result: Any) -> str:
        """A run's page, its id quoted the one way run ids are (``quote_run_id``)."""
        return reverse("admin:runs_run_change", args=[quote_run_id(result.pk)])

    # Whether a run on the page is running (and not stalled): the page follows it.
    in_flight = False

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        counts = selectors.step_counts([run.run_id for run in self.result_list])
        for run in self.result_list:
            run.step_count = counts.get(run.run_id, 0)
        selectors.note_progress(self.result_list)
        self.in_flight = any(run.is_progressing for run in self.result_list)


STEPS_PAGE_VAR = "steps"  # the run page's parameter: which page of its steps


def steps_page_link(request: HttpRequest) -> str:
    """The run page's address without its steps page, ready for one: ``?…&steps=``
    (the list's filters it came from, ``_changelist_filters``, are kept)."""
    others = request.GET.copy()
    others.pop(STEPS_PAGE_VAR, None)
    return f"?{others.urlencode()}{'&' if others else ''}{STEPS_PAGE_VAR}="


BULK_SAMPLE = 20  # runs shown (and checked) on the confirmation of "all N runs"


ADMIN_RUN_ACTIONS = [
    RunAction.Kind.RESUME,
    RunAction.Kind.REPLAY,
    RunAction.Kind.CANCEL,
    RunAction.Kind.DELETE,
]


RUN_FILTER_PARAMETERS = frozenset(
    {
        StatusFilter.parameter_name,
        BlueprintFilter.parameter_name,
        FlowTypeFilter.parameter_name,
        HasErrorFilter.parameter_name,
        *CreatedFilter.PARAMETERS,
    }
)


TALLIED_PARAMETERS = {StatusFilter.parameter_name, PAGE_VAR, ORDER_VAR, ALL_VAR}
