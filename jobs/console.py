"""The instructor's console, inside the Django admin (staff only): thin views over the models'
levers. Every action is logged as a LogEntry and tells the participant it concerns why."""

import csv
from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import BadRequest
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from accounts import credentials, loginlinks
from accounts.models import Workspace
from workshop.jsonbody import BadJSON, loads

from . import dispatcher, reports, stats, workflows
from .models import Announcement, Job, QueueSettings


def log(request, obj, message: str) -> None:
    LogEntry.objects.log_actions(request.user.pk, [obj], CHANGE, change_message=message)


def _answer(request, message: str, status: int = 200, **extra):
    """JSON for the live page's buttons, a message and a redirect for a plain form."""
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"ok": status < 400, "message": message, **extra}, status=status)
    messages.add_message(request, messages.SUCCESS if status < 400 else messages.ERROR, message)
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("console:queue")  # never another site (an open redirect)
    return redirect(target)


def _data(request) -> dict:
    if request.content_type == "application/json":
        try:
            data = loads(request.body or b"{}")
        except BadJSON as exc:
            raise BadRequest(str(exc)) from None
        if not isinstance(data, dict):
            raise BadRequest("Send a JSON object")
        return data
    return request.POST.dict()


def _context(request, section: str, **extra) -> dict:

    return {**admin.site.each_context(request), "title": "Workshop console", "section": section, **extra}


@staff_member_required
@require_GET
def queue_page(request):
    return render(
        request, "admin/console/queue.html", _context(request, "queue", policies=QueueSettings.POLICY_LABELS.items())
    )


@staff_member_required
@require_GET
def state(request):
    return JsonResponse(reports.console_state())


@staff_member_required
@require_POST
def job_action(request, job_id, action):
    job = get_object_or_404(Job.objects.select_related("workspace__owner"), pk=job_id)
    who = f"{job.workspace.owner.get_username()}'s job #{job.number}"
    with transaction.atomic():
        if action == "cancel":
            done, message = job.cancel(by_instructor=True), f"Cancelled {who}."
        elif action == "next":
            done, message = job.run_next(), f"{who} runs next."
        elif action == "now":
            interrupted = dispatcher.run_now([job])
            done = interrupted is not None
            message = f"{who} runs now" + (f"; {interrupted} running job(s) paused for it." if interrupted else ".")
        elif action == "requeue":
            done, message = job.requeue(), f"{who} is back in the queue."
        else:
            raise BadRequest("Unknown action")
        if done:
            log(request, job, message)
    if not done:
        return _answer(request, f"Nothing changed: {who} is {job.state} now.", status=409)
    return _answer(request, message)


@staff_member_required
@require_POST
def workspace_action(request, slug, action):
    workspace = get_object_or_404(Workspace.objects.select_related("owner"), slug=slug)
    name = workspace.owner.get_username()
    data = _data(request)
    if action == "cancel-waiting":
        with transaction.atomic():
            n = workspace.cancel_waiting()
            if n:
                log(request, workspace, f"Cancelled {n} waiting job(s) of {name}")
        return _answer(request, f"Cancelled {n} waiting job(s) of {name}.")
    if action == "limits":
        try:
            waiting = _optional_int(data.get("max_waiting_jobs"))
            budget = _optional_int(data.get("gpu_budget_minutes"))
        except ValueError:
            return _answer(request, "Limits are whole numbers, or empty for the queue's default.", status=400)
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
        return _answer(request, f"Saved the limits of {name}.")
    if action == "reset-password":
        password = workspace.owner_reset_password()
        log(request, workspace.owner, f"Reset the password of {name}")
        return _link_page(request, workspace, name, password)
    if action == "login-link":
        log(request, workspace.owner, f"Made a login link for {name}")
        return _link_page(request, workspace, name)
    if action == "open":
        log(request, workspace, f"Opened the workspace of {name} in help mode")
        return redirect(f"/user/{workspace.slug}/?workshop_help=1")
    raise BadRequest("Unknown action")


def _link_page(request, workspace, name, password=""):
    """A one-time login link for the participant (accounts.loginlinks), with its QR code; and
    their new password after a reset."""
    link = loginlinks.issue(workspace.owner, request.build_absolute_uri("/"))
    return render(
        request,
        "admin/console/password.html",
        _context(
            request,
            "participants",
            name=name,
            password=password,
            workspace=workspace,
            link=link,
            qr=mark_safe(credentials.qr_svg(link)),
        ),
    )  # noqa: S308 - segno's SVG of our own address


def _today_at(value):
    """'HH:MM' today, in the workshop's time zone; None for nothing."""
    if value in (None, ""):
        return None
    hours, _, minutes = str(value).partition(":")
    moment = timezone.localtime().replace(hour=int(hours), minute=int(minutes or 0), second=0, microsecond=0)
    return moment


def _optional_int(value):
    if value in (None, ""):
        return None
    n = int(value)
    if n < 0:
        raise ValueError(n)
    return n


@staff_member_required
@require_POST
def queue_action(request, action):
    data = _data(request)
    settings_row = QueueSettings.get()
    if action in ("pause", "resume"):
        changed = settings_row.set_paused(action == "pause")
        message = "The queue is paused: waiting jobs stay queued." if action == "pause" else "The queue runs again."
    elif action == "policy":
        policy = data.get("policy")
        if policy not in QueueSettings.POLICY_LABELS:
            return _answer(request, f"Unknown policy; choose one of {', '.join(QueueSettings.POLICY_LABELS)}", 400)
        changed = settings_row.set_policy(policy)
        message = f"Policy: {QueueSettings.POLICY_LABELS[policy]}."
    elif action == "announce":
        text = str(data.get("text", "")).strip()
        if len(text) > Announcement.MAX_LENGTH:
            return _answer(request, f"An announcement holds at most {Announcement.MAX_LENGTH} characters.", 400)
        announcement = Announcement.publish(text, request.user)
        changed = True
        message = "Announced to every participant." if text else "The announcement is cleared."
        log(request, announcement, f"Announcement: {text or '(cleared)'}")
        return _answer(request, message)
    elif action == "warm":
        try:
            count = int(data.get("count") or 0)
            start, end = _today_at(data.get("from")), _today_at(data.get("until"))
        except ValueError:
            return _answer(request, "Give a number of GPUs (0 to 64), and times as HH:MM.", 400)
        if not 0 <= count <= 64:
            return _answer(request, "Give a number of GPUs from 0 to 64.", 400)
        if start and end and end <= start:
            end += timedelta(days=1)
        settings_row.set_warm(count, start, end)
        changed = True
        when = (f" from {timezone.localtime(start):%H:%M}" if start else "") + (
            f" until {timezone.localtime(end):%H:%M}" if end else ""
        )
        message = (
            f"Keeping {count} serverless GPU{'s' if count != 1 else ''} warm{when}."
            if count
            else "No serverless GPU is kept warm: they scale to zero when idle."
        )
    else:
        raise BadRequest("Unknown action")
    if changed:
        log(request, settings_row, message)
    return _answer(request, message)


@staff_member_required
@require_GET
def participants_page(request):
    cards = reports.participants()
    return render(request, "admin/console/participants.html", _context(request, "participants", cards=cards))


@staff_member_required
def workflows_page(request):
    """Push a workflow to every workspace's Workflows sidebar, under workshop/."""
    mine = request.user.workspace if hasattr(request.user, "workspace") else None
    own = workflows.saved_workflows(mine) if mine else []
    if request.method == "POST":
        upload = request.FILES.get("file")
        try:
            if upload is not None:
                name, content = upload.name, upload.read()
            else:
                name = request.POST.get("workflow", "")
                if name not in own:
                    raise ValueError("Pick one of your saved workflows, or upload a file.")
                content = workflows.read_saved(mine, name)
            pushed = workflows.push_to_everyone(name, content, open_now=request.POST.get("open_now") == "on")
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{pushed['name']} is in {pushed['count']} workspace(s) under workshop/.")
            LogEntry.objects.log_actions(
                request.user.pk,
                [request.user],
                ADDITION,
                change_message=f"Pushed workflow {pushed['name']} to every workspace",
            )
        return redirect(reverse("console:workflows"))
    return render(
        request,
        "admin/console/workflows.html",
        _context(request, "workflows", own=own, has_workspace=mine is not None, pushed=workflows.pushed_workflows()),
    )


@staff_member_required
@require_GET
def costs_page(request):
    table, total = reports.costs()
    if request.GET.get("format") == "csv":
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="workshop-gpu-cost.csv"'
        writer = csv.writer(response)
        writer.writerow(["workspace", "username", "jobs", "gpu_seconds", f"cost_{total['currency']}"])
        for row in table:
            writer.writerow(
                [row["slug"], row["username"], row["jobs"], f"{row['gpu_seconds']:.1f}", f"{row['cost']:.4f}"]
            )
        writer.writerow(["total", "", total["jobs"], f"{total['gpu_seconds']:.1f}", f"{total['cost']:.4f}"])
        return response
    for row in table:
        row["gpu_time"] = stats.human_seconds(row["gpu_seconds"])
    return render(
        request,
        "admin/console/costs.html",
        _context(
            request,
            "costs",
            table=table,
            total=total,
            total_time=stats.human_seconds(total["gpu_seconds"]),
            workers=[reports.worker_row(w) for w in reports.Worker.objects.all()],
        ),
    )


@staff_member_required
@require_GET
def charts_page(request):
    try:
        hours = min(max(float(request.GET.get("hours", "3")), 0.25), 48.0)
    except ValueError:
        hours = 3.0

    svgs = {k: mark_safe(v) for k, v in reports.chart_svgs(hours).items()}  # escaped by jobs.charts
    return render(request, "admin/console/charts.html", _context(request, "charts", svgs=svgs, hours=hours))
