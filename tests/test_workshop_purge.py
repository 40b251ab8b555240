"""`manage.py workshop_purge`: asks, then removes every participant's jobs and files."""

from django.contrib.auth import get_user_model

from jobs.models import Job
from tests.conftest import run_command

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def test_purge_asks_then_removes_every_participants_jobs_and_files(participants):
    Job.submit(participants[0], SIMPLE)
    (participants[0].root / "output" / "a.png").write_bytes(b"x")
    code, _ = run_command("workshop_purge", stdin="nope\n")
    assert code != 0 and Job.objects.count() == 1
    code, text = run_command("workshop_purge", "--yes")
    assert code == 0 and Job.objects.count() == 0
    assert not (participants[0].root / "output" / "a.png").exists()
    assert (participants[0].root / "output").is_dir() and get_user_model().objects.filter(username="user001").exists()
