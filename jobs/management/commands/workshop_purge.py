"""`manage.py workshop_purge`: after the workshop (and its export), remove every participant's
jobs and files. Accounts stay unless --accounts; it asks first unless --yes."""

import shutil

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import FOLDER_TYPES, Workspace
from jobs.models import ACTIVE_STATES, Job


class Command(BaseCommand):
    help = "Delete every participant's jobs and files (and with --accounts, the accounts). Asks first."

    def add_arguments(self, parser):
        parser.add_argument("--accounts", action="store_true", help="Also delete the participant accounts")
        parser.add_argument("--yes", action="store_true", help="Do not ask")

    def handle(self, *args, accounts, yes, **options):
        workspaces = list(Workspace.objects.filter(owner__is_staff=False).select_related("owner"))
        jobs = Job.objects.filter(workspace__in=workspaces)
        if jobs.filter(state__in=ACTIVE_STATES).exists():
            raise CommandError("Jobs are still running: pause the queue and let them finish (or cancel them) first")
        what = f"{len(workspaces)} participant workspace(s), {jobs.count()} job(s)" + (
            " and the accounts" if accounts else ""
        )
        if not yes:
            answer = input(f"Delete {what}? This cannot be undone. Type 'purge': ")
            if answer.strip() != "purge":
                raise CommandError("Nothing deleted")
        with transaction.atomic():
            jobs.delete()
            if accounts:
                for workspace in workspaces:
                    workspace.owner.delete()
        for n, workspace in enumerate(workspaces, start=1):
            for folder in (*FOLDER_TYPES, "userdata"):
                shutil.rmtree(workspace.root / folder, ignore_errors=True)
            if accounts:
                shutil.rmtree(workspace.root, ignore_errors=True)
            else:
                workspace.ensure_folders()
            if n % 20 == 0 or n == len(workspaces):
                self.stdout.write(f"  … {n}/{len(workspaces)} workspaces emptied")
        self.stdout.write(self.style.SUCCESS(f"Deleted {what}."))
