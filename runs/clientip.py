"""The address of the client that sent a request: one answer for lockouts and audits.

``client_address(request)`` takes a Django ``HttpRequest`` and returns the client's
IP address as a string (``None`` when the server gave no ``REMOTE_ADDR``). django-axes
locks out by it (``AXES_CLIENT_IP_CALLABLE``) and a decision records it
(``Decision.client_address``).

With ``TRUSTED_PROXY_COUNT = 0`` (``DJANGO_TRUSTED_PROXY_COUNT``, the default) it is
``REMOTE_ADDR``, the address that opened the connection: whatever ``X-Forwarded-For``
a client sends changes nothing.

Behind N trusted proxies, each proxy appends the address it received the request
from to ``X-Forwarded-For``; the last proxy's own address is ``REMOTE_ADDR``. The
client's address is then the N-th entry from the right: entries further left were
written by the client and are not believed. A request whose ``X-Forwarded-For`` has
fewer than N entries, or no address at that place, did not come through the proxies
as configured: its ``REMOTE_ADDR`` is used. The proxies must be the only way to
reach the console, or a client connecting directly could name any address.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The IP address of the client behind ``settings.TRUSTED_PROXY_COUNT`` proxies."""
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(hops) < proxies:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-proxies]))
    except ValueError:
        return remote
