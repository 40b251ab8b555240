"""Benchmark: model-aware dispatch. Two GPU workers, two checkpoints, participants alternating
between them. How many model loads does affinity save?

    .venv/bin/python -m pytest bench/test_model_affinity.py -s -p no:cacheprovider

The real queue on PostgreSQL: jobs submitted through Job.submit, dispatched by the dispatcher,
started and finished through the same transitions the worker API makes, with the worker's loaded
models as the finish records them. The GPU work itself is simulated: each worker takes its jobs
in turn, and a job whose checkpoint is not the one its worker ran last costs a model load
(tens of seconds for a video model). The same jobs run twice side by side: with affinity, and
with it switched off (MODEL_AFFINITY), which is the dispatcher of before.
"""

import pytest
from django.contrib.auth import get_user_model

from accounts.models import Workspace
from jobs import dispatcher
from jobs.models import Job, JobState, Worker, WorkerStatus

CHECKPOINTS = ["ltx-2-19b-dev.safetensors", "ltx-2-19b-distilled.safetensors"]


def prompt_for(n: int, checkpoint: str) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0], "seed": n}},
    }


RUN_SECONDS, LOAD_SECONDS = 10.0, 30.0  # one job's GPU work; loading a video checkpoint


def simulate(settings, affinity: bool, jobs: int, tag: str, mean_gap: float, seed: int = 1) -> dict:
    """Participants press Run at random moments (every `mean_gap` s on average, the class as a
    whole); a job
    runs 10 s, plus 30 s when its worker must load its checkpoint first. Simulated time: the
    events are taken in order, and nothing sleeps."""
    import heapq
    import random

    from django.utils import timezone

    from jobs.models import QueueSettings

    settings.MODEL_AFFINITY = affinity
    QueueSettings.objects.update_or_create(pk=1, defaults={"max_waiting_per_user": 10_000})
    rng = random.Random(seed)
    users = get_user_model()
    workspaces = []
    for n in range(4):
        user = users.objects.create_user(f"{tag}-{n}", password="pw")
        workspaces.append(Workspace.objects.create(owner=user, slug=f"{tag}-{n}"))
    workers = [
        Worker.create_with_token(f"{tag}-gpu-{n}", status=WorkerStatus.IDLE, last_heartbeat=timezone.now())[0]
        for n in range(2)
    ]
    events, clock, loads, waits, submitted_at = [], 0.0, 0, [], {}
    t = 0.0
    for n in range(jobs):  # each participant keeps to one checkpoint (two participants per checkpoint)
        t += rng.uniform(0, 2 * mean_gap)
        heapq.heappush(events, (t, 1, "arrive", n))
    running = {}
    while events:
        clock, _, kind, what = heapq.heappop(events)
        if kind == "arrive":
            workspace = workspaces[what % len(workspaces)]
            job = Job.submit(workspace, prompt_for(what, CHECKPOINTS[(what % len(workspaces)) // 2]))
            submitted_at[job.pk] = clock
        else:
            job = running.pop(what)
            assert job.mark_completed({}, [], RUN_SECONDS, run=job.run)
            Worker.objects.get(pk=job.worker_id).ran(job)
        Worker.objects.filter(pk__in=[w.pk for w in workers]).update(last_heartbeat=timezone.now())
        dispatcher.dispatch()
        for job in Job.objects.filter(worker__in=workers, state=JobState.DISPATCHED):
            worker = Worker.objects.get(pk=job.worker_id)
            load = not set(job.model_files()) <= set(worker.loaded_models)
            loads += load
            waits.append(clock - submitted_at[job.pk])
            assert job.mark_running(worker, job.run)
            running[job.pk] = job
            heapq.heappush(events, (clock + RUN_SECONDS + LOAD_SECONDS * load, 0, "end", job.pk))
    Worker.objects.filter(pk__in=[w.pk for w in workers]).update(enabled=False)  # the next run has its own
    waits.sort()
    return {"loads": loads, "jobs": jobs, "wait_p50": waits[len(waits) // 2], "wait_max": waits[-1], "end": clock}


@pytest.mark.django_db(transaction=True)
def test_model_affinity_saves_loads(settings, affinity_jobs):
    print(
        f"\nTwo workers, two checkpoints, four participants (two per checkpoint) pressing Run at random, "
        f"{affinity_jobs} jobs ({RUN_SECONDS:.0f} s each, {LOAD_SECONDS:.0f} s per model load)\n"
    )
    print("| class | affinity | model loads | loads per job | wait p50 s | wait max s | last job ends at s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for gap, label in ((40.0, "quiet: a Run every 40 s"), (20.0, "steady: every 20 s"), (10.0, "busy: every 10 s")):
        off = simulate(settings, False, affinity_jobs, f"off{int(gap)}", gap)
        on = simulate(settings, True, affinity_jobs, f"on{int(gap)}", gap)
        for name, row in (("off", off), ("on", on)):
            print(
                f"| {label} | {name} | {row['loads']} | {row['loads'] / row['jobs']:.2f} | {row['wait_p50']:.0f} | "
                f"{row['wait_max']:.0f} | {row['end']:.0f} |"
            )
        assert on["loads"] <= off["loads"]


@pytest.fixture
def affinity_jobs():
    return 200
