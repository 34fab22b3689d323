"""Every environment variable the console reads, in one list.

``settings.py`` reads them; the README's Configuration table is printed from this
list (``python -m neurocore_console.environment``); ``tests/test_settings.py``
checks that the list, the table and what ``settings.py`` reads agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    """One or more related environment variables: what they mean, their default."""

    names: tuple[str, ...]
    meaning: str
    default: str


VARIABLES = [
    Variable(
        ("DATABASE_URL",),
        "the database (`sqlite:///path` or `postgres://user@host:port/name`)",
        "SQLite file `var/console.sqlite3`",
    ),
    Variable(("DJANGO_SECRET_KEY",), "signing key; **required** unless `DJANGO_DEBUG` is on", "—"),
    Variable(("DJANGO_DEBUG",), "`1` for local development", "off"),
    Variable(
        ("DJANGO_ALLOWED_HOSTS",), "comma-separated host names", "`localhost,127.0.0.1,[::1]`"
    ),
    Variable(
        ("DJANGO_CONN_MAX_AGE",),
        "seconds a worker keeps its database connection between requests (0: one per "
        "request; `runserver` always closes it with the request)",
        "600",
    ),
    Variable(
        ("NEUROCORE_PROJECT_ROOT",),
        "the NeuroCore project (`neurocore.yaml`, `skills/`, `blueprints/`) whose skills "
        "resume runs",
        "`examples/demo`",
    ),
    Variable(
        ("DJANGO_EMAIL_BACKEND",),
        "Django email backend for approver notifications",
        "console with `DEBUG`, else SMTP",
    ),
    Variable(
        ("EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS"),
        "the SMTP server",
        "`localhost`, 25",
    ),
    Variable(
        ("EMAIL_TIMEOUT",),
        "seconds any SMTP operation may take before the send fails (and is retried later)",
        "10",
    ),
    Variable(
        ("DJANGO_DEFAULT_FROM_EMAIL",),
        "the sender of approver notifications",
        "`console@localhost`",
    ),
    Variable(("DJANGO_STATIC_ROOT",), "where `collectstatic` puts static files", "`var/static`"),
    Variable(
        ("DJANGO_HTTPS", "DJANGO_BEHIND_TLS_PROXY"),
        "HTTPS settings (default on without `DEBUG`); trust the proxy's `X-Forwarded-Proto`",
        "on, off",
    ),
    Variable(
        ("DJANGO_HSTS_SECONDS",),
        "how long browsers must keep to HTTPS (Strict-Transport-Security)",
        "31536000 (a year)",
    ),
    Variable(
        ("DJANGO_TRUSTED_PROXY_COUNT",),
        "how many proxies in front of the console append to `X-Forwarded-For` (the console "
        "must be reachable only through them): the client's address, for lockouts and "
        "decisions, is the entry that many from the right",
        "0: the header is ignored",
    ),
    Variable(("SESSION_IDLE_HOURS",), "a session ends after this long without a request", "8"),
    Variable(
        ("CONSOLE_BASE_URL",),
        "the console's public address, for links in emails",
        "`http://127.0.0.1:8000`",
    ),
    Variable(
        ("RESUME_HEARTBEAT_INTERVAL", "RESUME_STALE_AFTER", "RESUME_WATCHDOG_INTERVAL"),
        "seconds: a worker's heartbeat while it resumes or replays a run, the silence after "
        "which (with its lease free) another worker takes the action over, how often the "
        "worker's threads look for work (checked: stale at least twice the heartbeat)",
        "5, 20, 5",
    ),
    Variable(
        ("RUN_STALLED_AFTER",),
        "seconds without progress (a save, a step ending, its worker's heartbeat) after "
        "which a running run is shown as possibly stopped",
        "600 (10 minutes)",
    ),
    Variable(
        ("DEADLINES_INTERVAL",),
        "seconds between the worker's passes over approval deadlines (reminders, "
        "escalation, expiry): an expiry happens at most this long after its time",
        "60",
    ),
]


def names() -> set[str]:
    """Every variable's name."""
    return {name for variable in VARIABLES for name in variable.names}


def markdown_table() -> str:
    """The README's Configuration table."""
    rows = ["| variable | meaning | default |", "| --- | --- | --- |"]
    for variable in VARIABLES:
        shown = ", ".join(f"`{name}`" for name in variable.names)
        rows.append(f"| {shown} | {variable.meaning} | {variable.default} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
