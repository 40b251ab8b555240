"""Jobs, GPU workers and the queue settings.

Every state change of a Job is one conditional UPDATE from the state it is expected to be in,
so a worker's report, a retry, a cancel and the reconciler can race without a job running twice
or ending in two states. Methods return True when this call made the change.
"""

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Sum
from django.db.models.functions import Greatest
from django.utils import timezone

from gpuworker import protocol
from workshop.lib.files import PartGap, move_into_place, part_name, unique_name, write_part
from workshop.lib.jsonbody import uuid_or_none

from . import lifecycle, policies, rq, tokens
from .policies import prompt_models

# Priorities (higher runs first). A job that was interrupted or lost its worker comes back
# "at the front": above normal jobs, below the instructor's explicit "run next".
PRIORITY_NORMAL = 0
PRIORITY_RESUME = 5
PRIORITY_NEXT = 10
PRIORITY_NOW = 20
PRIORITY_WORDS = {
    PRIORITY_NORMAL: "normal",
    PRIORITY_RESUME: "resumes first",
    PRIORITY_NEXT: "next",
    PRIORITY_NOW: "now",
}

# What a participant is told when the instructor moved their run: the `said` of a notice
# (jobs.events.job_update; frontend_bridge.wire.job_update says the rest).
SAID_CANCELLED = "The instructor cancelled this run."
SAID_DEMO = "Your run was paused for a demo; it continues first."
SAID_NEXT = "The instructor moved your run to the front of the queue."
SAID_REQUEUED = "The instructor put your run back in the queue."


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


class Policy(models.TextChoices):
    """The queue's order (jobs.policies; the instructor switches it live)."""

    FIFO = policies.FIFO, "FIFO: first come, first served"
    ROUND_ROBIN = policies.ROUND_ROBIN, "Round robin: one job per participant in turn"
    FAIR_SHARE = policies.FAIR_SHARE, "Fair share: least GPU time used goes first"


class QueueSettings(models.Model):
    """The live queue knobs (one row). The instructor switches them in the admin."""

    policy = models.CharField(max_length=20, choices=Policy.choices, default=Policy.ROUND_ROBIN)
    paused = models.BooleanField(default=False, help_text="Waiting jobs stay queued; running ones finish")
    max_waiting_per_user = models.PositiveIntegerField(default=5)
    max_prompt_bytes = models.PositiveIntegerField(default=2_000_000)
    job_timeout = models.PositiveIntegerField(default=1800, help_text="Seconds a job may run on a GPU")
    max_attempts = models.PositiveIntegerField(
        default=3,
        help_text="Runs a job may lose to a crashed GPU worker or ComfyUI before it fails (instructor "
        "interrupts and operator actions do not count)",
    )
    warm_gpus = models.PositiveIntegerField(
        default=0, help_text="Serverless GPUs kept warm (started, and kept from scaling to zero) in the window below"
    )
    warm_from = models.DateTimeField(null=True, blank=True, help_text="From when (empty: now)")
    warm_until = models.DateTimeField(null=True, blank=True, help_text="Until when (empty: until changed)")
    updated_at = models.DateTimeField(auto_now=True)

    POLICY_LABELS = dict(Policy.choices)

    class Meta:
        verbose_name = verbose_name_plural = "queue settings"

    def __str__(self):
        return f"Queue: {self.policy}{' (paused)' if self.paused else ''}"

    def set_warm(self, count: int, start=None, end=None) -> None:
        QueueSettings.objects.filter(pk=self.pk).update(warm_gpus=count, warm_from=start, warm_until=end)
        self.warm_gpus, self.warm_from, self.warm_until = count, start, end

    def warm_now(self, now=None) -> int:
        """How many serverless GPUs the instructor wants warm at this moment."""
        now = now or timezone.now()
        if self.warm_from and now < self.warm_from or self.warm_until and now >= self.warm_until:
            return 0
        return self.warm_gpus

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

    def set_paused(self, paused: bool) -> bool:
        """Pause or resume; every badge says so at once. True when it changed."""
        changed = QueueSettings.objects.filter(pk=self.pk).exclude(paused=paused).update(paused=paused)
        self.paused = paused
        if changed:
            lifecycle.changed()
        return bool(changed)

    def set_policy(self, policy: str) -> bool:
        if policy not in policies.POLICIES:
            raise ValueError(f"Unknown queue policy {policy!r}")
        changed = QueueSettings.objects.filter(pk=self.pk).exclude(policy=policy).update(policy=policy)
        self.policy = policy
        if changed:
            lifecycle.changed()
        return bool(changed)


class Announcement(models.Model):
    """The instructor's message to every participant; the newest one is shown, also to those
    who join later. An empty text clears it."""

    MAX_LENGTH = 500
    text = models.CharField(max_length=MAX_LENGTH, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return self.text or "(cleared)"

    @classmethod
    def publish(cls, text: str, user=None) -> "Announcement":
        from . import events  # a cycle: events reads the queue, which reads these models

        announcement = cls.objects.create(text=text[: cls.MAX_LENGTH], created_by=user)
        transaction.on_commit(lambda: events.announce(announcement.as_message()))
        return announcement

    @classmethod
    def current(cls) -> "Announcement | None":
        latest = cls.objects.first()
        return latest if latest and latest.text else None

    @classmethod
    def current_text(cls) -> str:
        latest = cls.current()
        return latest.text if latest else ""

    def as_message(self) -> dict:
        return {"id": self.pk, "text": self.text, "at": self.created_at.isoformat()}


def _new_token() -> str:
    return tokens.new_token()


class WorkerStatus(models.TextChoices):
    """What a GPU worker says of itself at each heartbeat. Only idle and busy workers take a job."""

    IDLE = protocol.IDLE
    BUSY = protocol.BUSY
    OFFLINE = protocol.OFFLINE
    COMFYUI_DOWN = protocol.COMFYUI_DOWN, "ComfyUI unreachable"


class StopKind(models.TextChoices):
    """Why a running job is asked to stop (Job.cancel_requested; the worker hears it)."""

    CANCEL = protocol.CANCEL, "cancel"
    INTERRUPT = protocol.INTERRUPT, "interrupt (a demo)"
    TIMEOUT = protocol.TIMEOUT, "timeout"


TAKING_JOBS = (WorkerStatus.IDLE, WorkerStatus.BUSY)


def lease_cutoff():
    return timezone.now() - timedelta(seconds=settings.LEASE_SECONDS)


class WorkerQuerySet(models.QuerySet):
    def online(self):
        """Enabled workers whose heartbeat is fresh and whose ComfyUI answers: they take jobs."""
        return self.filter(enabled=True, last_heartbeat__gte=lease_cutoff(), status__in=TAKING_JOBS)


class Worker(models.Model):
    """One gpuworker process: a slot for one job at a time."""

    name = models.CharField(max_length=100, unique=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    enabled = models.BooleanField(default=True, help_text="Disabled workers get no new jobs")
    provider = models.CharField(max_length=20, default="comfyui")
    comfyui_url = models.CharField(max_length=300, blank=True)
    comfyui_version = models.CharField(max_length=50, blank=True)
    status = models.CharField(max_length=20, choices=WorkerStatus.choices, default=WorkerStatus.OFFLINE)
    problem = models.CharField(
        max_length=500,
        blank=True,
        help_text="Why it takes no jobs, in the worker's words (its credentials were refused …)",
    )
    capacity = models.PositiveIntegerField(default=1, help_text="Jobs in flight at once (the provider's concurrency)")
    serverless = models.BooleanField(default=False, help_text="A serverless GPU: it scales to zero, and starts cold")
    warm_seconds = models.FloatField(
        default=0.0, help_text="GPU seconds it kept warm for the instructor's warm-up, idle (billed per warm minute)"
    )
    loaded_models = models.JSONField(
        default=list, blank=True, help_text="The model files of the last prompt it ran: what its ComfyUI holds loaded"
    )
    carries_models = models.BooleanField(
        default=False, help_text="Its GPU host has a cache for participants' own models (they go only there)"
    )
    vram_free = models.BigIntegerField(null=True, blank=True, help_text="Bytes, as ComfyUI last reported")
    vram_total = models.BigIntegerField(null=True, blank=True, help_text="Bytes, as ComfyUI reported")
    gpu_name = models.CharField(max_length=200, blank=True, help_text="As ComfyUI reported it")
    price_per_hour = models.FloatField(
        default=0.0, help_text="What an hour of this GPU costs (0: the provider's price from GPU_PRICE_PER_HOUR)"
    )
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    current_job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    trusted_extensions = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="The custom-node frontend files (path: sha256) the operator or instructor trusted",
    )

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @classmethod
    def create_with_token(cls, name: str, **fields) -> tuple["Worker", str]:
        """A new worker and its token, or a new token for an existing one (the old one stops
        working, and so does any process still using it)."""
        existing = cls.objects.filter(name=name).first()
        if existing is not None:
            token = existing.rotate_token()
            if fields:
                cls.objects.filter(pk=existing.pk).update(**fields)
            existing.refresh_from_db()
            return existing, token
        token = _new_token()
        return cls.objects.create(name=name, token_hash=tokens.hash_token(token), **fields), token

    @classmethod
    def for_token(cls, token: str) -> "Worker | None":
        return cls.objects.filter(token_hash=tokens.hash_token(token)).first()

    @property
    def queue_name(self) -> str:
        """This worker's own RQ queue: the dispatcher chooses the worker, so a disabled or
        unhealthy one never receives a job."""
        return f"{settings.GPU_QUEUE}.w{self.pk}"

    @property
    def is_online(self) -> bool:
        if not self.enabled or not self.last_heartbeat or self.status not in TAKING_JOBS:
            return False
        return self.last_heartbeat >= lease_cutoff()

    @property
    def health(self) -> str:
        """What the console shows: online, disabled, offline or ComfyUI unreachable."""
        if not self.enabled:
            return "disabled"
        if not self.last_heartbeat or self.last_heartbeat < lease_cutoff() or self.status == WorkerStatus.OFFLINE:
            return "offline"
        if self.status == WorkerStatus.COMFYUI_DOWN:
            return "ComfyUI unreachable"
        return self.status

    def rotate_token(self) -> str:
        """A new token; the old one stops working at once. The worker's jobs go back to the
        queue without costing an attempt (the operator did this, not the job)."""
        token = _new_token()
        Worker.objects.filter(pk=self.pk).update(
            token_hash=tokens.hash_token(token), status=WorkerStatus.OFFLINE, last_heartbeat=None
        )
        self.give_back_jobs("its GPU worker's token was replaced")
        return token

    def give_back_jobs(self, reason: str) -> int:
        """Every open run of this worker back to the head of the queue, no attempt counted."""
        n = 0
        for job in Job.objects.filter(worker=self, state__in=ACTIVE_STATES):
            n += job.lose_run(job.run, reason, crash=False)
        return n

    def published_extensions(self) -> dict[str, str]:
        """{path: sha256} of the custom-node frontend code this worker published (the files its
        catalog lists and what they import)."""
        return dict(self.extension_files.filter(path__startswith="/extensions/").values_list("path", "sha256"))

    def untrusted_extensions(self) -> dict[str, str]:
        """Published files nobody trusted yet, or whose content changed since."""
        trusted = self.trusted_extensions or {}
        return {path: digest for path, digest in self.published_extensions().items() if trusted.get(path) != digest}

    def refresh_trust(self) -> bool:
        """A catalog whose frontend code is not all trusted never becomes the one served."""
        trusted = not self.untrusted_extensions()
        Catalog.objects.filter(worker=self).update(trusted=trusted)
        return trusted

    def publish_catalog(self, object_info: dict, data: dict, files: list[str] | None) -> bool:
        """What its ComfyUI offers, as the worker published it: the catalog prompts are checked
        against and the UIs show. `files`: the catalog files it names (the others are gone from
        the GPU host); None from a worker older than catalog files. Returns whether the catalog
        is trusted (all its custom-node frontend code is)."""
        Catalog.objects.update_or_create(
            worker=self,
            defaults={
                "object_info": object_info,
                "comfyui_version": str(data.get("comfyui_version", ""))[:50],
                "data": data,
            },
        )
        if files is not None:
            ExtensionFile.objects.filter(worker=self).exclude(path__in=files).delete()
        return self.refresh_trust()

    def publish_file(self, path: str, content: bytes, content_type: str) -> None:
        """One catalog file (a custom node's frontend file, an example workflow, a blueprint):
        new or changed content needs the instructor's trust again before a browser gets it."""
        ExtensionFile.objects.update_or_create(
            worker=self,
            path=path,
            defaults={"content": content, "content_type": content_type, "sha256": hashlib.sha256(content).hexdigest()},
        )
        self.refresh_trust()

    def trust_extensions(self) -> dict[str, str]:
        """Trust exactly the files published now (a later change needs trusting again)."""
        self.trusted_extensions = self.published_extensions()
        Worker.objects.filter(pk=self.pk).update(trusted_extensions=self.trusted_extensions)
        self.refresh_trust()
        return self.trusted_extensions

    def ran(self, job: "Job") -> None:
        """ComfyUI keeps the models of the last prompt loaded: the next job that needs them is
        cheaper here (jobs.dispatcher prefers this worker for it when it is free)."""
        self.loaded_models = job.model_files()
        Worker.objects.filter(pk=self.pk).update(loaded_models=self.loaded_models)

    def comfyui_down(self, problem: str) -> None:
        """Its ComfyUI stopped answering (a run found out): no job goes there until it answers."""
        Worker.objects.filter(pk=self.pk).update(status=WorkerStatus.COMFYUI_DOWN, problem=problem, loaded_models=[])

    def released(self, job: "Job") -> None:
        """`job` no longer holds this worker."""
        Worker.objects.filter(pk=self.pk, current_job=job).update(current_job=None)
        Worker.objects.filter(pk=self.pk, status=WorkerStatus.BUSY).update(status=WorkerStatus.IDLE)

    def disable(self) -> None:
        """No new job goes here: what waits in its RQ queue goes elsewhere at no cost; a job it
        runs now finishes there."""
        Worker.objects.filter(pk=self.pk).update(enabled=False)
        self.enabled = False
        self._give_back_dispatched(f"GPU worker {self.name} was disabled")

    def restarted(self, status: str, **reported) -> None:
        """A new process of this worker registered: whatever an earlier one was running is dead
        (a restart after kill -9 recovers at once instead of waiting out the lease)."""
        for job in Job.objects.filter(worker=self, state__in=ACTIVE_STATES):
            job.lose_run(job.run, f"GPU worker {self.name} restarted", crash=job.state == JobState.RUNNING)
        # A new process: its ComfyUI may have restarted too.
        self.beat(status=status, loaded_models=[], current_job=None, **{"problem": "", **reported})
        lifecycle.changed()

    def go_offline(self) -> None:
        """The worker shuts down and says so: nothing more is dispatched to a slot that is
        gone, and what waits in its RQ queue goes back without costing an attempt."""
        Worker.objects.filter(pk=self.pk).update(status=WorkerStatus.OFFLINE, last_heartbeat=None, current_job=None)
        self._give_back_dispatched(f"GPU worker {self.name} shut down")

    def _give_back_dispatched(self, reason: str) -> None:
        """What waits in its RQ queue (dispatched, not started) goes back at no cost to the jobs."""
        for job in Job.objects.filter(worker=self, state=JobState.DISPATCHED):
            job.lose_run(job.run, reason, crash=False)
        lifecycle.changed()

    def heard(self, status: str, warm_seconds: float = 0.0, **fields) -> None:
        """A heartbeat: the worker and the process running its jobs are alive. The runs waiting
        in its RQ queue keep their lease; a worker that comes online or drops out changes what
        the dispatcher may do."""
        could_take_jobs = self.is_online
        if warm_seconds:  # the seconds since its last beat that it kept GPUs warm, in this beat
            Worker.objects.filter(pk=self.pk).update(warm_seconds=F("warm_seconds") + warm_seconds)
        self.beat(status=status, **{"problem": "", **fields})
        lease = timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)
        Job.objects.filter(worker=self, state=JobState.DISPATCHED).update(lease_expires_at=lease)
        if could_take_jobs != self.is_online:
            lifecycle.changed()

    def runs_heard(self, runs: list[tuple[str, object]]) -> dict[str, dict]:
        """What a heartbeat's runs are told, by job id: stop (the run is not the job's current
        run here any more) or cancel (asked meanwhile). A current run's lease is renewed."""
        said: dict[str, dict] = {}
        for job_id, run in runs[: max(self.capacity, 1)]:
            parsed = uuid_or_none(job_id)
            job = Job.objects.filter(pk=parsed).first() if parsed else None
            if job is None or not job.is_current_run(self, run):
                said[job_id] = {"stop": True, "cancel": None}
            else:
                job.renew_lease(run)
                said[job_id] = {"stop": False, "cancel": job.cancel_requested or None}
        return said

    def warm_share(self) -> int:
        """This worker's part of the GPUs the instructor wants warm: the online serverless
        workers in name order, each up to its slots."""
        wanted = QueueSettings.get().warm_now()
        for other in Worker.objects.online().filter(serverless=True).order_by("name"):
            share = min(wanted, other.capacity)
            if other.pk == self.pk:
                return share
            wanted -= share
        return 0

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
    trusted = models.BooleanField(default=True, help_text="All of its custom-node frontend code is trusted")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"catalog of {self.worker_id} (ComfyUI {self.comfyui_version or '?'})"

    @classmethod
    def _current_key(cls):
        """(pk, updated_at, worker) of the catalog served: the newest trusted one, preferring
        online workers. Only when no worker's catalog is trusted is an untrusted one served,
        without its frontend code, so that the UI still works."""
        trusted = cls.objects.filter(trusted=True)
        online = trusted.filter(worker__in=Worker.objects.online())
        for rows in (online, trusted, cls.objects.all()):
            key = rows.order_by("-updated_at").values_list("pk", "updated_at", "worker_id", "trusted").first()
            if key:
                return key
        return None

    @classmethod
    def served_extensions(cls) -> tuple[int | None, set[str]]:
        """(worker, paths) of the custom-node frontend files browsers may load: those of the
        served catalog's worker that the operator or instructor trusted, unchanged since."""
        key = cls._current_key()
        if key is None or not key[3]:
            return (key[2] if key else None), set()
        worker = Worker.objects.get(pk=key[2])
        return worker.pk, set(worker.published_extensions())

    @classmethod
    def served_file(cls, path: str) -> "ExtensionFile | None":
        """A global subgraph the served catalog's worker published, its content deferred (a
        browser that has it asks with the ETag, and gets 304 without it being read), or None."""
        key = cls._current_key()
        if key is None or not path.startswith("/global_subgraphs/"):
            return None
        return ExtensionFile.objects.filter(worker_id=key[2], path=path).defer("content").first()

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

        API nodes are left out: they run on Comfy.org's paid cloud with a Comfy.org account,
        which a workshop's participants do not have (the UI would ask them to sign in).
        """
        key = cls._current_key()
        if key is None:
            return None
        if cls._parsed.get("key") != key:
            info, version = cls.objects.values_list("object_info", "comfyui_version").get(pk=key[0])
            cls._parsed = {
                "key": key,
                "version": version,
                "object_info": {
                    name: node for name, node in info.items() if not (isinstance(node, dict) and node.get("api_node"))
                },
            }
        return cls._parsed["object_info"]

    @classmethod
    def current_version(cls) -> str:
        """The ComfyUI release of the catalog served: prompts are answered as it answers."""
        return cls._parsed.get("version", "") if cls.current_object_info() is not None else ""


class ExtensionFile(models.Model):
    """A custom node's frontend file (JS, CSS …) or example workflow, as one GPU worker
    published it; browsers get its code only once it is trusted (Worker.trust_extensions)."""

    worker = models.ForeignKey(Worker, null=True, on_delete=models.CASCADE, related_name="extension_files")
    path = models.CharField(max_length=500, help_text="/extensions/<pack>/<file>")
    content = models.BinaryField()
    content_type = models.CharField(max_length=100, default="text/javascript")
    sha256 = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["worker", "path"], name="one_file_per_worker_and_path")]

    def __str__(self):
        return self.path


class SubmitError(Exception):
    """A prompt the queue refuses, with what ComfyUI's error names (frontend_bridge.wire shows it)."""

    def __init__(self, kind: str, message: str, details: str = "", status: int = 400):
        super().__init__(message)
        self.kind, self.message, self.details, self.status = kind, message, details, status


# comfy.org credentials the web UI adds to extra_data: never stored, never sent to a GPU host.
SECRET_EXTRA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


class JobQuerySet(models.QuerySet):
    def waiting(self):
        return self.filter(state=JobState.QUEUED)

    def gpu_seconds(self) -> float:
        return self.aggregate(s=Sum("gpu_seconds"))["s"] or 0.0

    def cancel_waiting_of(self, workspace) -> int:
        """The instructor's "cancel all of theirs": every waiting job of this workspace."""
        return sum(job.cancel(by_instructor=True) for job in self.filter(workspace=workspace).waiting())

    def active(self):
        return self.filter(state__in=ACTIVE_STATES)

    def open(self):
        return self.filter(state__in=OPEN_STATES)

    # A run's end reaches the tab that queued it exactly once: ComfyUI sends it to that tab's
    # client_id, and a tab that was away (the app or Redis restarting) gets it on its return.
    END_KEPT_FOR = timedelta(minutes=10)

    def ends_owed(self, workspace_id: int, client_id: str, job_id: str | None = None) -> list[tuple[str, list]]:
        """(job id, ComfyUI's end messages) of the runs this tab queued whose end it has not
        received yet, oldest first: all of them, or that one job's."""
        owed = self.filter(
            workspace_id=workspace_id,
            client_id=client_id,
            state__in=FINAL_STATES,
            end_delivered=False,
            finished_at__gte=timezone.now() - self.END_KEPT_FOR,
        ).exclude(end_messages=[])
        if job_id is not None:
            owed = owed.filter(pk=job_id)
        return [(str(pk), end) for pk, end in owed.order_by("finished_at").values_list("id", "end_messages")]

    def end_received(self, job_id: str, client_id: str) -> None:
        """Marked only once sent: a socket that dies before it could send leaves it for the next."""
        self.filter(pk=job_id, client_id=client_id).update(end_delivered=True)


@dataclass(frozen=True)
class RunResult:
    """What a GPU worker reports at a run's end, already cleared of its host's paths
    (jobs.worker_api.job_finish reads it). `status`: ComfyUI's own end (success, error,
    interrupted), or `lost` (the host failed) and `returned` (the worker is shutting down)."""

    status: str
    outputs: dict | None = None
    messages: list = field(default_factory=list)
    end: list = field(default_factory=list)  # ComfyUI's closing messages, relayed untouched
    gpu_seconds: float | None = None
    load_seconds: float | None = None
    error: dict = field(default_factory=dict)
    reason: str = "the GPU host failed"
    crash: bool = False
    comfyui_unreachable: bool = False
    problem: str = ""
    cold_start_seconds: float | None = None

    @property
    def out_of_memory(self) -> bool:
        text = f"{self.error.get('exception_type', '')} {self.error.get('exception_message', '')}".lower()
        return "outofmemory" in text.replace(" ", "") or "out of memory" in text


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="jobs")
    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    number = models.PositiveIntegerField(default=0, help_text="ComfyUI's queue number, per workspace")
    prompt = models.JSONField(help_text="API-format prompt")
    extra_data = models.JSONField(default=dict, blank=True, help_text="extra_pnginfo.workflow: the UI graph")
    client_id = models.CharField(max_length=100, blank=True, help_text="The browser tab that submitted it")
    inputs = models.JSONField(default=list, blank=True, help_text="Workspace input files it reads")
    own_models = models.JSONField(
        default=list, blank=True, help_text="The participant's own models it names ({folder, name, sha256, size})"
    )
    outputs_to_execute = models.JSONField(default=list, blank=True)
    workflow_name = models.CharField(max_length=200, blank=True)
    priority = models.IntegerField(default=PRIORITY_NORMAL)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.ForeignKey(Worker, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    run = models.PositiveIntegerField(default=0, help_text="Number of the current dispatch (the lease a worker holds)")
    lease_expires_at = models.DateTimeField(null=True, blank=True, help_text="The run is lost if not renewed by then")
    attempts = models.PositiveIntegerField(default=0, help_text="Runs lost to a crashed worker or ComfyUI")
    interruptions = models.PositiveIntegerField(default=0, help_text="Runs the instructor interrupted for a demo")
    memory_retry_from = models.ForeignKey(
        Worker,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Ran out of GPU memory there once; retried elsewhere if possible",
    )
    cancel_requested = models.CharField(
        max_length=20, blank=True, choices=StopKind.choices, help_text="Set while a stop is asked of the running job"
    )
    cancelled_by = models.CharField(
        max_length=20, blank=True, help_text="'instructor' when the instructor cancelled it"
    )
    from_cache = models.BooleanField(
        default=False, help_text="ComfyUI ran nothing (every node cached): not counted in ETAs"
    )
    progress = models.JSONField(default=dict, blank=True)
    outputs = models.JSONField(default=dict, blank=True, help_text="ComfyUI history outputs, workspace paths")
    files = models.JSONField(default=dict, blank=True, help_text="GPU-host file -> stored workspace file")
    messages = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    node_errors = models.JSONField(default=dict, blank=True)
    gpu_seconds = models.FloatField(null=True, blank=True, help_text="Seconds ComfyUI worked on it")
    load_seconds = models.FloatField(
        null=True, blank=True, help_text="Of which loading models (not billed to fair share)"
    )
    cold_start_seconds = models.FloatField(
        null=True, blank=True, help_text="Seconds its serverless GPU took to start before the run (not a failure)"
    )
    submit_fields = models.JSONField(
        default=dict,
        blank=True,
        help_text="Other fields of ComfyUI's POST /prompt it honours (partial_execution_targets)",
    )
    hidden_from_history = models.BooleanField(default=False, help_text="Cleared from the participant's history panel")
    end_messages = models.JSONField(default=list, blank=True, help_text="ComfyUI's end messages, as relayed")
    end_delivered = models.BooleanField(
        default=False, help_text="The submitting tab got the end messages (else they are sent when it reconnects)"
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "state"])]

    def __str__(self):
        return f"{self.workspace.slug} #{self.number} ({self.state})"

    @classmethod
    def submit(
        cls,
        workspace,
        prompt: dict,
        *,
        extra_data=None,
        client_id="",
        inputs=(),
        outputs_to_execute=(),
        workflow_name="",
        submit_fields=None,
        queue_settings=None,
        own_models=(),
    ) -> "Job":
        """Queue a validated prompt for a workspace, within the queue's limits."""
        queue_settings = queue_settings or QueueSettings.get()
        limit = workspace.max_waiting_jobs or queue_settings.max_waiting_per_user
        extra = {k: v for k, v in (extra_data or {}).items() if k not in SECRET_EXTRA_KEYS}
        with transaction.atomic():
            # Two tabs pressing Run at once: the workspace row lock (taken by this UPDATE, held
            # to the commit) makes the count exact.
            workspace.touch()
            waiting = cls.objects.filter(workspace=workspace, state=JobState.QUEUED).count()
            if waiting >= limit:
                raise SubmitError(
                    "workshop_queue_limit",
                    f"You already have {waiting} job{'s' if waiting != 1 else ''} waiting (the limit is {limit}). "
                    "Wait for one to start, or cancel one in the queue panel.",
                    status=429,
                )
            budget = workspace.gpu_budget_seconds
            if budget is not None and Job.objects.filter(workspace=workspace).gpu_seconds() >= budget:
                raise SubmitError(
                    "workshop_gpu_budget",
                    f"You have used your GPU budget of {budget // 60} min. Ask the instructor for more.",
                    status=429,
                )
            last = cls.objects.filter(workspace=workspace).aggregate(n=models.Max("number"))["n"]
            job = cls.objects.create(
                workspace=workspace,
                prompt=prompt,
                extra_data=extra,
                client_id=str(client_id or "")[:100],
                inputs=list(inputs),
                own_models=list(own_models),
                outputs_to_execute=list(outputs_to_execute),
                workflow_name=str(workflow_name or "")[:200],
                number=(last + 1) if last is not None else 0,
                submit_fields=dict(submit_fields or {}),
                priority=PRIORITY_NEXT if workspace.jumps_queue else PRIORITY_NORMAL,
            )
            lifecycle.changed()
        return job

    @classmethod
    def run_on(cls, worker: "Worker", workspace, prompt: dict, *, workflow_name: str = "") -> "Job":
        """A job straight onto one worker, past the queue's order: the operator's rehearsal runs
        one on each worker. Created and dispatched in one transaction, so no dispatcher can
        send it elsewhere first."""
        with transaction.atomic():
            job = cls.objects.create(workspace=workspace, prompt=prompt, workflow_name=workflow_name[:200])
            if not job.mark_dispatched(worker):
                raise RuntimeError("a new job could not be dispatched")
            transaction.on_commit(lambda: rq.enqueue(job))
            lifecycle.changed()
        return job

    # --- state transitions: each one conditional UPDATE ---------------------------------

    def _move(self, from_states, of_run=None, quiet=False, **fields) -> bool:
        rows = Job.objects.filter(pk=self.pk, state__in=list(from_states))
        if of_run is not None:
            rows = rows.filter(run=of_run)
        changed = rows.update(**fields)
        if changed:
            self.refresh_from_db()
            if not quiet:
                lifecycle.changed()
        return bool(changed)

    def mark_dispatched(self, worker: Worker) -> bool:
        """A new run on `worker`: the run number fences off every earlier one."""
        return self._move(
            [JobState.QUEUED],
            quiet=True,  # the dispatcher announces its own choices
            state=JobState.DISPATCHED,
            dispatched_at=timezone.now(),
            worker=worker,
            run=F("run") + 1,
            lease_expires_at=timezone.now() + timedelta(seconds=settings.LEASE_SECONDS),
            progress={},
        )

    def is_current_run(self, worker: Worker, run) -> bool:
        return self.state in ACTIVE_STATES and self.worker_id == worker.pk and str(self.run) == str(run)

    def start_on(self, worker: Worker, run) -> str | None:
        """The worker says it began the run: None once it runs there; else why not ("" for a
        run that is not the job's current one here)."""
        if not self.is_current_run(worker, run):
            return ""
        if not worker.enabled:
            # The instructor disabled the worker after the job was sent to it: the job goes
            # elsewhere, at no cost to it.
            self.lose_run(run, f"GPU worker {worker.name} was disabled", crash=False)
            return "this worker is disabled; the job went back to the queue"
        with transaction.atomic():
            if not self.mark_running(worker, run):
                return ""
            worker.beat(status=WorkerStatus.BUSY, current_job=self)
        return None

    def reported(self, run, progress: dict | None) -> None:
        """The worker reported on the run: its lease is renewed, and its progress kept."""
        fields: dict = {"lease_expires_at": timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)}
        if progress is not None:
            fields["progress"] = progress
        Job.objects.filter(pk=self.pk, run=run).update(**fields)

    def mark_running(self, worker: Worker, run: int) -> bool:
        # A re-sent "started" for the same run is answered as success.
        if self._move(
            [JobState.DISPATCHED],
            of_run=run,
            worker=worker,
            state=JobState.RUNNING,
            started_at=timezone.now(),
            lease_expires_at=timezone.now() + timedelta(seconds=settings.LEASE_SECONDS),
        ):
            return True
        self.refresh_from_db()
        return self.state == JobState.RUNNING and self.is_current_run(worker, run)

    def model_files(self) -> list[str]:
        return prompt_models(self.prompt)

    def finish(self, worker: "Worker", run, result: RunResult) -> None:
        """The run's end as its worker reported it: completed, failed (an out-of-memory error gets
        one more try), cancelled, paused for the instructor's demo, or back to the queue when
        the host failed. The worker is free again, and ComfyUI's closing messages reach the tab
        once the result is stored."""
        relay = (self.workspace.slug, result.end, (str(self.pk), self.client_id)) if result.end else None
        with transaction.atomic():
            if result.status in ("success", "error") and result.outputs is not None and self.started_at:
                worker.ran(self)  # whatever ComfyUI loaded for it stays loaded
            if result.status == "success":
                self.mark_completed(
                    result.outputs or {},
                    result.messages,
                    result.gpu_seconds,
                    result.load_seconds,
                    run=run,
                    end=result.end,
                )
                lifecycle.changed(relay=relay)
            elif result.status == "error":
                self._finish_failed(worker, run, result, relay)
            elif result.status == "interrupted":
                self._finish_interrupted(run, result, relay)
            else:
                self.lose_run(run, result.reason, crash=result.status == "lost" and result.crash)
                if result.comfyui_unreachable:
                    worker.comfyui_down(result.problem)
            self.record_cold_start(result.cold_start_seconds)
            worker.released(self)
        rq.clear_stop(self.pk, run)
        self.refresh_from_db()

    def _finish_failed(self, worker, run, result: RunResult, relay) -> None:
        if result.out_of_memory and self.memory_retry_from_id is None:
            self.retry_for_memory(run, worker)
            lifecycle.changed(notice=(self, "The GPU ran out of memory; your job gets one more try"))
            return
        text = result.error.get("exception_message") or result.error.get("message") or "The run failed on the GPU"
        text = text.strip()
        if result.out_of_memory:
            text = (
                "The GPU ran out of memory twice running this workflow. Try a smaller image or video size, "
                f"fewer frames or a smaller batch.\n\n{text}"
            )
        self.mark_failed(
            text,
            messages=result.messages,
            node_errors=result.error.get("node_errors") or None,
            gpu_seconds=result.gpu_seconds,
            load_seconds=result.load_seconds,
            run=run,
            end=result.end,
        )
        lifecycle.changed(relay=relay)

    def _finish_interrupted(self, run, result: RunResult, relay) -> None:
        if self.cancel_requested != StopKind.CANCEL:
            self.lose_run(run, "The instructor paused your job for a demo", crash=False)
            return
        self.mark_cancelled(messages=result.messages, gpu_seconds=result.gpu_seconds, run=run, end=result.end)
        told = (
            (self, "cancelled by the instructor", SAID_CANCELLED, True) if self.cancelled_by == "instructor" else None
        )
        lifecycle.changed(relay=relay, notice=told)

    def record_cold_start(self, seconds: float | None) -> None:
        """What starting its serverless GPU cost this run: shown in the console, never a failure."""
        if seconds:
            Job.objects.filter(pk=self.pk).update(cold_start_seconds=seconds)
            self.cold_start_seconds = seconds

    def renew_lease(self, run) -> bool:
        return bool(
            Job.objects.filter(pk=self.pk, run=run, state__in=ACTIVE_STATES).update(
                lease_expires_at=timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)
            )
        )

    def _end(self, state: str, run, end=(), from_states=None, **reported) -> bool:
        """The job's end, in one conditional UPDATE: from any open state (a run's end: only
        from an active state of that run). What the run reported is kept where given."""
        return self._move(
            from_states or (OPEN_STATES if run is None else ACTIVE_STATES),
            of_run=run,
            state=state,
            finished_at=timezone.now(),
            cancel_requested="",
            lease_expires_at=None,
            end_messages=list(end),
            **{key: value for key, value in reported.items() if value is not None},
        )

    def mark_completed(self, outputs, messages, gpu_seconds, load_seconds=None, run=None, end=()) -> bool:
        return self._end(
            JobState.COMPLETED,
            run,
            end,
            from_states=ACTIVE_STATES,
            from_cache=protocol.ran_from_cache(self.prompt, messages),
            outputs=outputs,
            messages=messages,
            gpu_seconds=gpu_seconds,
            load_seconds=load_seconds,
        )

    def mark_failed(
        self, error: str, messages=None, node_errors=None, gpu_seconds=None, load_seconds=None, run=None, end=()
    ) -> bool:
        return self._end(
            JobState.FAILED,
            run,
            end,
            error=error,
            messages=messages,
            node_errors=node_errors,
            gpu_seconds=gpu_seconds,
            load_seconds=load_seconds,
        )

    def mark_cancelled(self, messages=None, gpu_seconds=None, run=None, end=()) -> bool:
        return self._end(JobState.CANCELLED, run, end, messages=messages, gpu_seconds=gpu_seconds)

    def time_out(self, seconds: int) -> bool:
        """A run long past its time that its worker never ended (it ignored the interrupt, or
        is gone without a word): failed here, its tab told, and the worker asked to stop it."""
        reason = f"Timed out after {seconds} s"
        if not self.mark_failed(reason, run=self.run):
            return False
        rq.signal_stop(self.id, self.run, StopKind.TIMEOUT)
        lifecycle.changed(notice=(self, reason))
        return True

    def lose_run(self, run: int, reason: str, *, crash: bool) -> bool:
        """Run `run` ended without a result. A cancel stays final; an instructor's interrupt
        comes back at the front without costing an attempt; a crash costs one, and after
        max_attempts of them the job fails with the reason."""
        with transaction.atomic():
            current = Job.objects.select_for_update().filter(pk=self.pk, run=run, state__in=ACTIVE_STATES).first()
            if current is None:
                return False
            self.__dict__.update({f.attname: getattr(current, f.attname) for f in Job._meta.concrete_fields})
            if current.cancel_requested == StopKind.CANCEL:
                changed = self.mark_cancelled(run=run)
            elif current.cancel_requested == StopKind.INTERRUPT:
                changed = self._requeue(run, interruptions=F("interruptions") + 1)
            elif crash and current.attempts + 1 >= QueueSettings.get().max_attempts:
                changed = self.mark_failed(f"{reason}; gave up after {current.attempts + 1} attempts", run=run)
            else:
                changed = self._requeue(run, attempts=F("attempts") + (1 if crash else 0), error=reason)
        rq.withdraw(self.pk, run)
        if changed:
            said = SAID_DEMO if current.cancel_requested == StopKind.INTERRUPT else None
            if current.cancel_requested == StopKind.CANCEL and current.cancelled_by == "instructor":
                said = SAID_CANCELLED
            lifecycle.changed(notice=(self, reason, said))
        return changed

    def _requeue(self, run, **fields) -> bool:
        return self._move(
            ACTIVE_STATES,
            of_run=run,
            state=JobState.QUEUED,
            priority=Greatest(F("priority"), PRIORITY_RESUME),
            dispatched_at=None,
            started_at=None,
            worker=None,
            cancel_requested="",
            progress={},
            lease_expires_at=None,
            **fields,
        )

    def retry_for_memory(self, run: int, worker: Worker) -> bool:
        """Out of GPU memory the first time: once more, on another worker if one is free."""
        return self._requeue(run, memory_retry_from=worker)

    def request_stop(self, kind: str) -> bool:
        """Ask the worker running this job to stop ('cancel' ends it, 'interrupt' requeues it).
        A cancel is never turned back into an interrupt."""
        rows = Job.objects.filter(pk=self.pk, state__in=ACTIVE_STATES)
        if kind == StopKind.INTERRUPT:
            rows = rows.exclude(cancel_requested=StopKind.CANCEL)
        changed = rows.update(cancel_requested=kind)
        if changed:
            self.refresh_from_db()
        return bool(changed)

    # --- control: the participant's and the instructor's levers ------------------------

    def cancel(self, by_instructor: bool = False) -> bool:
        """Stop this job wherever it is; it ends `cancelled`, and nothing brings it back.

        A running job ends when its worker confirms ComfyUI stopped (the worker hears of it
        within half a second), so the GPU is free when the state says so; if the worker is gone
        the reaper ends it `cancelled` when the lease runs out.
        """
        if by_instructor and not self.is_final:
            Job.objects.filter(pk=self.pk, state__in=OPEN_STATES).update(cancelled_by="instructor")
            self.cancelled_by = "instructor"
        if self.state == JobState.RUNNING:
            if self.request_stop(StopKind.CANCEL):
                rq.signal_stop(self.pk, self.run, StopKind.CANCEL)
                lifecycle.changed()
                return True
            return False
        was_dispatched, run = self.state == JobState.DISPATCHED, self.run
        if self.mark_cancelled():
            if was_dispatched:
                rq.withdraw(self.pk, run)
                rq.signal_stop(self.pk, self.run, StopKind.CANCEL)
            if by_instructor:
                lifecycle.changed(notice=(self, "cancelled by the instructor", SAID_CANCELLED, not was_dispatched))
            return True
        # It started meanwhile: ask its worker.
        self.refresh_from_db()
        return self.state == JobState.RUNNING and self.cancel(by_instructor)

    def run_next(self) -> bool:
        """The instructor's "run next": to the head of the queue (after any "run now")."""
        if Job.objects.filter(pk=self.pk, state=JobState.QUEUED, priority__lt=PRIORITY_NEXT).update(
            priority=PRIORITY_NEXT
        ):
            self.refresh_from_db()
            lifecycle.changed(notice=(self, "moved to the front by the instructor", SAID_NEXT, True))
            return True
        return False

    def requeue(self) -> bool:
        """A failed or cancelled job back into the queue, at the front, with fresh attempts."""
        if self._move(
            FINAL_STATES[1:],
            quiet=True,
            state=JobState.QUEUED,
            priority=PRIORITY_RESUME,
            finished_at=None,
            started_at=None,
            dispatched_at=None,
            worker=None,
            error="",
            node_errors={},
            attempts=0,
            cancelled_by="",
            cancel_requested="",
            progress={},
            end_messages=[],
            end_delivered=False,
            lease_expires_at=None,
        ):
            lifecycle.changed(notice=(self, "put back in the queue by the instructor", SAID_REQUEUED, True))
            return True
        return False

    def interrupt_for_demo(self) -> bool:
        """Stop the running job so a demo can use the GPU; it comes back at the front."""
        if not self.request_stop(StopKind.INTERRUPT):
            return False
        if self.state == JobState.DISPATCHED:
            # Not started on its GPU: back to the front at once (the worker, if it already took
            # it, is told the run is no longer its own when it reports the start).
            self.lose_run(self.run, "paused for a demo", crash=False)
        else:
            rq.signal_stop(self.pk, self.run, StopKind.INTERRUPT)
        return True

    # --- files the worker sends back ---------------------------------------------------

    def store_file(
        self, folder_type: str, subfolder: str, filename: str, chunks, *, offset: int = 0, final: bool = True
    ) -> dict:
        """Store one output file in the workspace, whole or in parts; returns where, as ComfyUI
        names it (or, for a part that is not the last, how many bytes are in so far).

        Parts go into a hidden file beside the target, each at its offset (a part sent again
        replaces itself); the last one moves it into place, so a half-sent file is never seen.
        Repeating the same upload for this job reuses the name (idempotent); a name another
        job already used gets a suffix, since several GPU hosts count file names separately.
        """
        key = f"{folder_type}/{subfolder}/{filename}"
        known = self.files.get(key)
        folder = self.workspace.file_path(folder_type, filename, subfolder).parent
        # Named by the job and the file it will be: the name it gets is chosen only at the end.
        staging = part_name(folder, f"{self.pk}-{hashlib.sha256(key.encode()).hexdigest()[:16]}")
        try:
            received = write_part(staging, chunks, offset)
        except PartGap as exc:
            raise OutputRefused(409, str(exc)) from None
        if received > settings.MAX_OUTPUT_BYTES:
            staging.unlink(missing_ok=True)
            raise OutputRefused(413, f"Output file too large (over {settings.MAX_OUTPUT_BYTES} bytes)")
        if not final:
            return {"received": received}
        if known:
            target = self.workspace.file_path(folder_type, known["filename"], known["subfolder"])
        else:
            name = unique_name(filename, lambda n: self.workspace.file_path(folder_type, n, subfolder).exists())
            target = self.workspace.file_path(folder_type, name, subfolder)
        move_into_place(staging, target)
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


def usage_today() -> dict[str, policies.Usage]:
    """Jobs started and GPU seconds per workspace since local midnight."""
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        Job.objects.filter(started_at__gte=midnight)
        .values("workspace__slug")
        .annotate(n=models.Count("id"), secs=models.Sum("gpu_seconds"), loading=models.Sum("load_seconds"))
    )
    # Loading a model is billed to nobody: whoever happens to run first would pay for everyone.
    return {
        r["workspace__slug"]: policies.Usage(
            jobs=r["n"], gpu_seconds=max((r["secs"] or 0.0) - (r["loading"] or 0.0), 0.0)
        )
        for r in rows
    }


class OutputRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
