"""URL configuration of the console."""

from django.contrib import admin
from django.urls import include, path

from runs import bulk_views, delegation_views, login
from runs.views import healthz, home, logout, time_zone

# The console's 404 page, also with DEBUG on (runs.middleware.ConsoleErrorPagesMiddleware).
handler404 = "runs.errorpages.not_found"

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("approvals/", include("runs.urls")),
    path("decide/", bulk_views.decide_many, name="decide_many"),
    path("away/", delegation_views.away, name="away"),
    path("away/<int:delegation_id>/end/", delegation_views.away_end, name="away_end"),
    # Both login forms check a username's passwords one attempt at a time (runs.login),
    # ahead of the auth and admin URLs that would otherwise serve them.
    path("accounts/login/", login.login, name="login"),
    path("accounts/logout/", logout, name="logout"),
    path("accounts/time-zone/", time_zone, name="time_zone"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/login/", login.admin_login),
    path("admin/", admin.site.urls),
]
