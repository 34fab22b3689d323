"""Logging filters of the console (named in ``settings.LOGGING``)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class ForbiddenInOneLine(logging.Filter):
    """Log a refusal (``PermissionDenied``, a 403) as its one line, without the traceback.

    Django logs every 403 with the exception that caused it; for a refusal the
    console meant to make, the traceback says nothing and buries real errors.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PermissionDenied):
            record.exc_info = None
            record.exc_text = None
        return True
