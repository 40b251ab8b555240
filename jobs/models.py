"""Jobs, GPU workers and the queue settings.

Every state change of a Job is one conditional UPDATE from the state it is expected to be in,
so a worker's report, a retry, a cancel and the reconciler can race without a job running twice
or ending in two states. Methods return True when this call made the change.
"""
import hashlib
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from . import policies

# Priorities (higher runs first). A job that was interrupted or lost its worker comes back
# "at the front": above normal jobs, below the instructor's explicit "run next".
PRIORITY_NORMAL = 0
PRIORITY_RESUME = 5
PRIORITY_NEXT = 10
PRIORITY_NOW = 20


class JobState(models.TextChoices):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATES = (JobState.DISPATCHED, JobState.RUNNING)
OPEN_STATES = (JobState.QUEUED, JobState.DISPATCHED, JobState.RUNNING)
FINAL_STATES = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


class QueueSettings(models.Model):
    """The live queue knobs (one row). The instructor switches them in the admin."""

    policy = models.CharField(
        max_length=20,
        choices=[(p, p.replace("_", " ")) for p in policies.POLICIES],
        default="round_robin",
    )
    paused = models.BooleanField(default=False, help_text="Waiting jobs stay queued; running ones finish")
    max_waiting_per_user = models.PositiveIntegerField(default=5)
    max_prompt_bytes = models.PositiveIntegerField(default=2_000_000)
    job_timeout = models.PositiveIntegerField(default=1800, help_text="Seconds a job may run on a GPU")
    max_attempts = models.PositiveIntegerField(default=3, help_text="Runs before a job that keeps losing its worker fails")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "queue settings"

    def __str__(self):
        return f"Queue: {self.policy}{' (paused)' if self.paused else ''}"

    @classmethod
    def get(cls) -> "QueueSettings":
        obj, _ = cls.objects.get_or_create(
            pk=1,
            defaults={
                "policy": settings.QUEUE_POLICY,
                "max_waiting_per_user": settings.MAX_WAITING_PER_USER,
                "max_prompt_bytes": settings.MAX_PROMPT_BYTES,
                "job_timeout": settings.JOB_TIMEOUT,
                "max_attempts": settings.MAX_ATTEMPTS,
            },
        )
        return obj


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class WorkerQuerySet(models.QuerySet):
    def online(self):
        cutoff = timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)
        return self.filter(enabled=True, last_heartbeat__gte=cutoff)


class Worker(models.Model):
    """One gpuworker process: a slot for one job at a time."""

    name = models.CharField(max_length=100, unique=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    enabled = models.BooleanField(default=True, help_text="Disabled workers get no new jobs")
    provider = models.CharField(max_length=20, default="comfyui")
    comfyui_url = models.CharField(max_length=300, blank=True)
    comfyui_version = models.CharField(max_length=50, blank=True)
    status = models.CharField(max_length=20, default="offline")
    capacity = models.PositiveIntegerField(default=1)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    current_job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @classmethod
    def create_with_token(cls, name: str, **fields) -> tuple["Worker", str]:
        # A prefix, so a token never starts with "-" (command lines would read it as an option).
        token = "wt_" + secrets.token_urlsafe(32)
        worker, _ = cls.objects.update_or_create(name=name, defaults={"token_hash": hash_token(token), **fields})
        return worker, token

    @classmethod
    def for_token(cls, token: str) -> "Worker | None":
        return cls.objects.filter(token_hash=hash_token(token)).first()

    @property
    def is_online(self) -> bool:
        if not self.enabled or not self.last_heartbeat:
            return False
        return self.last_heartbeat >= timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)

    def beat(self, status: str | None = None, **fields) -> None:
        fields["last_heartbeat"] = timezone.now()
        if status:
            fields["status"] = status
        Worker.objects.filter(pk=self.pk).update(**fields)
        for key, value in fields.items():
            setattr(self, key, value)


class Catalog(models.Model):
    """What a worker's ComfyUI offers (object_info, models …), as it published it."""

    worker = models.OneToOneField(Worker, on_delete=models.CASCADE, related_name="catalog")
    comfyui_version = models.CharField(max_length=50, blank=True)
    object_info = models.JSONField(default=dict)
    data = models.JSONField(default=dict, help_text="system_stats, models, embeddings, extensions …")
    updated_at = models.DateTimeField(auto_now=True)

    @classmethod
    def _current_key(cls):
        """(pk, updated_at) of the newest catalog, preferring workers that are online."""
        online = cls.objects.filter(worker__in=Worker.objects.online())
        for rows in (online, cls.objects.all()):
            key = rows.order_by("-updated_at").values_list("pk", "updated_at").first()
            if key:
                return key
        return None

    @classmethod
    def current_data(cls) -> dict:
        """The current catalog's small part (system_stats, models …), without object_info."""
        key = cls._current_key()
        return cls.objects.values_list("data", flat=True).get(pk=key[0]) if key else {}

    _parsed: dict = {}

    @classmethod
    def current_object_info(cls) -> dict | None:
        """object_info of the current catalog, parsed once per process and version.

        A real ComfyUI's object_info is about 500 KB of JSON: every prompt validates against it,
        so it is read from the database only when a worker published a new one.
        """
        key = cls._current_key()
        if key is None:
            return None
        if cls._parsed.get("key") != key:
            cls._parsed = {"key": key, "object_info": cls.objects.values_list("object_info", flat=True).get(pk=key[0])}
        return cls._parsed["object_info"]


class ExtensionFile(models.Model):
    """A custom node's frontend file (JS, CSS …) published by a GPU worker, served to every UI."""

    path = models.CharField(max_length=500, unique=True, help_text="/extensions/<pack>/<file>")
    content = models.BinaryField()
    content_type = models.CharField(max_length=100, default="text/javascript")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.path


class SubmitError(Exception):
    """A prompt the queue refuses; carries ComfyUI's error shape so the UI can show it."""

    def __init__(self, kind: str, message: str, details: str = "", status: int = 400):
        super().__init__(message)
        self.kind, self.message, self.details, self.status = kind, message, details, status

    def as_comfy(self) -> dict:
        return {
            "error": {"type": self.kind, "message": self.message, "details": self.details, "extra_info": {}},
            "node_errors": {},
        }


# comfy.org credentials the web UI adds to extra_data: never stored, never sent to a GPU host.
SECRET_EXTRA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


class JobQuerySet(models.QuerySet):
    def waiting(self):
        return self.filter(state=JobState.QUEUED)

    def active(self):
        return self.filter(state__in=ACTIVE_STATES)

    def open(self):
        return self.filter(state__in=OPEN_STATES)


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="jobs")
    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    number = models.PositiveIntegerField(default=0, help_text="ComfyUI's queue number, per workspace")
    prompt = models.JSONField(help_text="API-format prompt")
    extra_data = models.JSONField(default=dict, blank=True, help_text="extra_pnginfo.workflow: the UI graph")
    client_id = models.CharField(max_length=100, blank=True, help_text="The browser tab that submitted it")
    inputs = models.JSONField(default=list, blank=True, help_text="Workspace input files it reads")
    outputs_to_execute = models.JSONField(default=list, blank=True)
    workflow_name = models.CharField(max_length=200, blank=True)
    priority = models.IntegerField(default=PRIORITY_NORMAL)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.ForeignKey(Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.CharField(max_length=20, blank=True, help_text="'cancel' or 'interrupt' while running")
    progress = models.JSONField(default=dict, blank=True)
    outputs = models.JSONField(default=dict, blank=True, help_text="ComfyUI history outputs, workspace paths")
    files = models.JSONField(default=dict, blank=True, help_text="GPU-host file -> stored workspace file")
    messages = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    node_errors = models.JSONField(default=dict, blank=True)
    gpu_seconds = models.FloatField(null=True, blank=True)
    hidden_from_history = models.BooleanField(default=False, help_text="Cleared from the participant's history panel")

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "state"])]

    def __str__(self):
        return f"{self.workspace.slug} #{self.number} ({self.state})"

    @classmethod
    def submit(cls, workspace, prompt: dict, *, extra_data=None, client_id="", inputs=(), outputs_to_execute=(),
               workflow_name="") -> "Job":
        """Queue a validated prompt for a workspace, within the queue's limits."""
        queue_settings = QueueSettings.get()
        limit = workspace.max_waiting_jobs or queue_settings.max_waiting_per_user
        extra = {k: v for k, v in (extra_data or {}).items() if k not in SECRET_EXTRA_KEYS}
        with transaction.atomic():
            # Two tabs pressing Run at once: the workspace row lock makes the count exact.
            type(workspace).objects.select_for_update().filter(pk=workspace.pk).exists()
            waiting = cls.objects.filter(workspace=workspace, state=JobState.QUEUED).count()
            if waiting >= limit:
                raise SubmitError(
                    "workshop_queue_limit",
                    f"You already have {waiting} jobs waiting (the limit is {limit}). "
                    "Wait for one to start, or cancel one in the queue panel.",
                    status=429,
                )
            return cls._create(workspace, prompt, extra, client_id, inputs, outputs_to_execute, workflow_name)

    @classmethod
    def _create(cls, workspace, prompt, extra, client_id, inputs, outputs_to_execute, workflow_name) -> "Job":
        last = cls.objects.filter(workspace=workspace).aggregate(n=models.Max("number"))["n"]
        job = cls.objects.create(
            workspace=workspace,
            prompt=prompt,
            extra_data=extra,
            client_id=str(client_id or "")[:100],
            inputs=list(inputs),
            outputs_to_execute=list(outputs_to_execute),
            workflow_name=str(workflow_name or "")[:200],
            number=(last + 1) if last is not None else 0,
        )
        workspace.touch()
        return job

    # --- state transitions: each one conditional UPDATE ---------------------------------

    def _move(self, from_states, **fields) -> bool:
        changed = Job.objects.filter(pk=self.pk, state__in=list(from_states)).update(**fields)
        if changed:
            self.refresh_from_db()
        return bool(changed)

    def mark_dispatched(self) -> bool:
        return self._move(
            [JobState.QUEUED],
            state=JobState.DISPATCHED,
            dispatched_at=timezone.now(),
            attempts=F("attempts") + 1,
        )

    def mark_running(self, worker: Worker) -> bool:
        # A re-sent "started" from the same worker is answered as success.
        if self._move(
            [JobState.DISPATCHED], state=JobState.RUNNING, started_at=timezone.now(), worker=worker, progress={}
        ):
            return True
        self.refresh_from_db()
        return self.state == JobState.RUNNING and self.worker_id == worker.pk

    def mark_completed(self, outputs, messages, gpu_seconds) -> bool:
        return self._move(
            ACTIVE_STATES,
            state=JobState.COMPLETED,
            finished_at=timezone.now(),
            outputs=outputs,
            messages=messages,
            gpu_seconds=gpu_seconds,
            cancel_requested="",
        )

    def mark_failed(self, error: str, messages=None, node_errors=None, gpu_seconds=None) -> bool:
        fields = {"state": JobState.FAILED, "finished_at": timezone.now(), "error": error, "cancel_requested": ""}
        if messages is not None:
            fields["messages"] = messages
        if node_errors is not None:
            fields["node_errors"] = node_errors
        if gpu_seconds is not None:
            fields["gpu_seconds"] = gpu_seconds
        return self._move(OPEN_STATES, **fields)

    def mark_cancelled(self, messages=None, gpu_seconds=None) -> bool:
        fields = {"state": JobState.CANCELLED, "finished_at": timezone.now(), "cancel_requested": ""}
        if messages is not None:
            fields["messages"] = messages
        if gpu_seconds is not None:
            fields["gpu_seconds"] = gpu_seconds
        return self._move(OPEN_STATES, **fields)

    def requeue_front(self, reason: str) -> bool:
        """Back to the queue, ahead of normal jobs; fails instead after max_attempts runs."""
        max_attempts = QueueSettings.get().max_attempts
        if self.attempts >= max_attempts:
            return self.mark_failed(f"{reason}; gave up after {self.attempts} attempts")
        return self._move(
            ACTIVE_STATES,
            state=JobState.QUEUED,
            priority=models.functions.Greatest(F("priority"), PRIORITY_RESUME),
            dispatched_at=None,
            started_at=None,
            worker=None,
            cancel_requested="",
            progress={},
        )

    def request_stop(self, kind: str) -> bool:
        """Ask the worker running this job to stop ('cancel' ends it, 'interrupt' requeues it)."""
        return self._move(ACTIVE_STATES, cancel_requested=kind)

    # --- control: the participant's and the instructor's levers ------------------------

    def cancel(self) -> bool:
        """Stop this job wherever it is; it ends `cancelled`.

        A running job ends when its worker confirms ComfyUI stopped (the worker watches the
        Redis key within half a second), so the GPU is free when the state says so.
        """
        from . import rq

        if self.state == JobState.RUNNING:
            if self.request_stop("cancel"):
                rq.signal_stop(self.pk, "cancel")
                return True
            return False
        was_dispatched = self.state == JobState.DISPATCHED
        if self.mark_cancelled():
            if was_dispatched:
                rq.withdraw(self.pk)
                rq.signal_stop(self.pk, "cancel")
            return True
        return False

    def interrupt_for_demo(self) -> bool:
        """Stop the running job so a demo can use the GPU; it comes back at the front."""
        from . import rq

        if self.request_stop("interrupt"):
            rq.signal_stop(self.pk, "interrupt")
            return True
        return False

    # --- files the worker sends back ---------------------------------------------------

    def store_file(self, folder_type: str, subfolder: str, filename: str, chunks) -> dict:
        """Store one output file in the workspace; returns where, as ComfyUI names it.

        Repeating the same upload for this job reuses the name (idempotent); a name another
        job already used gets a suffix, since several GPU hosts count file names separately.
        """
        key = f"{folder_type}/{subfolder}/{filename}"
        known = self.files.get(key)
        if known:
            target = self.workspace.file_path(folder_type, known["filename"], known["subfolder"])
        else:
            target = self.workspace.file_path(folder_type, filename, subfolder)
            stem, dot, ext = filename.rpartition(".")
            if not dot:
                stem, ext = filename, ""
            n = 1
            while target.exists():
                name = f"{stem}-{n}.{ext}" if dot else f"{stem}-{n}"
                target = self.workspace.file_path(folder_type, name, subfolder)
                n += 1
        store_stream(target, chunks)
        stored = {"filename": target.name, "subfolder": subfolder, "type": folder_type}
        if not known:
            # Re-read then write just this key: uploads of one job arrive one after another.
            files = Job.objects.filter(pk=self.pk).values_list("files", flat=True).get()
            files[key] = stored
            Job.objects.filter(pk=self.pk).update(files=files)
            self.files = files
        return stored

    # --- views of the job -----------------------------------------------------------

    @property
    def timeout_seconds(self) -> int:
        return QueueSettings.get().job_timeout

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def as_queue_item(self) -> list:
        """ComfyUI's queue entry: [number, prompt_id, prompt, extra_data, outputs_to_execute]."""
        extra = dict(self.extra_data)
        extra["client_id"] = self.client_id
        return [self.number, str(self.id), self.prompt, extra, self.outputs_to_execute]

    def as_history_entry(self) -> dict:
        status_str = "success" if self.state == JobState.COMPLETED else "error"
        return {
            "prompt": self.as_queue_item(),
            "outputs": self.outputs,
            "status": {
                "status_str": status_str,
                "completed": self.state == JobState.COMPLETED,
                "messages": self.messages,
            },
            "meta": {node: {"node_id": node, "display_node": node} for node in self.outputs},
        }


def usage_today() -> dict[str, policies.Usage]:
    """Jobs started and GPU seconds per workspace since local midnight."""
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        Job.objects.filter(started_at__gte=midnight)
        .values("workspace__slug")
        .annotate(n=models.Count("id"), secs=models.Sum("gpu_seconds"))
    )
    return {r["workspace__slug"]: policies.Usage(jobs=r["n"], gpu_seconds=r["secs"] or 0.0) for r in rows}


def store_stream(path, chunks) -> int:
    """Write chunks to `path` atomically (a half-written file is never visible); returns bytes."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return size
