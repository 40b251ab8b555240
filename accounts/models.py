from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

FOLDER_TYPES = ("input", "output", "temp")


class UnsafePath(ValueError):
    """A file name that would leave its workspace folder, or that no file system can hold."""


# ext4, XFS and most others hold 255 bytes per name; the rest is room for the temporary name
# a file is written under (".<name>.upload").
MAX_NAME_BYTES = 240
MAX_PATH_BYTES = 1024


def check_name_lengths(parts: list[str]) -> None:
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts):
        raise UnsafePath(f"File name too long: at most {MAX_NAME_BYTES} bytes per name")
    if sum(len(part.encode("utf-8", "surrogatepass")) + 1 for part in parts) > MAX_PATH_BYTES:
        raise UnsafePath(f"Path too long: at most {MAX_PATH_BYTES} bytes")


class Workspace(models.Model):
    """One participant's private ComfyUI server, as far as the participant can tell."""

    slug = models.CharField(max_length=16, unique=True,
                            help_text="The workspace's address: 007 is served at /user/007/")
    owner = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workspace")
    quota_bytes = models.BigIntegerField(default=5 * 1024**3, help_text="Disk space for inputs and outputs, in bytes")
    max_waiting_jobs = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the queue's per-participant limit when set"
    )
    gpu_budget_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="GPU seconds this workspace may use in all (empty: no limit)")
    jumps_queue = models.BooleanField(
        default=False, help_text="Its runs go to the head of the queue (the instructor's demo workspace)")
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
        if "/" in filename or "\\" in filename or filename in (".", ".."):
            raise UnsafePath(f"Invalid file name {filename!r}")
        check_name_lengths([filename, *subfolder.replace("\\", "/").split("/")])
        base = (self.root / folder_type).resolve()
        parts = [p for p in subfolder.replace("\\", "/").split("/") if p]
        if subfolder.startswith(("/", "\\")) or any(p in (".", "..") for p in parts):
            raise UnsafePath(f"Invalid subfolder {subfolder!r}")
        candidate = base.joinpath(*parts, filename)
        resolved = candidate.resolve()
        if not resolved.is_relative_to(base):
            raise UnsafePath("Path leaves the workspace")
        return candidate

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

    def gpu_seconds_used(self) -> float:
        from django.db.models import Sum

        return self.jobs.aggregate(s=Sum("gpu_seconds"))["s"] or 0.0

    def cancel_waiting(self) -> int:
        """The instructor's "cancel all of theirs": every waiting job of this workspace."""
        return sum(job.cancel(by_instructor=True) for job in self.jobs.filter(state="queued"))

    def set_limits(self, *, max_waiting_jobs, gpu_budget_seconds, jumps_queue: bool) -> None:
        self.max_waiting_jobs, self.gpu_budget_seconds, self.jumps_queue = max_waiting_jobs, gpu_budget_seconds, jumps_queue
        self.save(update_fields=["max_waiting_jobs", "gpu_budget_seconds", "jumps_queue"])

    def owner_reset_password(self) -> str:
        """A new password for the participant; their open sessions end (Django checks the hash)."""
        from .credentials import new_password

        password = new_password()
        self.owner.set_password(password)
        self.owner.save(update_fields=["password"])
        return password

    def used_bytes(self) -> int:
        total = 0
        for folder in FOLDER_TYPES:
            for path in (self.root / folder).rglob("*"):
                if path.is_file() and not path.is_symlink():
                    total += path.stat().st_size
        return total
