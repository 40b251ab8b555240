"""`manage.py workshop_users add|remove|reset-password|link|list`: participants, one command.

New passwords go to the credential sheet (CSV plus a printable HTML page with a QR code per
card) under the sheet folder, never to stdout unless --show is given.
"""

import json as json_module
import shutil

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import credentials, loginlinks
from accounts.models import Workspace
from accounts.sheet import update_sheet


class Command(BaseCommand):
    help = "Add, remove, reset or list workshop participants (each with a workspace)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="add|remove|reset-password|link|list|sheet")
        common = {
            "default": str(settings.CREDENTIALS_DIR),
            "help": "Folder of the credential sheet (credentials.csv/.html)",
        }

        add = sub.add_parser("add", help="Create participants: NAME … or --count N (user001 …)")
        add.add_argument("names", nargs="*", help="Usernames to create")
        add.add_argument("--count", type=int, default=0, help="Create the next N numbered participants")
        add.add_argument("--prefix", default="user", help="Prefix of numbered usernames (default: user)")
        add.add_argument("--sheet", **common)
        add.add_argument("--show", action="store_true", help="Also print the new passwords (they end up in logs)")

        remove = sub.add_parser("remove", help="Delete participants, their jobs and their workspace's files")
        remove.add_argument("names", nargs="+")
        remove.add_argument("--yes", action="store_true", help="Do not ask")
        remove.add_argument("--sheet", **common)

        sheet = sub.add_parser("sheet", help="Write the credential sheet anew (at WORKSHOP_URL), changing no password")
        sheet.add_argument("--sheet", **common)

        reset = sub.add_parser("reset-password", help="A new password for each participant named")
        reset.add_argument("names", nargs="+")
        reset.add_argument("--sheet", **common)
        reset.add_argument("--show", action="store_true", help="Also print the new passwords (they end up in logs)")

        link = sub.add_parser(
            "link",
            help="A one-time login link (15 minutes) for an account, the instructor's too: "
            "the way in when a guesser keeps its logins slowed",
        )
        link.add_argument("name")

        listing = sub.add_parser("list", help="Every participant with their workspace")
        listing.add_argument("--json", action="store_true")

    def handle(self, *args, action, **options):
        return getattr(self, action.replace("-", "_"))(**options)

    # --- actions ---------------------------------------------------------------------

    def add(self, names, count, prefix, sheet, show, **_):
        if not names and count <= 0:
            raise CommandError("Name the participants to add, or give --count N")
        User = get_user_model()
        wanted = list(names)
        taken_slugs = set(Workspace.objects.values_list("slug", flat=True))
        numbered: list[tuple[str, str | None]] = []
        n = 1
        while len(numbered) < count:
            slug = f"{n:03d}"
            if slug not in taken_slugs and not User.objects.filter(username=f"{prefix}{slug}").exists():
                numbered.append((f"{prefix}{slug}", slug))
            n += 1
            if n > 9999:
                raise CommandError("No free workspace numbers left")
        rows = []
        with transaction.atomic():
            for username in wanted:
                if User.objects.filter(username=username).exists():
                    raise CommandError(f"{username} exists already (reset-password gives a new password)")
            chosen: list[tuple[str, str | None]] = [(u, None) for u in wanted] + numbered
            for username, wanted_slug in chosen:
                password = credentials.new_password()
                user = User.objects.create_user(username, password=password)
                slug = wanted_slug or _free_slug(taken_slugs)
                taken_slugs.add(slug)
                workspace = Workspace.objects.create(owner=user, slug=slug)
                workspace.ensure_folders()
                rows.append({"username": username, "password": password, "path": f"/user/{slug}/"})
                if len(rows) % 50 == 0:
                    self.stdout.write(f"  … {len(rows)} created")
        self._sheet(rows, sheet, show)
        self.stdout.write(self.style.SUCCESS(f"Added {len(rows)} participant(s)."))

    def sheet(self, sheet, **_):
        csv_path, html_path = update_sheet([], sheet)
        self.stdout.write(f"Credential sheet written for {settings.WORKSHOP_URL}: {csv_path} and {html_path}.")

    def remove(self, names, yes, sheet, **_):
        User = get_user_model()
        users = list(User.objects.filter(username__in=names).select_related("workspace"))
        missing = set(names) - {u.username for u in users}
        if missing:
            raise CommandError(f"No such participant: {', '.join(sorted(missing))}")
        if any(u.is_staff for u in users):
            raise CommandError("Staff accounts are not participants; remove them in the admin")
        if not yes:
            answer = input(f"Delete {len(users)} participant(s), their jobs and files? Type 'yes': ")
            if answer.strip() != "yes":
                raise CommandError("Nothing removed")

        for user in users:
            root = user.workspace.root if hasattr(user, "workspace") else None
            user.delete()
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)
            self.stdout.write(f"removed {user.username}")
        update_sheet([], sheet)
        self.stdout.write(
            self.style.SUCCESS(f"Removed {len(users)} participant(s); the credential sheet no longer lists them.")
        )

    def reset_password(self, names, sheet, show, **_):
        User = get_user_model()
        rows = []
        for name in names:
            user = User.objects.filter(username=name).select_related("workspace").first()
            if user is None:
                raise CommandError(f"No such user: {name}")
            password = credentials.new_password()
            user.set_password(password)
            user.save(update_fields=["password"])
            path = f"/user/{user.workspace.slug}/" if hasattr(user, "workspace") else "/admin/"
            rows.append({"username": name, "password": password, "path": path})
        self._sheet(rows, sheet, show)
        self.stdout.write(self.style.SUCCESS(f"New password for {len(rows)} account(s); old sessions end."))

    def link(self, name, **_):
        user = get_user_model().objects.filter(username=name, is_active=True).first()
        if user is None:
            raise CommandError(f"No such user: {name}")
        self.stdout.write(loginlinks.issue(user))
        self.stdout.write(
            self.style.SUCCESS(f"A login link for {name}: it works once, for {loginlinks.LINK_SECONDS // 60} minutes.")
        )

    def list(self, json: bool = False, **_):
        rows = [
            {
                "username": ws.owner.get_username(),
                "workspace": ws.slug,
                "url": f"/user/{ws.slug}/",
                "staff": ws.owner.is_staff,
                "last_activity": ws.last_activity.isoformat() if ws.last_activity else None,
            }
            for ws in Workspace.objects.select_related("owner")
        ]
        if json:
            self.stdout.write(json_module.dumps(rows, indent=2))
            return
        for row in rows:
            self.stdout.write(
                f"{row['workspace']}  {row['username']:<20} {row['url']:<12} {'instructor' if row['staff'] else ''}"
            )
        self.stdout.write(f"{len(rows)} workspace(s)")

    # --- helpers ---------------------------------------------------------------------

    def _sheet(self, rows, sheet, show):
        if not rows:
            return
        csv_path, html_path = update_sheet(rows, sheet)
        self.stdout.write(f"Passwords written to {csv_path} and {html_path} (print the cards; owner-only files).")
        if show:
            for row in rows:
                self.stdout.write(f"{row['username']}  {row['password']}  {row['path']}")


def _free_slug(taken: set) -> str:
    n = 1
    while f"{n:03d}" in taken:
        n += 1
    return f"{n:03d}"
