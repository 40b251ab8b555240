from django.contrib import admin, messages
from django.db import transaction

from . import lifecycle
from .dispatcher import free_slots
from .models import PRIORITY_NEXT, PRIORITY_NOW, Job, JobState, QueueSettings, Worker


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("short_id", "workspace", "state", "priority", "number", "created_at", "started_at", "worker",
                    "attempts", "interruptions")
    list_filter = ("state", "worker")
    search_fields = ("id", "workspace__slug", "workspace__owner__username")
    readonly_fields = [f.name for f in Job._meta.fields if f.name not in ("priority",)]
    actions = ["cancel_jobs", "run_next", "run_now"]

    @admin.display(description="job")
    def short_id(self, job):
        return str(job.pk)[:8]

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset):
        with transaction.atomic():
            done = sum(job.cancel() for job in queryset)
        self.message_user(request, f"Cancelled {done} job(s).")

    @admin.action(description="Run next (head of the queue)")
    def run_next(self, request, queryset):
        with transaction.atomic():
            n = queryset.filter(state=JobState.QUEUED).update(priority=PRIORITY_NEXT)
            lifecycle.changed()
        self.message_user(request, f"{n} job(s) moved to the head of the queue.")

    @admin.action(description="Run now (interrupts a running job only if no GPU is free; it comes back first)")
    def run_now(self, request, queryset):
        chosen = list(queryset.filter(state=JobState.QUEUED))
        if not chosen:
            self.message_user(request, "Pick a waiting job.", messages.WARNING)
            return
        with transaction.atomic():
            Job.objects.filter(pk__in=[j.pk for j in chosen]).update(priority=PRIORITY_NOW)
            # Only what the free GPUs cannot take at once displaces a running job.
            needed = len(chosen) - sum(free_slots().values())
            victims = list(
                Job.objects.filter(state=JobState.RUNNING).exclude(cancel_requested="cancel").order_by("-started_at")
            )[: max(needed, 0)]
            interrupted = sum(job.interrupt_for_demo() for job in victims)
            lifecycle.changed()
        self.message_user(request, f"{len(chosen)} job(s) run now; {interrupted} running job(s) interrupted.")


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "health", "provider", "comfyui_version", "last_heartbeat", "current_job",
                    "extension_code")
    readonly_fields = ("token_hash", "last_heartbeat", "current_job", "comfyui_version", "status", "vram_free",
                       "extension_code")
    actions = ["trust_extensions"]

    @admin.display(description="custom-node frontend code")
    def extension_code(self, worker):
        published, waiting = worker.published_extensions(), worker.untrusted_extensions()
        if not published:
            return "none"
        if waiting:
            return f"{len(waiting)} of {len(published)} file(s) awaiting trust: not served"
        return f"{len(published)} file(s), trusted"

    @admin.action(description="Trust the custom-node frontend code of selected workers")
    def trust_extensions(self, request, queryset):
        """Shows every file and its hash first; only a confirmed POST trusts exactly those."""
        from django.template.response import TemplateResponse

        workers = list(queryset)
        if request.POST.get("confirm") == "yes":
            from django.contrib.admin.models import CHANGE, LogEntry

            for worker in workers:
                files = worker.trust_extensions()
                LogEntry.objects.log_actions(
                    request.user.pk, [worker], CHANGE,
                    change_message=f"Trusted {len(files)} custom-node frontend file(s): "
                                   + ", ".join(f"{p} sha256:{h[:12]}" for p, h in sorted(files.items())))
            self.message_user(request, f"Trusted the frontend code of {len(workers)} worker(s); browsers load it "
                                       "from their next page load.")
            return None
        rows = [(worker, sorted(worker.published_extensions().items()), worker.untrusted_extensions())
                for worker in workers]
        return TemplateResponse(request, "admin/jobs/worker/trust_extensions.html", {
            **self.admin_site.each_context(request), "title": "Trust custom-node frontend code?",
            "rows": rows, "queryset": queryset, "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        })

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if not obj.enabled:
                # What waits in its RQ queue goes elsewhere; a running job finishes there.
                for job in Job.objects.filter(worker=obj, state=JobState.DISPATCHED):
                    job.lose_run(job.run, f"GPU worker {obj.name} was disabled", crash=False)
            lifecycle.changed()


@admin.register(QueueSettings)
class QueueSettingsAdmin(admin.ModelAdmin):
    list_display = ("__str__", "policy", "paused", "max_waiting_per_user", "job_timeout", "updated_at")

    def has_add_permission(self, request):
        return not QueueSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            lifecycle.changed()
