from django.contrib import admin

from .models import Workspace


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ("slug", "owner", "last_activity", "quota_bytes")
    search_fields = ("slug", "owner__username")
