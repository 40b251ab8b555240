from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from .models import Workspace


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = (
        "slug",
        "owner",
        "last_activity_seconds",
        "quota",
        "max_waiting_jobs",
        "gpu_budget_seconds",
        "jumps_queue",
    )
    search_fields = ("slug", "owner__username")

    @admin.display(description="quota", ordering="quota_bytes")
    def quota(self, workspace):
        return filesizeformat(workspace.quota_bytes)

    @admin.display(description="last activity", ordering="last_activity")
    def last_activity_seconds(self, workspace):

        return (
            timezone.localtime(workspace.last_activity).strftime("%Y-%m-%d %H:%M:%S")
            if workspace.last_activity
            else "—"
        )
