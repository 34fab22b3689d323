"""Settings for NeuroCore Console, driven by the environment.

Every variable read here is listed, with its meaning and default, in
``neurocore_console/environment.py`` (the README's Configuration table is printed
from that list; ``tests/test_settings.py`` checks the three agree).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def env_flag(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable (1/true/yes/on)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated environment variable."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_flag("DJANGO_DEBUG")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random value "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DJANGO_DEBUG=1 for local development."
        )
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 — DEBUG only

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "runs.admin_apps.ConsoleAdminConfig",  # django.contrib.admin with the console's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # Before django_tasks_db: its db_worker command is extended by ours.
    "runs",
    "django_tasks_db",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "runs.middleware.RefuseNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "runs.middleware.SessionIdleRefreshMiddleware",
    "runs.middleware.ReaderTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Inside the others: its 404 and error pages pass through them as any page does.
    "runs.middleware.ConsoleErrorPagesMiddleware",
    # Last: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "neurocore_console.urls"
# With DEBUG on too, a browser is shown the console's error pages, never a traceback
# or the settings (they go to the log): runs.middleware.ConsoleErrorPagesMiddleware.
DEFAULT_EXCEPTION_REPORTER = "runs.errorpages.ErrorPageReporter"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "runs.context_processors.console",
            ],
        },
    },
]

WSGI_APPLICATION = "neurocore_console.wsgi.application"
ASGI_APPLICATION = "neurocore_console.asgi.application"

# --- Database ---------------------------------------------------------------
# SQLite is the embedded default. Agent processes write to it from many threads
# at once, so it runs in WAL mode, takes the write lock when a transaction
# begins (IMMEDIATE: no lock-upgrade deadlocks) and waits for a busy lock
# instead of failing. synchronous=FULL syncs every commit: a step or an
# approval survives a power cut, as with NeuroCore's own SQLiteRunStore.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=FULL",
}

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'console.sqlite3'}",
        # A worker process keeps its connection between requests (a new PostgreSQL
        # connection per page view costs a backend process); checked before reuse.
        # runserver serves each request on a thread of its own: a kept connection
        # would outlive its thread, one per request, until the server runs out.
        conn_max_age=0
        if "runserver" in sys.argv
        else int(os.environ.get("DJANGO_CONN_MAX_AGE", "600")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
    # Tests run on a file, not in memory: threads and other processes share it.
    # Named after the database file, so two checkouts' suites never share one.
    _sqlite_name = Path(DATABASES["default"]["NAME"]).name
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_{_sqlite_name}")}
    VAR_DIR.mkdir(exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
CSRF_FAILURE_VIEW = "runs.views.csrf_failure"

AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses locked-out username+address pairs.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # has_perm(perm, run): the role, narrowed by the run's blueprint scopes.
    "runs.backends.BlueprintScopeBackend",
]
# Brute force: 5 failures lock that username from that address for 15 minutes.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The client's address, for lockouts and the approval audit (runs.clientip): the
# connection's REMOTE_ADDR, or behind DJANGO_TRUSTED_PROXY_COUNT proxies the address
# the outermost of them saw, read from X-Forwarded-For. 0 (the default) believes no
# X-Forwarded-For: a client cannot choose the address it is locked out or recorded by.
_proxies = os.environ.get("DJANGO_TRUSTED_PROXY_COUNT", "0").strip()
if not _proxies.isdecimal():
    raise ImproperlyConfigured(
        f"DJANGO_TRUSTED_PROXY_COUNT must be a number of proxies (0 or more), not {_proxies!r}."
    )
TRUSTED_PROXY_COUNT = int(_proxies)
AXES_CLIENT_IP_CALLABLE = "runs.clientip.client_address"

# Sessions end after SESSION_IDLE_HOURS without a request (default 8): requests
# renew them, at most once a minute (runs.middleware.SessionIdleRefreshMiddleware).
SESSION_COOKIE_AGE = int(float(os.environ.get("SESSION_IDLE_HOURS", "8")) * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
LOGIN_REDIRECT_URL = "/"  # runs.views.home sends each person to their place

# --- Transport and browser security -----------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# No inline script anywhere: the console's pages need none, and neither does the admin.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}
# Served over HTTPS (the default with DEBUG off): secure cookies, redirect to
# HTTPS, HSTS. DJANGO_HTTPS=0 serves plain HTTP (the test servers do).
if env_flag("DJANGO_HTTPS", not DEBUG):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if env_flag("DJANGO_BEHIND_TLS_PROXY"):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- I18N -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
# Instants are stored in UTC; each reader sees them in their zone (the one they
# chose, else their browser's: runs.middleware.ReaderTimeZoneMiddleware), this
# one when neither is known. One format everywhere: runs.presentation.INSTANT_FORMAT.
TIME_ZONE = "UTC"
FORMAT_MODULE_PATH = ["neurocore_console.formats"]
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Background work ----------------------------------------------------------
# Django's tasks framework on the database: enqueuing is part of the
# transaction that records the request; `manage.py db_worker` runs the tasks.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# A resumption's worker proves it is alive this often; a resumption whose
# worker has been silent for RESUME_STALE_AFTER seconds is queued again by any
# other worker's watchdog, which looks every RESUME_WATCHDOG_INTERVAL seconds.
RESUME_HEARTBEAT_INTERVAL = float(os.environ.get("RESUME_HEARTBEAT_INTERVAL", "5"))
RESUME_STALE_AFTER = float(os.environ.get("RESUME_STALE_AFTER", "20"))
RESUME_WATCHDOG_INTERVAL = float(os.environ.get("RESUME_WATCHDOG_INTERVAL", "5"))
# A run that says "running" with no progress (a save, a step ending, its worker's
# heartbeat) for this many seconds is shown as possibly stopped (Run.stall).
RUN_STALLED_AFTER = float(os.environ.get("RUN_STALLED_AFTER", "600"))
# How often each worker's deadlines thread looks for reminders and expiries due.
DEADLINES_INTERVAL = float(os.environ.get("DEADLINES_INTERVAL", "60"))

# --- Email ------------------------------------------------------------------
# Notifications print to the console in development and go out by SMTP
# (EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS) in
# production, unless DJANGO_EMAIL_BACKEND names another backend. Every SMTP
# operation gives up after EMAIL_TIMEOUT seconds (Python's default is to wait for
# ever): a mail server that accepts connections and never answers must not hold
# the worker's notifications thread.
_SMTP = "django.core.mail.backends.smtp.EmailBackend"
_EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend" if DEBUG else _SMTP
)
MAILERS = {
    "default": {
        "BACKEND": _EMAIL_BACKEND,
        "OPTIONS": {
            "host": os.environ.get("EMAIL_HOST", "localhost"),
            "port": int(os.environ.get("EMAIL_PORT", "25")),
            "username": os.environ.get("EMAIL_HOST_USER", ""),
            "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_flag("EMAIL_USE_TLS"),
            "timeout": float(os.environ.get("EMAIL_TIMEOUT", "10")),
        }
        if _EMAIL_BACKEND == _SMTP
        else {},
    }
}
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "console@localhost")
# Absolute links in emails (the review page of a waiting run).
CONSOLE_BASE_URL = os.environ.get("CONSOLE_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# --- NeuroCore --------------------------------------------------------------
NEUROCORE_PROJECT_ROOT = Path(
    os.environ.get("NEUROCORE_PROJECT_ROOT", BASE_DIR / "examples" / "demo")
).resolve()

# One handler, on the root logger: every line is printed once. Django's own
# default gives the "django" logger a console handler of its own under DEBUG,
# which printed each of its lines (the worker's "Task … state=…") twice; its
# handlers are replaced here by none, so its lines reach the root's.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"forbidden_in_one_line": {"()": "runs.logs.ForbiddenInOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django": {"handlers": [], "level": "INFO"},
        # A refusal (403) is one line, not a traceback: it is the console working.
        "django.request": {"filters": ["forbidden_in_one_line"]},
        "runs": {"level": "INFO"},
    },
}
