"""The instructor's console, under /admin/console/: its pages (jobs.console) and its levers,
one URL and one view per verb (jobs.console_actions)."""

from django.urls import path

from . import console_actions as do
from .console import charts_page, costs_page, participants_page, queue_page, state, workflows_page

app_name = "console"

urlpatterns = [
    path("", queue_page, name="queue"),
    path("state", state, name="state"),
    path("participants/", participants_page, name="participants"),
    path("workflows/", workflows_page, name="workflows"),
    path("costs/", costs_page, name="costs"),
    path("charts/", charts_page, name="charts"),
    # One job
    path("jobs/<uuid:job_id>/cancel", do.cancel_job, name="job-cancel"),
    path("jobs/<uuid:job_id>/next", do.run_job_next, name="job-next"),
    path("jobs/<uuid:job_id>/now", do.run_job_now, name="job-now"),
    path("jobs/<uuid:job_id>/requeue", do.requeue_job, name="job-requeue"),
    # One participant's workspace
    path("workspaces/<str:slug>/cancel-waiting", do.cancel_waiting, name="workspace-cancel-waiting"),
    path("workspaces/<str:slug>/limits", do.set_limits, name="workspace-limits"),
    path("workspaces/<str:slug>/reset-password", do.reset_password, name="workspace-reset-password"),
    path("workspaces/<str:slug>/login-link", do.login_link, name="workspace-login-link"),
    path("workspaces/<str:slug>/open", do.open_workspace, name="workspace-open"),
    # The whole queue
    path("pause", do.pause_queue, name="pause"),
    path("resume", do.resume_queue, name="resume"),
    path("policy", do.set_policy, name="policy"),
    path("announce", do.announce, name="announce"),
    path("warm", do.keep_warm, name="warm"),
]
