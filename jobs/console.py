"""The instructor's console, inside the Django admin (staff only): thin views over the models'
levers. Every action is logged as a LogEntry and tells the participant it concerns why."""

import csv

from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from . import reports, stats, workflows
from .models import QueueSettings


def page_context(request, section: str, **extra) -> dict:
    """What every console page's template needs: the admin's context, the title, the tab."""
    return {**admin.site.each_context(request), "title": "Workshop console", "section": section, **extra}


@staff_member_required
@require_GET
def queue_page(request):
    return render(
        request,
        "admin/console/queue.html",
        page_context(request, "queue", policies=QueueSettings.POLICY_LABELS.items()),
    )


@staff_member_required
@require_GET
def state(request):
    return JsonResponse(reports.console_state())


@staff_member_required
@require_GET
def participants_page(request):
    cards = reports.participants()
    return render(request, "admin/console/participants.html", page_context(request, "participants", cards=cards))


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
        page_context(
            request, "workflows", own=own, has_workspace=mine is not None, pushed=workflows.pushed_workflows()
        ),
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
        page_context(
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
    return render(request, "admin/console/charts.html", page_context(request, "charts", svgs=svgs, hours=hours))
