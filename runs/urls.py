from django.urls import path

from runs import views

app_name = "approvals"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("<str:run_id>/", views.review, name="review"),
    path("<str:run_id>/reopen/", views.reopen, name="reopen"),
]
