"""Login attempts for one username run one at a time, so lockout bounds password checks.

django-axes checks whether a username and address are locked out before a password
is checked, and counts the failure after. Attempts sent in parallel all pass the
check before any of them is counted: a burst of 20 wrong passwords got 8 to 14
password checks against a limit of 5 under gunicorn, up to 20 under runserver.

``serialize_login_attempts(view)`` wraps a login view. A POST naming an existing
user runs inside a transaction that first locks that user's row (``SELECT … FOR
UPDATE`` on PostgreSQL; on SQLite the database's write lock, taken when the
transaction begins). The next attempt for that username starts when the previous
one has committed its failure, and sees it: a burst checks at most
``AXES_FAILURE_LIMIT`` passwords per username and address, whether the attempts
arrive in threads, worker processes or on other hosts.

A username that names no user has no password to guess: its attempts take no lock.
On SQLite other writers wait while an attempt checks its password (PBKDF2, a few
tenths of a second); once a username and address are locked out, their attempts no
longer check passwords and hold the lock only for a few queries.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UsernameField
from django.contrib.auth.views import LoginView
from django.db import transaction
from django.http import HttpRequest, HttpResponseBase

View = Callable[..., HttpResponseBase]


def serialize_login_attempts(view: View) -> View:
    """``view`` with each POST for an existing username run under that user's row lock."""

    @wraps(view)
    def serialized(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        # The username as the login form cleans it before authenticating (stripped,
        # NFKC-normalized): another spelling of it must not escape the lock.
        user_model = get_user_model()
        field = user_model._meta.get_field(user_model.USERNAME_FIELD)
        username = UsernameField(max_length=getattr(field, "max_length", None) or 254).to_python(
            request.POST.get("username")
        )
        user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username})
        if not username or not user.exists():
            return view(request, *args, **kwargs)
        with transaction.atomic():
            list(user.select_for_update().values_list("pk", flat=True))
            return view(request, *args, **kwargs)

    return serialized


login = serialize_login_attempts(LoginView.as_view())
admin_login = serialize_login_attempts(admin.site.login)
