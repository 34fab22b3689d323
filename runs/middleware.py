"""Request middleware of the console."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils import timezone

from runs.errorpages import not_found
from runs.selectors import chosen_time_zone
from runs.zones import BROWSER_ZONE_COOKIE, reader_zone


class SessionIdleRefreshMiddleware:
    """Slides a signed-in session's idle timeout, writing the session at most once a minute.

    Saving it on every request (``SESSION_SAVE_EVERY_REQUEST``) would make every
    page view a database write and commit; the idle timeout (``SESSION_COOKIE_AGE``)
    needs no more than a minute's precision. Goes after the authentication
    middleware, so its response phase runs before the session middleware saves.
    """

    REFRESH_SECONDS = 60
    KEY = "_idle_refreshed_at"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        user = getattr(request, "user", None)
        try:
            if session is None or user is None or not user.is_authenticated:
                return response
        except DatabaseError:  # the session could not be read (database down): leave it
            return response
        now = int(time.time())
        if now - session.get(self.KEY, 0) >= self.REFRESH_SECONDS:
            session[self.KEY] = now  # modified: saved with a fresh expiry, cookie renewed
        return response


class RefuseNulMiddleware:
    """Refuses a request whose path or query holds a NUL character (400).

    No run id, name or value the console holds contains NUL (the store refuses
    it in ids; PostgreSQL text cannot hold it), so such a request can match
    nothing; refused here, it never reaches a query that PostgreSQL would fail.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any(
            "\x00" in key or "\x00" in value
            for key, values in request.GET.lists()
            for value in values
        ):
            return HttpResponseBadRequest(
                "This address contains a NUL character (%00), which no run id or value "
                "can contain. Nothing was looked up.",
                content_type="text/plain; charset=utf-8",
            )
        return self.get_response(request)


class ConsoleErrorPagesMiddleware:
    """The console's own 404 page with DEBUG on too (``make run``); errors: ``runs.errorpages``.

    With DEBUG on, Django shows anyone, signed in or not, every URL pattern of
    the console for an unknown address, and a traceback with the settings for an
    error. The demo is shown to people who are not developers: they get the
    pages production shows, and the terminal still gets the traceback.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.DEBUG and response.status_code == 404 and request.resolver_match is None:
            return not_found(request)  # no URL matched: not the list of every pattern
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if settings.DEBUG and isinstance(exception, Http404):
            return not_found(request, exception)
        return None


class ReaderTimeZoneMiddleware:
    """Shows every instant of a request in the reader's time zone.

    The zone the signed-in person chose (one query), else their browser's (the
    ``tz`` cookie the pages' script sets), else ``TIME_ZONE``; a cookie naming no
    known zone is ignored. Activated for the whole request (Django's current
    time zone): templates, admin columns, forms and the date filters' days all
    follow it. Goes after the authentication middleware.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        reader = reader_zone(chosen=self._chosen(request), browser=self._browser(request))
        request.reader_zone = reader  # type: ignore[attr-defined]
        with timezone.override(reader.zone):
            return self.get_response(request)

    @staticmethod
    def _chosen(request: HttpRequest) -> str:
        user = getattr(request, "user", None)
        try:
            if user is None or not user.is_authenticated:
                return ""
            return chosen_time_zone(user)
        except DatabaseError:  # the database is down: the browser's zone will do
            return ""

    @staticmethod
    def _browser(request: HttpRequest) -> str:
        return request.COOKIES.get(BROWSER_ZONE_COOKIE, "")
