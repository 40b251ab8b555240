"""`manage.py workshop_report`: waits, cost and errors by cause, with charts."""

from django.utils import timezone

from jobs.models import Job, Worker
from tests.conftest import run_command

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def test_report_has_waits_cost_and_errors_by_cause_with_charts(participants, online_worker, tmp_path):
    now = timezone.now()
    Worker.objects.filter(pk=online_worker.pk).update(price_per_hour=3.6)
    for n, (state, error) in enumerate(
        [("completed", ""), ("completed", ""), ("failed", "CUDA out of memory 1"), ("failed", "CUDA out of memory 2")]
    ):
        job = Job.submit(participants[n % 2], SIMPLE)
        Job.objects.filter(pk=job.pk).update(
            state=state,
            error=error,
            worker=online_worker,
            created_at=now - timezone.timedelta(minutes=30),
            started_at=now - timezone.timedelta(minutes=30 - 10 * (n % 2)),
            finished_at=now,
            gpu_seconds=100,
        )
    code, _ = run_command("workshop_report", "--out", str(tmp_path))
    report = (tmp_path / "report.md").read_text()
    assert code == 0
    assert "| completed | 2 |" in report and "| failed | 2 |" in report
    assert "- wait p50: 5 min" in report and "- wait p95: 10 min" in report
    assert "| user001 (001) | 2 | 3 min 20 s | 0.20 |" in report
    assert "| CUDA out of memory N | 2 |" in report
    for chart in ("waiting.svg", "waits.svg", "busy.svg", "gpu.svg"):
        assert (tmp_path / chart).read_text().startswith("<svg") and f"({chart})" in report
