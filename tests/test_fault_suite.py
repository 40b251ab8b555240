"""Faults, injected into the real processes as production runs them: kill -9 of a GPU worker,
ComfyUI dying and coming back, Redis restarting empty, Daphne and the dispatcher killed, a
worker frozen (SIGSTOP) past its lease, the instructor disabling a worker, the operator
rotating its token; each also three times in a row.

In every case every submitted job ends exactly once (completed), none is stuck, none fails
because of the fault, none runs twice to completion on a ComfyUI, and each participant's socket
gets exactly one `execution_success` per job. The recovery seconds are printed.
"""

import signal
import time

import pytest

from jobs.models import FINAL_STATES, Job, JobState, QueueSettings, Worker
from tests.conftest import wait_until
from tests.platform_harness import Browser, Platform, prompt_for, recovered

pytestmark = pytest.mark.e2e

LEASE = 5  # seconds; production's default is 10 (docs/reliability.md has both)
RECOVERY: dict[str, list[float]] = {}


@pytest.fixture
def platform(transactional_db, participants, settings, tmp_path, request):
    # Faults repeated three times may hit the same job three times: above that, so the limit
    # that protects the queue from a job that kills its host is not what is tested here.
    QueueSettings.objects.update_or_create(pk=1, defaults={"max_attempts": 5})
    name = getattr(request, "param", "")
    # A frozen worker's run must still be going on ComfyUI when it wakes, to be stopped there.
    slow = "SIGSTOP" in name or "past the lease" in name
    steps = 40 if slow else 10
    step_time = 0.1 if slow else 0.05
    plat = Platform(settings, tmp_path, lease_seconds=LEASE, steps=steps, step_time=step_time)
    try:
        plat.start()
        yield plat
    except BaseException:
        print(plat.logs())
        raise
    finally:
        plat.stop()


def running_job(timeout=30) -> Job:
    return wait_until(
        lambda: Job.objects.filter(state=JobState.RUNNING).select_related("worker").first(),
        timeout=timeout,
        message="a running job",
    )


# --- the faults: each takes the platform and the job running now -----------------------------


def kill_worker(plat, job):
    victim = job.worker.name
    plat.procs[victim].kill()  # SIGKILL: no goodbye, no result
    # Its lease lapses: the job leaves the killed worker within a few leases...
    wait_until(
        lambda: (j := Job.objects.get(pk=job.pk)).run > job.run or j.state == JobState.QUEUED,
        timeout=LEASE * 4,
        message="the job to leave the killed worker",
    )
    # ...and runs next on the surviving one (the killed one is not back yet), once that one's
    # current run ends: as long as a run takes on this machine, not a lease.
    moved = wait_until(
        lambda: (j := Job.objects.select_related("worker").get(pk=job.pk)).run > job.run and j.worker and j,
        timeout=120,
        message="the job to run on the surviving worker",
    )
    assert moved.worker.name != victim, "the job went to the surviving worker"
    return lambda: plat.restart(victim)


def kill_comfyui(plat, job):
    name = "comfyui-" + job.worker.name.split("-")[1]
    plat.procs[name].kill()
    return lambda: plat.restart(name)


def restart_redis(plat, job):
    plat.procs["redis"].kill()
    plat.restart("redis")  # back at once, and empty

    def workers_lived():
        for n in range(1, plat.workers + 1):
            assert plat.procs[f"gpu-{n}"].alive, "a gpuworker exited when Redis went away"

    return workers_lived


def restart_daphne(plat, job):
    plat.procs["daphne"].kill()
    plat.restart("daphne")
    return None


def daphne_down_past_the_lease(plat, job):
    """A deploy that keeps the app away longer than a lease: the workers carry on (their leases
    live on in Redis) and no run is taken away."""
    from datetime import timedelta

    from django.utils import timezone

    plat.procs["daphne"].kill()
    run = job.run
    # With the app down only the reaper writes the lease, and only once it has run out: a later
    # lease proves the reaper saw it expire and found the run alive in Redis. (Watching for the
    # expired value itself races the reaper, which renews it within one of its passes.)
    before = Job.objects.get(pk=job.pk).lease_expires_at
    renewed = wait_until(
        lambda: (j := Job.objects.get(pk=job.pk)).lease_expires_at > before and j,
        timeout=plat.lease_seconds * 3,
        message="the reaper to renew the run's lease from Redis",
    )
    assert renewed.run == run and renewed.state == JobState.RUNNING, "the run was not taken away"
    renewed_at = renewed.lease_expires_at - timedelta(seconds=plat.lease_seconds)
    assert renewed_at >= before - timedelta(seconds=0.5), "renewed only once the old lease had run out"
    assert renewed_at <= timezone.now()
    plat.restart("daphne")
    assert Job.objects.get(pk=job.pk).run == run, "the run was not taken away"
    return None


def kill_dispatcher(plat, job):
    plat.procs["dispatcher"].kill()
    return lambda: plat.restart("dispatcher")


def freeze_worker(plat, job):
    proc = plat.procs[job.worker.name]
    proc.signal(signal.SIGSTOP)
    print(f"froze {job.worker.name} at {time.strftime('%H:%M:%S')}")
    run = job.run
    # Past its lease: the job goes back to the queue and runs elsewhere … unless its end was
    # already on its way to the app when the signal landed (a finish in flight): then there is
    # no frozen run to reap, and nothing late to refuse.
    wait_until(
        lambda: (j := Job.objects.get(pk=job.pk)).run > run or j.state in (JobState.QUEUED, *FINAL_STATES),
        timeout=LEASE * 4,
        message="the frozen run to be reaped",
    )
    if (ended := Job.objects.get(pk=job.pk)).run == run and ended.state in FINAL_STATES:
        proc.signal(signal.SIGCONT)
        return None

    # … then the frozen worker wakes up, its run still going on ComfyUI, and its late reports
    # arrive: refused, and the run is stopped on ComfyUI.
    print(f"resumed at {time.strftime('%H:%M:%S')}")
    proc.signal(signal.SIGCONT)
    wait_until(lambda: "took the run away" in proc.tail(), timeout=LEASE * 3, message="the late run to be stopped")
    return None


def stop_worker(plat, job):
    """The operator stops a worker (docker stop, Ctrl-C): it gives its job back at no cost."""
    victim = job.worker.name
    plat.procs[victim].stop()  # SIGTERM, and wait for it to exit
    assert plat.procs[victim].popen.returncode == 0, plat.procs[victim].tail()
    back = Job.objects.get(pk=job.pk)
    # A run that ends on ComfyUI while the worker shuts down is reported, not thrown away.
    assert back.run > job.run or back.state in (JobState.QUEUED, JobState.COMPLETED), (
        "the job was given back (or had finished) before the worker exited"
    )
    assert back.attempts == job.attempts, "a shutdown costs no attempt"
    return lambda: plat.restart(victim)


def disable_worker(plat, job):
    from django.test import Client

    instructor = Client()
    instructor.login(username="instructor", password="pw")
    worker = job.worker
    answer = instructor.post(
        f"/admin/jobs/worker/{worker.pk}/change/",
        {
            "name": worker.name,
            "provider": worker.provider,
            "comfyui_url": worker.comfyui_url,
            "capacity": worker.capacity,
            "created_at_0": "2026-01-01",
            "created_at_1": "00:00:00",
            "price_per_hour": "0",
        },
    )  # "enabled" left unticked
    assert answer.status_code == 302, answer.content[:2000]
    assert not Worker.objects.get(pk=worker.pk).enabled

    def enable():
        Worker.objects.filter(pk=worker.pk).update(enabled=True)

    return enable


def rotate_token(plat, job):
    n = int(job.worker.name.split("-")[1])
    _, plat.tokens[n] = Worker.create_with_token(job.worker.name)
    proc = plat.procs[job.worker.name]
    proc.popen.wait(timeout=LEASE * 3)  # the old process stops by itself …
    assert "token" in proc.tail() and "stopping" in proc.tail()
    return lambda: plat.restart(job.worker.name)  # … and the operator starts it with the new token


KILLS_THE_WORKER = {kill_worker}
# A run's end goes to its tab at least once: the socket records it as delivered only once sent,
# since recording first lost an end when Daphne died in between. So a Daphne killed in the
# instant between sending an end and recording it sends it once more to the reconnected tab
# (seen once in four loaded runs of the suite); no other fault may.
KILLS_DAPHNE = {restart_daphne, daphne_down_past_the_lease}

FAULTS = {
    "kill -9 gpuworker": kill_worker,
    "ComfyUI killed, restarted": kill_comfyui,
    "Redis restarted empty": restart_redis,
    "Daphne killed, restarted": restart_daphne,
    "Daphne down past the lease": daphne_down_past_the_lease,
    "dispatcher killed": kill_dispatcher,
    "worker SIGSTOP past its lease": freeze_worker,
    "worker stopped (SIGTERM)": stop_worker,
    "worker disabled": disable_worker,
    "worker token rotated": rotate_token,
}


def run_with_faults(plat, fault, times: int, jobs_each: int = 2, label: str = "") -> list[float]:
    browsers = [Browser(plat, f"user{n:03d}", f"{n:03d}") for n in (1, 2, 3)]
    try:
        ids, color = {}, 0
        for _ in range(jobs_each * times):
            for browser in browsers:
                color += 1
                ids[browser.submit(prompt_for(color))] = (browser, color)
        recoveries = []
        for _ in range(times):
            job = running_job()
            wait_until(lambda job=job: job.pk in {j.pk for j in Job.objects.filter(state=JobState.RUNNING)}, timeout=10)
            before, hit = job.run, time.monotonic()
            after = fault(plat, job)
            # Recovered: the job hit runs again (a new run started) or ended; the rest keep going.
            wait_until(lambda job=job, before=before: recovered(job, before), timeout=60, message="recovery")
            recoveries.append(time.monotonic() - hit)
            if after:
                after()
        wait_until(
            lambda: not Job.objects.filter(pk__in=list(ids)).exclude(state__in=FINAL_STATES).exists(),
            timeout=180,
            message="every job to end",
        )

        # The browsers' last messages may still be on their way.
        def unheard():
            return [
                (
                    b.slug,
                    pid,
                    b.connects,
                    [m.get("type") for m in b.messages if (m.get("data") or {}).get("prompt_id") == pid][-6:],
                )
                for pid, (b, _) in ids.items()
                if b.count("execution_success", pid) < 1
            ]

        try:
            wait_until(lambda: not unheard(), timeout=15, message="every browser to hear of its jobs' success")
        except AssertionError:
            raise AssertionError(
                f"not heard (workspace, job, socket connects, its last messages): {unheard()}"
            ) from None
        time.sleep(0.5)  # a duplicate would arrive right behind the first one
        jobs = {str(j.pk): j for j in Job.objects.filter(pk__in=list(ids))}
        failed = {pid: (j.state, j.error) for pid, j in jobs.items() if j.state != JobState.COMPLETED}
        assert not failed, f"jobs that did not complete: {failed}"
        most = 2 if fault in KILLS_DAPHNE else 1
        twice = {
            pid: b.count("execution_success", pid)
            for pid, (b, _) in ids.items()
            if not 1 <= b.count("execution_success", pid) <= most
        }
        assert not twice, f"execution_success not once (at most {most} times): {twice}"
        if fault not in KILLS_THE_WORKER:
            # The worker lived through the fault, so it stopped every run taken from it on ComfyUI.
            # (A worker killed with -9 cannot; the one started in its place clears its ComfyUI.)
            ran = plat.completions_on_comfyui()
            assert all(ran.get(c, 0) <= 1 for _, c in ids.values()), f"a job ran twice to completion: {ran}"
        print(
            f"\n{label or fault.__name__}: {len(ids)} jobs completed once each; recovery "
            + ", ".join(f"{r:.1f} s" for r in recoveries)
            + f" (lease {LEASE} s)"
        )
        RECOVERY.setdefault(label, []).extend(recoveries)
        return recoveries
    except BaseException:
        print(plat.logs())
        raise
    finally:
        for browser in browsers:
            browser.close()


@pytest.mark.parametrize("platform", list(FAULTS), indirect=True)
def test_every_job_ends_exactly_once_through_a_fault(platform, request):
    name = request.node.callspec.params["platform"]
    slow = "SIGSTOP" in name or "past the lease" in name
    run_with_faults(platform, FAULTS[name], times=1, jobs_each=1 if slow else 2, label=name)


@pytest.mark.parametrize(
    "platform",
    ["kill -9 gpuworker", "ComfyUI killed, restarted", "Redis restarted empty", "Daphne killed, restarted"],
    indirect=True,
)
def test_the_same_fault_three_times_in_a_row(platform, request):
    name = request.node.callspec.params["platform"]
    run_with_faults(platform, FAULTS[name], times=3, jobs_each=1, label=f"{name} x3")
