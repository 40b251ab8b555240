"""Create the workshop's accounts: user001…userNNN with workspaces, and an instructor with a
demo workspace of their own (/user/demo/).

Idempotent: existing accounts keep their passwords. New passwords go to the credential sheet
(credentials.csv and a printable credentials.html with a QR code per card, in --sheet), never
to stdout unless --show: command output ends up in logs.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import credentials
from accounts.models import Workspace
from accounts.sheet import update_sheet

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = "Create participant accounts (user001…) with workspaces, and the instructor with a demo workspace."

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=settings.WORKSHOP_USERS, help="How many participants")
        parser.add_argument("--prefix", default="user", help="Username prefix (default: user)")
        parser.add_argument("--instructor", default="instructor", help="Staff account name")
        parser.add_argument(
            "--sheet",
            default=str(settings.CREDENTIALS_DIR),
            help="Folder of the credential sheet (credentials.csv and credentials.html)",
        )
        parser.add_argument("--show", action="store_true", help="Also print new passwords (they end up in logs)")

    def handle(self, *args, users, prefix, instructor, sheet, show, **options):
        if not 1 <= users <= 999:
            raise CommandError("--users must be between 1 and 999")
        User = get_user_model()
        created: list[dict] = []
        with transaction.atomic():
            staff = User.objects.filter(username=instructor).first()
            if staff is None:
                password = credentials.new_password(14)
                staff = User.objects.create_user(instructor, password=password, is_staff=True, is_superuser=True)
                created.append({"username": instructor, "password": password, "path": "/admin/"})
            if (
                not Workspace.objects.filter(owner=staff).exists()
                and not Workspace.objects.filter(slug=DEMO_SLUG).exists()
            ):
                # The instructor's own ComfyUI, for demos; its runs may jump the queue (console).
                Workspace.objects.create(owner=staff, slug=DEMO_SLUG).ensure_folders()
            for n in range(1, users + 1):
                slug = f"{n:03d}"
                username = f"{prefix}{slug}"
                user = User.objects.filter(username=username).first()
                if user is None:
                    password = credentials.new_password()
                    user = User.objects.create_user(username, password=password)
                    created.append({"username": username, "password": password, "path": f"/user/{slug}/"})
                workspace, _ = Workspace.objects.get_or_create(owner=user, defaults={"slug": slug})
                workspace.ensure_folders()
                if n % 50 == 0:
                    self.stdout.write(f"  … {n}/{users} participants ready")

        if not created:
            self.stdout.write(
                self.style.SUCCESS(f"All {users} participants and '{instructor}' exist already; passwords unchanged.")
            )
            return
        csv_path, html_path = update_sheet(created, sheet)
        if show:
            for row in created:
                self.stdout.write(f"{row['username']}  {row['password']}  {row['path']}")
        names = ", ".join(r["username"] for r in created[:3]) + (" …" if len(created) > 3 else "")
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {len(created)} accounts ({names}); passwords in {csv_path} and the printable {html_path}."
            )
        )
