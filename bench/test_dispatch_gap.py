"""Benchmark: the GPU's idle time between jobs (not a test: it prints a table, asserts no speed).

    .venv/bin/python -m pytest bench/test_dispatch_gap.py -s -p no:cacheprovider

A full queue on one GPU worker (the real gpuworker process, Daphne, PostgreSQL, Redis, the
ComfyUI double). From the double's own history: the time from one prompt's
`execution_success` to the next prompt's `execution_start` (ComfyUI idle, waiting for the
platform), and the share of the time the GPU was busy, first with short jobs, then with long
ones.
"""

import json
import statistics

import pytest

from jobs.stats import percentile
from tests.conftest import WORKFLOWS, wait_until

SIMPLE = json.loads((WORKFLOWS / "simple.json").read_text())


def fill_and_drain(live_app, double, workspaces, jobs, steps, step_time, offset):
    from jobs.models import Job, JobState

    double.steps, double.step_time = steps, step_time
    sessions = {w.slug: live_app.login(w.owner.username) for w in workspaces}
    ids = []
    for n in range(jobs):
        workspace = workspaces[n % len(workspaces)]
        prompt = json.loads(json.dumps(SIMPLE))
        prompt["1"]["inputs"]["color"] = offset + n  # distinct: nothing from the cache
        answer = sessions[workspace.slug].post(
            f"{live_app.url}/user/{workspace.slug}/api/prompt",
            json={"prompt": prompt, "client_id": "bench"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["prompt_id"])
    wait_until(
        lambda: Job.objects.filter(pk__in=ids, state=JobState.COMPLETED).count() == jobs,
        timeout=jobs * steps * step_time * 3 + 60,
        message="the queue to drain",
    )
    runs = []
    for entry in double.history.values():
        stamps = {event: data["timestamp"] for event, data in entry["status"]["messages"]}
        if "execution_start" in stamps and "execution_success" in stamps:
            runs.append((stamps["execution_start"], stamps["execution_success"]))
    runs.sort()
    runs = runs[-jobs:]
    gaps = [later[0] - earlier[1] for earlier, later in zip(runs, runs[1:], strict=False)]
    busy = sum(end - start for start, end in runs) / (runs[-1][1] - runs[0][0])
    return gaps, busy, statistics.mean(end - start for start, end in runs) / 1000


@pytest.mark.e2e
def test_dispatch_gap(live_app, participants, double, short_jobs, long_jobs):
    from accounts.models import Workspace

    Workspace.objects.update(max_waiting_jobs=1000)
    workspaces = list(Workspace.objects.select_related("owner").order_by("slug"))
    rows = []
    with live_app.gpu_worker(double.url):
        for label, (jobs, steps, step_time), offset in (("short", short_jobs, 0), ("long", long_jobs, 10_000)):
            gaps, busy, run_s = fill_and_drain(live_app, double, workspaces, jobs, steps, step_time, offset)
            rows.append((label, jobs, run_s, gaps, busy))
    print("\n\nOne GPU worker, a full queue (the gap: execution_success → the next execution_start on ComfyUI)\n")
    print("| jobs | each runs | gap p50 ms | gap p99 ms | gap max ms | GPU busy |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for _label, jobs, run_s, gaps, busy in rows:
        print(
            f"| {jobs} | {run_s:.1f} s | {statistics.median(gaps):.0f} | {percentile(gaps, 99):.0f} "
            f"| {max(gaps):.0f} | "
            f"{busy * 100:.2f}% |"
        )


@pytest.fixture
def short_jobs():
    return 40, 10, 0.033  # 40 jobs of about 1 s (three nodes of 10 steps)


@pytest.fixture
def long_jobs():
    return 6, 20, 0.167  # 6 jobs of about 10 s
