"""The console's levers, one view per verb (staff only, POST only): each asks the model, logs
what changed as a LogEntry, and answers the live page (JSON) or a plain form (a redirect)."""

import functools
from datetime import timedelta

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import BadRequest
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from accounts import credentials, loginlinks
from accounts.models import Workspace
from workshop.lib.jsonbody import BadJSON, object_of

from . import dispatcher
from .console import page_context
from .models import Announcement, Job, QueueSettings


def log(request, obj, message: str) -> None:
    LogEntry.objects.log_actions(request.user.pk, [obj], CHANGE, change_message=message)


def answer(request, message: str, status: int = 200):
    """JSON for the live page's buttons, a message and a redirect for a plain form."""
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"ok": status < 400, "message": message}, status=status)
    messages.add_message(request, messages.SUCCESS if status < 400 else messages.ERROR, message)
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("console:queue")  # never another site (an open redirect)
    return redirect(target)


def form_data(request) -> dict:
    """The live page sends JSON, a plain form sends fields: the same dict either way."""
    if request.content_type == "application/json":
        try:
            return object_of(request.body)
        except BadJSON as exc:
            raise BadRequest(str(exc)) from None
    return request.POST.dict()


def lever(view):
    """A console verb: staff only, POST only."""
    return staff_member_required(require_POST(view))


# --- one job ---------------------------------------------------------------------------------


def job_lever(act):
    """A verb on one job: `act(job, who)` returns (changed, message); a job that had moved on
    meanwhile is a 409 that says where it is now."""

    @lever
    @functools.wraps(act)
    def view(request, job_id):
        job = get_object_or_404(Job.objects.select_related("workspace__owner"), pk=job_id)
        who = f"{job.workspace.owner.get_username()}'s job #{job.number}"
        with transaction.atomic():
            done, message = act(job, who)
            if done:
                log(request, job, message)
        if not done:
            return answer(request, f"Nothing changed: {who} is {job.state} now.", status=409)
        return answer(request, message)

    return view


@job_lever
def cancel_job(job, who):
    return job.cancel(by_instructor=True), f"Cancelled {who}."


@job_lever
def run_job_next(job, who):
    return job.run_next(), f"{who} runs next."


@job_lever
def run_job_now(job, who):
    interrupted = dispatcher.run_now([job])
    paused = f"; {interrupted} running job(s) paused for it." if interrupted else "."
    return interrupted is not None, f"{who} runs now{paused}"


@job_lever
def requeue_job(job, who):
    return job.requeue(), f"{who} is back in the queue."


# --- one participant's workspace -------------------------------------------------------------


def workspace_lever(act):
    """A verb on one participant's workspace: `act(request, workspace, name)` answers."""

    @lever
    @functools.wraps(act)
    def view(request, slug):
        workspace = get_object_or_404(Workspace.objects.select_related("owner"), slug=slug)
        return act(request, workspace, workspace.owner.get_username())

    return view


@workspace_lever
def cancel_waiting(request, workspace, name):
    with transaction.atomic():
        n = Job.objects.cancel_waiting_of(workspace)
        if n:
            log(request, workspace, f"Cancelled {n} waiting job(s) of {name}")
    return answer(request, f"Cancelled {n} waiting job(s) of {name}.")


@workspace_lever
def set_limits(request, workspace, name):
    data = form_data(request)
    try:
        waiting = _optional_int(data.get("max_waiting_jobs"))
        budget = _optional_int(data.get("gpu_budget_minutes"))
    except ValueError:
        return answer(request, "Limits are whole numbers, or empty for the queue's default.", status=400)
    workspace.set_limits(
        max_waiting_jobs=waiting,
        gpu_budget_seconds=None if budget is None else budget * 60,
        jumps_queue=str(data.get("jumps_queue", "")).lower() in ("1", "on", "true", "yes"),
    )
    log(
        request,
        workspace,
        f"Limits of {name}: waiting {waiting or 'default'}, GPU budget "
        f"{'none' if budget is None else f'{budget} min'}, first in queue {workspace.jumps_queue}",
    )
    return answer(request, f"Saved the limits of {name}.")


@workspace_lever
def reset_password(request, workspace, name):
    password = workspace.owner_reset_password()
    log(request, workspace.owner, f"Reset the password of {name}")
    return _link_page(request, workspace, name, password)


@workspace_lever
def login_link(request, workspace, name):
    log(request, workspace.owner, f"Made a login link for {name}")
    return _link_page(request, workspace, name)


@workspace_lever
def open_workspace(request, workspace, name):
    log(request, workspace, f"Opened the workspace of {name} in help mode")
    return redirect(f"/user/{workspace.slug}/?workshop_help=1")


def _link_page(request, workspace, name, password=""):
    """A one-time login link for the participant (accounts.loginlinks), with its QR code; and
    their new password after a reset."""
    link = loginlinks.issue(workspace.owner, request.build_absolute_uri("/"))
    return render(
        request,
        "admin/console/password.html",
        page_context(
            request,
            "participants",
            name=name,
            password=password,
            workspace=workspace,
            link=link,
            qr=mark_safe(credentials.qr_svg(link)),  # noqa: S308 - segno's SVG of our own address
        ),
    )


def _optional_int(value):
    if value in (None, ""):
        return None
    n = int(value)
    if n < 0:
        raise ValueError(n)
    return n


# --- the whole queue -------------------------------------------------------------------------


def queue_lever(act):
    """A verb on the queue: `act(settings, data, request)` returns (changed, message), or an
    error message and its status; what changed is logged against the queue's settings."""

    @lever
    @functools.wraps(act)
    def view(request):
        settings_row = QueueSettings.get()
        changed, message, *status = act(settings_row, form_data(request), request)
        if status:
            return answer(request, message, status[0])
        if changed:
            log(request, settings_row, message)
        return answer(request, message)

    return view


@queue_lever
def pause_queue(settings_row, data, request):
    return settings_row.set_paused(True), "The queue is paused: waiting jobs stay queued."


@queue_lever
def resume_queue(settings_row, data, request):
    return settings_row.set_paused(False), "The queue runs again."


@queue_lever
def set_policy(settings_row, data, request):
    policy = data.get("policy")
    if policy not in QueueSettings.POLICY_LABELS:
        return False, f"Unknown policy; choose one of {', '.join(QueueSettings.POLICY_LABELS)}", 400
    return settings_row.set_policy(policy), f"Policy: {QueueSettings.POLICY_LABELS[policy]}."


@queue_lever
def announce(settings_row, data, request):
    text = str(data.get("text", "")).strip()
    if len(text) > Announcement.MAX_LENGTH:
        return False, f"An announcement holds at most {Announcement.MAX_LENGTH} characters.", 400
    announcement = Announcement.publish(text, request.user)
    log(request, announcement, f"Announcement: {text or '(cleared)'}")
    # Logged against the announcement itself, not the queue's settings.
    return False, "Announced to every participant." if text else "The announcement is cleared."


@queue_lever
def keep_warm(settings_row, data, request):
    try:
        count = int(data.get("count") or 0)
        start, end = _today_at(data.get("from")), _today_at(data.get("until"))
    except ValueError:
        return False, "Give a number of GPUs (0 to 64), and times as HH:MM.", 400
    if not 0 <= count <= 64:
        return False, "Give a number of GPUs from 0 to 64.", 400
    if start and end and end <= start:
        end += timedelta(days=1)
    settings_row.set_warm(count, start, end)
    when = (f" from {timezone.localtime(start):%H:%M}" if start else "") + (
        f" until {timezone.localtime(end):%H:%M}" if end else ""
    )
    if not count:
        return True, "No serverless GPU is kept warm: they scale to zero when idle."
    return True, f"Keeping {count} serverless GPU{'s' if count != 1 else ''} warm{when}."


def _today_at(value):
    """'HH:MM' today, in the workshop's time zone; None for nothing."""
    if value in (None, ""):
        return None
    hours, _, minutes = str(value).partition(":")
    return timezone.localtime().replace(hour=int(hours), minute=int(minutes or 0), second=0, microsecond=0)
