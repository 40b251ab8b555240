"""The instructor's console (jobs.console), under /admin/console/."""

from django.urls import path

from .console import (
    charts_page,
    costs_page,
    job_action,
    participants_page,
    queue_action,
    queue_page,
    state,
    workflows_page,
    workspace_action,
)

app_name = "console"

urlpatterns = [
    path("", queue_page, name="queue"),
    path("state", state, name="state"),
    path("jobs/<uuid:job_id>/<str:action>", job_action, name="job"),
    path("workspaces/<str:slug>/<str:action>", workspace_action, name="workspace"),
    path("participants/", participants_page, name="participants"),
    path("workflows/", workflows_page, name="workflows"),
    path("costs/", costs_page, name="costs"),
    path("charts/", charts_page, name="charts"),
    path("<str:action>", queue_action, name="queue_action"),
]
