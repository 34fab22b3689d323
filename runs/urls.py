from django.urls import path

from runs import (
    converters,  # noqa: F401 — registers <run_id:…>
    views,
)

app_name = "approvals"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("<run_id:run_id>/", views.review, name="review"),
    path("<run_id:run_id>/reopen/", views.reopen, name="reopen"),
]
