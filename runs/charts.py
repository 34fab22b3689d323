"""Server-side SVG charts for the dashboard: geometry computed here, drawn by the template."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date

from runs.models import Run
from runs.presentation import human_duration

CHART_STATUS_COLORS: dict[str, str] = {
    Run.Status.COMPLETED: "#3c9a5f",
    Run.Status.FAILED: "#c4443b",
    Run.Status.SUSPENDED: "#e0a526",
    Run.Status.RUNNING: "#4a72d9",
    Run.Status.CANCELLED: "#9aa1ad",
    Run.Status.REJECTED: "#6a3fb5",
}
PERCENTILE_COLORS = {"p50": "#4a72d9", "p90": "#e0a526", "p99": "#c4443b"}


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class Label:
    """A text on a chart; ``anchor`` is SVG's text-anchor (start, middle, end)."""

    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[Label]  # the bars' names: days, blueprints
    legend: list[tuple[str, str]]  # color, label
    # The scale: its values (0 and the largest) and a line at each.
    axis: list[Label]
    gridlines: list[tuple[float, float, float, float]]  # x1, y1, x2, y2


def day_label(day: date) -> str:
    """A day as the charts name it: 27 Nov."""
    return f"{day.day} {day:%b}"


def runs_per_day(per_day: list[tuple[date, dict[str, int]]], *, width: int = 640) -> Chart:
    """Stacked bars: runs created each day, by status, on a scale from 0 to the busiest day."""
    height, bottom, top, left = 200, 24, 10, 40
    slot = (width - left) / max(len(per_day), 1)
    peak = max((sum(counts.values()) for _, counts in per_day), default=0)
    scale = (height - bottom - top) / (peak or 1)
    bars, labels = [], []
    for index, (day, counts) in enumerate(per_day):
        x, y = left + index * slot + slot * 0.15, float(height - bottom)
        for status in Run.Status.values:
            count = counts.get(status, 0)
            if count:
                bar_height = count * scale
                y -= bar_height
                bars.append(
                    Bar(
                        x,
                        y,
                        slot * 0.7,
                        bar_height,
                        CHART_STATUS_COLORS[status],
                        f"{day_label(day)}: {count} {Run.Status(status).label.lower()}",
                    )
                )
        labels.append(Label(x + slot * 0.35, float(height - 8), day_label(day)))
    base, ceiling = float(height - bottom), float(height - bottom - peak * scale)
    axis = [Label(left - 6, base + 4, "0", "end")]
    gridlines = [(float(left), base, float(width), base)]
    if peak:
        axis.append(Label(left - 6, ceiling + 4, f"{peak:,}", "end"))
        gridlines.append((float(left), ceiling, float(width), ceiling))
    legend = [(CHART_STATUS_COLORS[value], label) for value, label in Run.Status.choices]
    return Chart(width, height, bars, labels, legend, axis, gridlines)


def duration_percentiles(
    durations: list[tuple[str, list[float]]], *, width: int = 640
) -> tuple[Chart, list[tuple[str, dict[str, float]]]]:
    """Horizontal bars: p50, p90 and p99 run duration per blueprint, on a scale from 0
    to the longest p99."""
    rows = [(name, percentiles(values)) for name, values in durations if values]
    row_height, label_width, right, bottom = 30, 160, 40, 22
    plotted = max(len(rows), 1) * row_height + 5
    height = plotted + bottom
    peak = max((p["p99"] for _, p in rows), default=0)
    scale = (width - label_width - right) / (peak or 1)
    bars, labels = [], []
    for index, (name, values) in enumerate(rows):
        y = index * row_height + 5
        for offset, key in enumerate(("p99", "p90", "p50")):
            bars.append(
                Bar(
                    label_width,
                    y + offset * 7,
                    max(values[key] * scale, 1),
                    7,
                    PERCENTILE_COLORS[key],
                    f"{name} {key}: {values[key]:.0f} ms",
                )
            )
        labels.append(Label(4.0, float(y + 16), name[:24], "start"))
    end = label_width + peak * scale
    axis = [Label(label_width, plotted + 15, "0", "start")]
    gridlines = [(float(label_width), 0.0, float(label_width), float(plotted))]
    if peak:
        axis.append(Label(end, plotted + 15, human_duration(peak), "middle"))
        gridlines.append((end, 0.0, end, float(plotted)))
    legend = [(color, key) for key, color in PERCENTILE_COLORS.items()]
    return Chart(width, height, bars, labels, legend, axis, gridlines), rows


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90 and p99 of some durations."""
    if len(values) == 1:
        return dict.fromkeys(("p50", "p90", "p99"), values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}
