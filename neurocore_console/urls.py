"""URL configuration of the console."""

from django.contrib import admin
from django.urls import include, path

from runs.views import healthz, home

urlpatterns = [
    path("", home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("approvals/", include("runs.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
