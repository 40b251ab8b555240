"""Model-aware dispatch: among free workers, the one whose ComfyUI has the job's model loaded."""

import pytest
from django.utils import timezone

from jobs import dispatcher
from jobs.models import Job, JobState, QueueSettings, Worker, WorkerStatus

CKPT = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "ltx-2-19b-dev.safetensors"}},
    "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
}


@pytest.fixture
def two_workers(db):
    QueueSettings.objects.update_or_create(pk=1, defaults={"paused": True})  # submit without dispatching yet
    first = Worker.create_with_token("gpu-a", status=WorkerStatus.IDLE, last_heartbeat=timezone.now())[0]
    second = Worker.create_with_token(
        "gpu-b", status=WorkerStatus.IDLE, last_heartbeat=timezone.now(), loaded_models=["ltx-2-19b-dev.safetensors"]
    )[0]
    return first, second


def dispatch_one(participants, prompt):
    job = Job.submit(participants[0], prompt)
    QueueSettings.objects.filter(pk=1).update(paused=False)
    dispatcher.dispatch()
    return Job.objects.get(pk=job.pk)


def test_a_job_goes_to_the_free_worker_that_has_its_model(two_workers, participants):
    job = dispatch_one(participants, CKPT)
    assert job.state == JobState.DISPATCHED and job.worker == two_workers[1]


def test_without_affinity_or_a_match_the_first_free_worker_as_before(two_workers, participants, settings):
    other = {**CKPT, "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}}}
    assert dispatch_one(participants, other).worker == two_workers[0]
    settings.MODEL_AFFINITY = False
    Job.objects.all().delete()
    QueueSettings.objects.filter(pk=1).update(paused=True)
    assert dispatch_one(participants, CKPT).worker == two_workers[0]


def test_a_finished_run_records_what_its_worker_holds(two_workers, participants):
    first = two_workers[0]
    job = dispatch_one(
        participants,
        {**CKPT, "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}}},
    )
    assert job.worker == first and job.mark_running(first, job.run)
    first.ran(job)
    assert Worker.objects.get(pk=first.pk).loaded_models == ["sdxl.safetensors"]
