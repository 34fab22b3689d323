"""Time zones: the names the console accepts, and the zone a reader's pages are shown in.

A name is accepted only if it is one of ``zoneinfo.available_timezones()``: a
cookie or a form can name nothing else (no path, no overlong text), so a
hostile value is ignored, never looked up on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from django.utils import timezone

# The cookie the pages' script (runs/static/runs/timezone.js) sets to the browser's zone.
BROWSER_ZONE_COOKIE = "tz"
LONGEST_NAME = 64  # the longest IANA name is 32 characters


@cache
def zone_names() -> frozenset[str]:
    """Every zone name this machine's time zone database knows."""
    return frozenset(available_timezones())


def zone_named(name: object) -> ZoneInfo | None:
    """The zone called ``name``, or None when that is not a known zone's name."""
    if not isinstance(name, str) or not 0 < len(name) <= LONGEST_NAME or name not in zone_names():
        return None
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # listed, yet unreadable: as unknown
        return None


@dataclass(frozen=True)
class ReaderZone:
    """The zone a request's pages are shown in, and where it came from."""

    CHOSEN = "chosen"  # the person chose it (their preference)
    BROWSER = "browser"  # their browser's, from the cookie
    DEFAULT = "default"  # neither known: the server's TIME_ZONE

    zone: tzinfo
    name: str
    source: str

    @property
    def abbreviation(self) -> str:
        """What the zone is called now: JST, CET, UTC (or an offset, ``+04``)."""
        return datetime.now(self.zone).tzname() or self.name

    @property
    def origin(self) -> str:
        """Where the zone came from, in words."""
        return {
            self.CHOSEN: "your choice",
            self.BROWSER: "your browser's zone",
            self.DEFAULT: "the console's default; your browser has not said its zone",
        }[self.source]


def default_zone() -> ReaderZone:
    zone = timezone.get_default_timezone()
    return ReaderZone(zone, timezone.get_default_timezone_name(), ReaderZone.DEFAULT)


def reader_zone(*, chosen: str, browser: object) -> ReaderZone:
    """The zone to show a reader: the one they chose, else their browser's, else the default."""
    if (zone := zone_named(chosen)) is not None:
        return ReaderZone(zone, chosen, ReaderZone.CHOSEN)
    if (zone := zone_named(browser)) is not None:
        return ReaderZone(zone, str(browser), ReaderZone.BROWSER)
    return default_zone()


# The regions of the zones people live in; others (Etc/GMT+1, which is UTC-01:00,
# Factory, localtime, posix/…, US/… aliases) would only mislead in a list to choose from.
CHOSEN_REGIONS = frozenset(
    {
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
    }
)


def zone_choices(*, now: datetime | None = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """The zones people live in, and UTC, for a select: grouped by region and named by
    city, each with its offset now: ``("Asia", [("Asia/Tokyo", "Tokyo (UTC+09:00)"),
    …])``. Typing a city's first letters in the closed select finds it."""
    now = now or timezone.now()
    groups: dict[str, list[tuple[str, str]]] = {}
    for name in sorted(zone_names()):
        if name != "UTC" and name.partition("/")[0] not in CHOSEN_REGIONS:
            continue
        region, _, place = name.partition("/")
        if not place:
            region, place = "Other", name
        *within, city = place.split("/")
        label = city.replace("_", " ") + (f", {'/'.join(within)}" if within else "")
        offset = now.astimezone(ZoneInfo(name)).strftime("%z")
        groups.setdefault(region, []).append((name, f"{label} (UTC{offset[:3]}:{offset[3:]})"))
    return [
        (region, sorted(zones, key=lambda zone: zone[1]))
        for region, zones in sorted(groups.items(), key=lambda item: item[0] == "Other")
    ]
