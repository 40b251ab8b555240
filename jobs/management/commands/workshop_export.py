"""`manage.py workshop_export --out DIR`: one zip per participant with their outputs and saved
workflows, for them to take home."""

import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Workspace
from workshop.lib.files import is_work_in_progress, move_into_place, temporary_name


def export_workspace(workspace: Workspace, out: Path) -> tuple[Path, int]:
    """<out>/<username>.zip with output/… and workflows/…; returns (zip, files)."""
    target = out / f"{workspace.owner.get_username()}.zip"
    count = 0
    tmp = temporary_name(target)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for folder, prefix in (
            (workspace.root / "output", "output"),
            (workspace.root / "userdata" / "workflows", "workflows"),
        ):
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                # Links are never followed: nothing outside the workspace goes into its zip, and
                # nothing half-written either.
                if path.is_file() and not path.is_symlink() and not is_work_in_progress(path):
                    archive.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
                    count += 1
    move_into_place(tmp, target)
    return target, count


class Command(BaseCommand):
    help = "Write one zip per participant (outputs and saved workflows) into --out."

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="Folder for the zips (created if missing)")
        parser.add_argument("--include-staff", action="store_true", help="Also the instructor's workspaces")

    def handle(self, *args, out, include_staff, **options):
        folder = Path(out)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"Cannot write to {folder}: {exc}") from None
        chosen = Workspace.objects.select_related("owner")
        if not include_staff:
            chosen = chosen.filter(owner__is_staff=False)
        workspaces = list(chosen)
        if not workspaces:
            raise CommandError("No participant workspaces to export")
        total = 0
        for n, workspace in enumerate(workspaces, start=1):
            path, count = export_workspace(workspace, folder)
            total += count
            self.stdout.write(f"[{n}/{len(workspaces)}] {path.name}: {count} file(s), {path.stat().st_size // 1024} KB")
        self.stdout.write(self.style.SUCCESS(f"Exported {len(workspaces)} workspace(s), {total} file(s), to {folder}"))
