from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils import timezone

from . import dispatcher, lifecycle
from .models import FINAL_STATES, PRIORITY_WORDS, Job, JobState, QueueSettings, Worker
from .stats import human_bytes


def seconds(moment) -> str:
    """Admin times to the second, in the workshop's time zone."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


def _log(request, objects, message):
    LogEntry.objects.log_actions(request.user.pk, list(objects), CHANGE, change_message=message)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "short_id",
        "workspace",
        "state",
        "priority_word",
        "number",
        "created",
        "started",
        "finished",
        "worker",
        "gpu_time",
        "attempts",
        "interruptions",
    )
    list_filter = ("state", "worker")
    search_fields = ("id", "workspace__slug", "workspace__owner__username")
    readonly_fields = [f.name for f in Job._meta.fields if f.name not in ("priority",)]
    actions = ["cancel_jobs", "run_next", "run_now", "requeue"]

    def has_add_permission(self, request):
        return False  # jobs come from workspaces

    @admin.display(description="job")
    def short_id(self, job):
        return str(job.pk)[:8]

    @admin.display(description="priority", ordering="priority")
    def priority_word(self, job):
        return PRIORITY_WORDS.get(job.priority, str(job.priority))

    @admin.display(description="submitted", ordering="created_at")
    def created(self, job):
        return seconds(job.created_at)

    @admin.display(description="started", ordering="started_at")
    def started(self, job):
        return seconds(job.started_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, job):
        return seconds(job.finished_at)

    @admin.display(description="GPU s", ordering="gpu_seconds")
    def gpu_time(self, job):
        return f"{job.gpu_seconds:.1f}" if job.gpu_seconds is not None else "—"

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset):
        with transaction.atomic():
            done = [job for job in queryset if job.cancel(by_instructor=True)]
            _log(request, done, "Cancelled by the instructor")
        self.message_user(request, f"Cancelled {len(done)} job(s).")

    @admin.action(description="Run next (head of the queue)")
    def run_next(self, request, queryset):
        with transaction.atomic():
            done = [job for job in queryset.filter(state=JobState.QUEUED) if job.run_next()]
            _log(request, done, "Run next")
        self.message_user(request, f"{len(done)} job(s) moved to the head of the queue.")

    @admin.action(description="Run now (interrupts a running job only if no GPU is free; it comes back first)")
    def run_now(self, request, queryset):
        with transaction.atomic():
            chosen = list(queryset.filter(state=JobState.QUEUED))
            interrupted = dispatcher.run_now(chosen)
            if interrupted is None:
                self.message_user(request, "Pick a waiting job.", messages.WARNING)
                return
            _log(request, chosen, f"Run now ({interrupted} running job(s) paused for it)")
        self.message_user(request, f"{len(chosen)} job(s) run now; {interrupted} running job(s) interrupted.")

    @admin.action(description="Re-queue selected failed or cancelled jobs")
    def requeue(self, request, queryset):
        with transaction.atomic():
            done = [job for job in queryset if job.requeue()]
            _log(request, done, "Re-queued by the instructor")
        self.message_user(request, f"{len(done)} job(s) back in the queue.")


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "enabled",
        "health",
        "provider",
        "comfyui_version",
        "heartbeat",
        "current_job",
        "jobs_done",
        "gpu",
        "price_per_hour",
        "extension_code",
    )
    list_editable = ("enabled", "price_per_hour")
    # What the worker reports of itself is shown, not edited.
    readonly_fields = (
        "token_hash",
        "last_heartbeat",
        "current_job",
        "comfyui_version",
        "status",
        "problem",
        "vram_free",
        "vram_total",
        "gpu_name",
        "extension_code",
        "serverless",
        "carries_models",
        "loaded_models",
        "warm_seconds",
    )
    actions = ["trust_extensions", "revoke"]

    @admin.display(description="heartbeat", ordering="last_heartbeat")
    def heartbeat(self, worker):
        if not worker.last_heartbeat:
            return "never"
        return f"{(timezone.now() - worker.last_heartbeat).total_seconds():.0f} s ago"

    @admin.display(description="jobs done")
    def jobs_done(self, worker):
        return worker.jobs.filter(state__in=FINAL_STATES).count()

    @admin.display(description="GPU")
    def gpu(self, worker):
        return (
            " · ".join(x for x in (worker.gpu_name, human_bytes(worker.vram_total) if worker.vram_total else "") if x)
            or "—"
        )

    @admin.action(description="Revoke: the token stops working, its jobs go back to the queue")
    def revoke(self, request, queryset):
        with transaction.atomic():
            for worker in queryset:
                worker.rotate_token()  # a token nobody knows: the old one is refused from now on
                worker.disable()
                _log(request, [worker], "Revoked its token and disabled it")
            lifecycle.changed()
        self.message_user(
            request, f"Revoked {queryset.count()} worker(s); `manage.py worker_token NAME` makes a new token."
        )

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

        workers = list(queryset)
        if request.POST.get("confirm") == "yes":
            for worker in workers:
                files = worker.trust_extensions()
                LogEntry.objects.log_actions(
                    request.user.pk,
                    [worker],
                    CHANGE,
                    change_message=f"Trusted {len(files)} custom-node frontend file(s): "
                    + ", ".join(f"{p} sha256:{h[:12]}" for p, h in sorted(files.items())),
                )
            self.message_user(
                request,
                f"Trusted the frontend code of {len(workers)} worker(s); browsers load it from their next page load.",
            )
            return None
        rows = [
            (worker, sorted(worker.published_extensions().items()), worker.untrusted_extensions()) for worker in workers
        ]
        return TemplateResponse(
            request,
            "admin/jobs/worker/trust_extensions.html",
            {
                **self.admin_site.each_context(request),
                "title": "Trust custom-node frontend code?",
                "rows": rows,
                "queryset": queryset,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if not obj.enabled:
                obj.disable()
            lifecycle.changed()


class QueueSettingsForm(forms.ModelForm):
    class Meta:
        model = QueueSettings
        fields = [
            "policy",
            "paused",
            "max_waiting_per_user",
            "max_prompt_bytes",
            "job_timeout",
            "max_attempts",
            "warm_gpus",
            "warm_from",
            "warm_until",
        ]
        # Admin's integer box is 5 characters wide: 2000000 showed as 200000.
        widgets = {
            "max_prompt_bytes": forms.NumberInput(attrs={"style": "width: 12em"}),
            "job_timeout": forms.NumberInput(attrs={"style": "width: 8em"}),
        }


@admin.register(QueueSettings)
class QueueSettingsAdmin(admin.ModelAdmin):
    form = QueueSettingsForm
    list_display = ("__str__", "policy", "paused", "max_waiting_per_user", "job_timeout", "updated_at")

    def has_add_permission(self, request):
        return not QueueSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            lifecycle.changed()
