from django.core.management.base import BaseCommand

from jobs.models import Worker


class Command(BaseCommand):
    help = (
        "Create a GPU worker identity (or rotate its token) and print the token for gpuworker "
        "(GPUWORKER_TOKEN or --token-file)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="Worker name, e.g. h100-a")
        parser.add_argument("--quiet", action="store_true", help="Print only the token")

    def handle(self, *args, name, quiet, **options):
        existed = Worker.objects.filter(name=name).exists()
        worker, token = Worker.create_with_token(name)
        if quiet:
            self.stdout.write(token)
            return
        if existed:
            self.stdout.write(
                f"Worker {worker.name}: new token (shown once). The old one no longer works: a process still "
                "using it stops, and its job goes back to the queue at no cost."
            )
        else:
            self.stdout.write(f"Worker {worker.name} created: token (shown once):")
        self.stdout.write(token)
