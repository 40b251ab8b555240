from django.core.management.base import BaseCommand

from jobs.models import Worker


class Command(BaseCommand):
    help = "Create a GPU worker identity (or rotate its token) and print the token for `python -m gpuworker --token`."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Worker name, e.g. h100-a")
        parser.add_argument("--quiet", action="store_true", help="Print only the token")

    def handle(self, *args, name, quiet, **options):
        worker, token = Worker.create_with_token(name)
        if quiet:
            self.stdout.write(token)
            return
        self.stdout.write(f"Worker {worker.name}: token (shown once, the old one no longer works):")
        self.stdout.write(token)
