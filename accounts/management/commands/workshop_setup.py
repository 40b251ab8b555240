"""Create the workshop's accounts: user001…userNNN with workspaces, and an instructor.

Idempotent: existing accounts keep their passwords. New passwords are shown once, in the table
printed here and in the credential sheet (a CSV under var/, appended to), never again.
"""
import csv
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Workspace

# Easy to read aloud and type: no 0/O, 1/l/I.
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_password(length: int = 10) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


class Command(BaseCommand):
    help = "Create participant accounts (user001…) with workspaces, and the instructor account."

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=settings.WORKSHOP_USERS, help="How many participants")
        parser.add_argument("--prefix", default="user", help="Username prefix (default: user)")
        parser.add_argument("--instructor", default="instructor", help="Staff account name")
        parser.add_argument(
            "--sheet", default=str(settings.VAR_DIR / "credentials.csv"), help="Credential sheet (CSV) to append to"
        )

    def handle(self, *args, users, prefix, instructor, sheet, **options):
        if not 1 <= users <= 999:
            raise CommandError("--users must be between 1 and 999")
        User = get_user_model()
        created: list[tuple[str, str, str]] = []
        with transaction.atomic():
            staff = User.objects.filter(username=instructor).first()
            if staff is None:
                password = new_password(14)
                User.objects.create_user(instructor, password=password, is_staff=True, is_superuser=True)
                created.append((instructor, password, "/admin/"))
            for n in range(1, users + 1):
                slug = f"{n:03d}"
                username = f"{prefix}{slug}"
                user = User.objects.filter(username=username).first()
                if user is None:
                    password = new_password()
                    user = User.objects.create_user(username, password=password)
                    created.append((username, password, f"/user/{slug}/"))
                workspace, _ = Workspace.objects.get_or_create(owner=user, defaults={"slug": slug})
                workspace.ensure_folders()
                if n % 50 == 0:
                    self.stdout.write(f"  … {n}/{users} participants ready")

        if not created:
            self.stdout.write(self.style.SUCCESS(f"All {users} participants and '{instructor}' exist already; passwords unchanged."))
            return
        sheet_path = Path(sheet)
        sheet_path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not sheet_path.exists()
        with sheet_path.open("a", newline="") as fh:
            writer = csv.writer(fh)
            if is_new:
                writer.writerow(["username", "password", "url"])
            writer.writerows(created)
        sheet_path.chmod(0o600)

        width = max(len(u) for u, _, _ in created)
        self.stdout.write(f"{'username'.ljust(width)}  password        url")
        for username, password, url in created:
            self.stdout.write(f"{username.ljust(width)}  {password.ljust(14)}  {url}")
        self.stdout.write(
            self.style.SUCCESS(f"Created {len(created)} accounts; passwords appended to {sheet_path} (shown only once).")
        )
