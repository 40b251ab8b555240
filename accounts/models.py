from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

from workshop.lib.files import UnsafePath, part_name, safe_join

from .credentials import new_password
from .sheet import update_sheet

FOLDER_TYPES = ("input", "output", "temp")


class Workspace(models.Model):
    """One participant's private ComfyUI server, as far as the participant can tell."""

    slug = models.CharField(
        max_length=16, unique=True, help_text="The workspace's address: 007 is served at /user/007/"
    )
    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workspace")
    quota_bytes = models.BigIntegerField(default=5 * 1024**3, help_text="Disk space for inputs and outputs, in bytes")
    max_waiting_jobs = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the queue's per-participant limit when set"
    )
    gpu_budget_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="GPU seconds this workspace may use in all (empty: no limit)"
    )
    jumps_queue = models.BooleanField(
        default=False, help_text="Its runs go to the head of the queue (the instructor's demo workspace)"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_activity = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return f"{self.slug} ({self.owner.get_username()})"

    @property
    def root(self) -> Path:
        return Path(settings.WORKSHOP_DATA_DIR) / "workspaces" / self.slug

    def ensure_folders(self) -> None:
        for name in (*FOLDER_TYPES, "userdata"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def file_path(self, folder_type: str, filename: str, subfolder: str = "") -> Path:
        """Resolve a ComfyUI (type, subfolder, filename) triple inside this workspace.

        Raises UnsafePath for anything that could reach outside the folder: absolute names,
        '..', links pointing out, unknown types.
        """
        if folder_type not in FOLDER_TYPES:
            raise UnsafePath(f"Unknown folder type {folder_type!r}")
        if not filename or "\x00" in filename or "\x00" in subfolder:
            raise UnsafePath("Missing or invalid file name")
        parts = [p for p in subfolder.replace("\\", "/").split("/") if p]
        if subfolder.startswith(("/", "\\")) or any(p in (".", "..") for p in parts):
            raise UnsafePath(f"Invalid subfolder {subfolder!r}")
        return safe_join(self.root / folder_type, [*parts, filename])

    def has_file(self, item: dict) -> bool:
        """Whether a ComfyUI file reference ({"filename", "subfolder", "type"}) is a file here."""
        try:
            return self.file_path(item["type"], item["filename"], item.get("subfolder", "")).is_file()
        except (UnsafePath, OSError):
            return False

    def touch(self) -> None:
        now = timezone.now()
        Workspace.objects.filter(pk=self.pk).update(last_activity=now)
        self.last_activity = now

    def set_limits(self, *, max_waiting_jobs, gpu_budget_seconds, jumps_queue: bool) -> None:
        self.max_waiting_jobs, self.gpu_budget_seconds, self.jumps_queue = (
            max_waiting_jobs,
            gpu_budget_seconds,
            jumps_queue,
        )
        self.save(update_fields=["max_waiting_jobs", "gpu_budget_seconds", "jumps_queue"])

    def owner_reset_password(self) -> str:
        """A new password for the participant; their open sessions end (Django checks the hash).
        The credential sheet gets it too, so a reprinted card is never stale."""

        password = new_password()
        self.owner.set_password(password)
        self.owner.save(update_fields=["password"])
        update_sheet([{"username": self.owner.get_username(), "password": password}])
        return password

    def used_bytes(self) -> int:
        total = 0
        for folder in FOLDER_TYPES:
            for path in (self.root / folder).rglob("*"):
                if path.is_file() and not path.is_symlink():
                    total += path.stat().st_size
        return total


class WorkspaceModel(models.Model):
    """A model file a participant brought (a LoRA first). Its loaders in this workspace offer it
    as `ws-<slug>/<name>`; no other workspace sees it, and it reaches a GPU only with a job that
    names it."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="models")
    folder = models.CharField(max_length=50, help_text="ComfyUI's model folder: loras, …")
    name = models.CharField(max_length=200)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    source_url = models.URLField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["folder", "name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "folder", "name"], name="one_model_per_name")]

    def __str__(self):
        return f"{self.workspace.slug}: {self.folder}/{self.name}"

    @staticmethod
    def prefix(slug: str) -> str:
        # gpuworker.protocol.PARTICIPANT_PREFIX, which accounts may not import
        # (tests/test_own_models.py holds the two to one rule).
        return f"ws-{slug}"

    @property
    def comfy_name(self) -> str:
        """The name ComfyUI's loaders know it by, on the GPU and in this workspace's UI."""
        return f"{self.prefix(self.workspace.slug)}/{self.name}"

    @property
    def path(self) -> Path:
        return self.workspace.root / "models" / self.folder / self.name

    def as_payload(self) -> dict:
        return {"folder": self.folder, "name": self.comfy_name, "sha256": self.sha256, "size": self.size}

    def delete(self, *args, **kwargs):
        """Gone from the workspace, and from every GPU's cache (the workers hear it at their next
        heartbeat)."""
        ModelDeletion.objects.create(folder=self.folder, name=self.comfy_name, sha256=self.sha256)
        self.path.unlink(missing_ok=True)
        return super().delete(*args, **kwargs)

    @classmethod
    def used_bytes(cls, workspace) -> int:
        return cls.objects.filter(workspace=workspace).aggregate(n=models.Sum("size"))["n"] or 0


class ModelDeletion(models.Model):
    """A participant's model deleted: each GPU worker removes it from its cache when it hears of
    it (ids above the last one it acknowledged)."""

    folder = models.CharField(max_length=50)
    name = models.CharField(max_length=300)
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"{self.folder}/{self.name} (deleted)"


class ModelUpload(models.Model):
    """A model file on its way into a workspace (accounts.own_model_uploads): the bytes it has
    reserved of the workspace's model quota while it arrives."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="model_uploads")
    folder = models.CharField(max_length=50)
    name = models.CharField(max_length=200)
    size = models.BigIntegerField(help_text="Bytes reserved")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "folder", "name"], name="one_upload_per_name")]

    def __str__(self):
        return f"{self.workspace.slug}: {self.folder}/{self.name} ({self.size} bytes reserved)"

    @property
    def part(self) -> Path:
        return part_name(self.workspace.root / "models" / self.folder, self.name)
