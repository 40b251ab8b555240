from django.contrib import admin, messages

from . import dispatcher
from .models import PRIORITY_NEXT, PRIORITY_NOW, Job, JobState, QueueSettings, Worker


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("short_id", "workspace", "state", "priority", "number", "created_at", "started_at", "worker", "attempts")
    list_filter = ("state", "worker")
    search_fields = ("id", "workspace__slug", "workspace__owner__username")
    readonly_fields = [f.name for f in Job._meta.fields if f.name not in ("priority",)]
    actions = ["cancel_jobs", "run_next", "run_now"]

    @admin.display(description="job")
    def short_id(self, job):
        return str(job.pk)[:8]

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset):
        done = sum(job.cancel() for job in queryset)
        dispatcher.dispatch_and_announce()
        self.message_user(request, f"Cancelled {done} job(s).")

    @admin.action(description="Run next (head of the queue)")
    def run_next(self, request, queryset):
        n = queryset.filter(state=JobState.QUEUED).update(priority=PRIORITY_NEXT)
        dispatcher.dispatch_and_announce()
        self.message_user(request, f"{n} job(s) moved to the head of the queue.")

    @admin.action(description="Run now (interrupts a running job; it comes back first)")
    def run_now(self, request, queryset):
        chosen = list(queryset.filter(state=JobState.QUEUED))
        if not chosen:
            self.message_user(request, "Pick a waiting job.", messages.WARNING)
            return
        Job.objects.filter(pk__in=[j.pk for j in chosen]).update(priority=PRIORITY_NOW)
        victims = Job.objects.filter(state=JobState.RUNNING).order_by("-started_at")[: len(chosen)]
        interrupted = sum(job.interrupt_for_demo() for job in victims)
        dispatcher.dispatch_and_announce()
        self.message_user(request, f"{len(chosen)} job(s) run now; {interrupted} running job(s) interrupted.")


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "status", "online", "provider", "comfyui_version", "last_heartbeat", "current_job")
    readonly_fields = ("token_hash", "last_heartbeat", "current_job", "comfyui_version", "status")

    @admin.display(boolean=True)
    def online(self, worker):
        return worker.is_online


@admin.register(QueueSettings)
class QueueSettingsAdmin(admin.ModelAdmin):
    list_display = ("__str__", "policy", "paused", "max_waiting_per_user", "job_timeout", "updated_at")

    def has_add_permission(self, request):
        return not QueueSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        dispatcher.dispatch_and_announce()
