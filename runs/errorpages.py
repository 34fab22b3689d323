"""The console's error pages, shown whether DEBUG is on or off.

Imports nothing of the app: Django's logging set-up imports the reporter
(``DEFAULT_EXCEPTION_REPORTER``) before the apps are ready.
"""

from __future__ import annotations

from django.core.exceptions import BadRequest, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.shortcuts import render
from django.utils.safestring import SafeString, mark_safe
from django.views import defaults
from django.views.debug import ExceptionReporter


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The console's 404 page (``handler404``): what is missing in words, when the code
    said it; never the name of an exception class ("Resolver404")."""
    said = exception.args[0] if exception is not None and exception.args else None
    return render(
        request, "404.html", {"message": said if isinstance(said, str) else ""}, status=404
    )


class ErrorPageReporter(ExceptionReporter):
    """Django's error reporter (``DEFAULT_EXCEPTION_REPORTER``), showing the browser the
    page production shows where DEBUG would show the traceback and the settings.

    Django still logs the error with its traceback (``django.request``), and an
    emailed report (``is_email``) is Django's own.
    """

    def _page(self) -> HttpResponse:
        if self.request is None:  # not a request's error: no page to show
            return HttpResponseServerError("Server error (500)", content_type="text/plain")
        error = self.exc_value
        if isinstance(error, BadRequest | SuspiciousOperation):
            return defaults.bad_request(self.request, error)
        return defaults.server_error(self.request)

    def get_traceback_html(self) -> SafeString:
        if self.is_email:
            return super().get_traceback_html()
        return mark_safe(self._page().content.decode())  # noqa: S308 — our rendered page

    def get_traceback_text(self) -> SafeString:
        if self.is_email:
            return super().get_traceback_text()
        return mark_safe(self._page().content.decode())  # noqa: S308 — our rendered page
