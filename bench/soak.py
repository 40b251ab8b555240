"""Soak: 20 participants for 30 minutes on two GPU workers, random cancels, and one fault a
minute taken in turn from the fault suite's list (kill -9 of a worker, ComfyUI killed, Redis
restarted empty, Daphne killed, the dispatcher killed, a worker frozen past its lease, a worker
disabled, a token rotated). Not a pass/fail speed test: it prints a table.

    SOAK_MINUTES=30 .venv/bin/python -m pytest bench/soak.py -s -p no:cacheprovider

With no SOAK_MINUTES it runs the 2-minute setting the test suite runs in CI (a fault every 11 s,
so the whole list is taken). Lost, run twice and stuck jobs must be 0, whatever the length.
"""

import os
import random
import statistics
import threading
import time

import pytest
import requests

from jobs.models import FINAL_STATES, Job, JobState, QueueSettings
from tests.conftest import wait_until
from tests.platform_harness import Browser, Platform, prompt_for, recovered
from tests.test_fault_suite import FAULTS

MINUTES = float(os.environ.get("SOAK_MINUTES", "2"))
FAULT_EVERY = float(os.environ.get("SOAK_FAULT_EVERY", "60" if "SOAK_MINUTES" in os.environ else "11"))
PARTICIPANTS = int(os.environ.get("SOAK_PARTICIPANTS", "20"))
LEASE = int(os.environ.get("SOAK_LEASE_SECONDS", "10"))  # production's default


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


@pytest.mark.e2e
def test_soak(transactional_db, settings, tmp_path):
    from django.contrib.auth import get_user_model

    from accounts.models import Workspace

    users = get_user_model()
    for n in range(1, PARTICIPANTS + 1):
        user = users.objects.create_user(f"user{n:03d}", password="pw")
        Workspace.objects.create(owner=user, slug=f"{n:03d}").ensure_folders()
    users.objects.create_user("instructor", password="pw", is_staff=True, is_superuser=True)
    # A job may be hit by several faults in a row over a long soak; the limit that protects the
    # queue from a job that kills its host is not what this measures.
    QueueSettings.objects.update_or_create(pk=1, defaults={"max_attempts": 10, "max_waiting_per_user": 3})

    plat = Platform(settings, tmp_path, lease_seconds=LEASE, steps=6, step_time=0.05)
    import signal

    def stop_everything(*_):  # a soak stopped with SIGTERM leaves no process behind
        plat.stop()
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop_everything)
    plat.start()
    browsers, submitted, cancelled = [], {}, set()
    lock = threading.Lock()
    stop = threading.Event()
    recoveries, faults_done = [], []
    try:
        browsers = [Browser(plat, f"user{n:03d}", f"{n:03d}") for n in range(1, PARTICIPANTS + 1)]
        counter = iter(range(1, 10**9))

        def participant(browser):
            from django.db import connection

            rng = random.Random(browser.slug)
            while not stop.is_set():
                with lock:
                    color = next(counter)
                try:
                    prompt_id = browser.submit(prompt_for(color))
                except AssertionError:
                    continue
                with lock:
                    submitted[prompt_id] = (browser, color)
                if rng.random() < 0.1:  # changes their mind
                    stop.wait(rng.uniform(0, 2))
                    try:
                        answer = browser.session.post(
                            f"{plat.url}/user/{browser.slug}/api/queue", json={"delete": [prompt_id]}, timeout=10
                        )
                        if answer.ok:
                            cancelled.add(prompt_id)
                            browser.session.post(
                                f"{plat.url}/user/{browser.slug}/api/interrupt",
                                json={"prompt_id": prompt_id},
                                timeout=10,
                            )
                    except requests.RequestException:
                        pass  # the app is restarting (a fault): they keep the run, as a browser would
                deadline = time.monotonic() + 600
                while not stop.is_set() and time.monotonic() < deadline:
                    done = Job.objects.filter(pk=prompt_id, state__in=FINAL_STATES).exists()
                    # Back to the pool between checks: 20 participants and the fault loop
                    # would otherwise want more connections than the pool holds.
                    connection.close()
                    if done:
                        break
                    stop.wait(0.5)
                stop.wait(rng.uniform(0.5, 3))
            connection.close()

        threads = [threading.Thread(target=participant, args=(b,), daemon=True) for b in browsers]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        names = list(FAULTS)
        n = 0
        while time.monotonic() - started < MINUTES * 60:
            stop.wait(max(0.0, started + (n + 1) * FAULT_EVERY - time.monotonic()))
            if time.monotonic() - started >= MINUTES * 60:
                break
            name = names[n % len(names)]
            n += 1
            try:
                job = wait_until(
                    lambda: Job.objects.filter(state=JobState.RUNNING).select_related("worker").first(),
                    timeout=20,
                    message="a running job",
                )
            except AssertionError:
                continue
            before, hit = job.run, time.monotonic()
            after = FAULTS[name](plat, job)
            wait_until(lambda job=job, before=before: recovered(job, before), timeout=120, message="recovery")
            recoveries.append(time.monotonic() - hit)
            faults_done.append((name, recoveries[-1]))
            print(f"  fault {n}: {name}: recovered in {recoveries[-1]:.1f} s", flush=True)
            if after:
                after()
        stop.set()
        for thread in threads:
            thread.join(30)
        ids = list(submitted)
        wait_until(
            lambda: not Job.objects.filter(pk__in=ids).exclude(state__in=FINAL_STATES).exists(),
            timeout=240,
            message="every job to end",
        )
        time.sleep(2)
        jobs = {str(j.pk): j for j in Job.objects.filter(pk__in=ids)}
        lost = [pid for pid in ids if pid not in jobs]
        stuck = [pid for pid, j in jobs.items() if j.state not in FINAL_STATES]
        completed = [pid for pid, j in jobs.items() if j.state == JobState.COMPLETED]
        failed = {pid: j.error for pid, j in jobs.items() if j.state == JobState.FAILED}
        twice = [pid for pid, (b, _) in submitted.items() if b.count("execution_success", pid) > 1]
        unheard = [pid for pid in completed if submitted[pid][0].count("execution_success", pid) == 0]
        n_cancelled = sum(1 for j in jobs.values() if j.state == JobState.CANCELLED)
        print(f"\nSoak: {PARTICIPANTS} participants, {MINUTES:g} min, a fault every {FAULT_EVERY:g} s, lease {LEASE} s")
        print(
            "| submitted | completed | cancelled | failed | lost | run twice | stuck | success unheard | faults "
            "| recovery p50 | recovery p99 |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {len(ids)} | {len(completed)} | {n_cancelled} | {len(failed)} | {len(lost)} | {len(twice)} "
            f"| {len(stuck)} "
            f"| {len(unheard)} | {len(faults_done)} "
            f"| {statistics.median(recoveries) if recoveries else float('nan'):.1f} s "
            f"| {pct(recoveries, 0.99):.1f} s |"
        )
        by_fault = {}
        for name, secs in faults_done:
            by_fault.setdefault(name, []).append(secs)
        for name, secs in by_fault.items():
            print(f"  {name}: {len(secs)}x, recovery max {max(secs):.1f} s")
        for pid, error in failed.items():
            print(f"  failed {pid}: {error}")
        assert not lost and not twice and not stuck, "jobs lost, run twice or stuck"
        assert not unheard, f"completed jobs whose tab never got execution_success: {unheard}"
        assert not failed, f"jobs failed because of a fault: {failed}"
    except BaseException:
        print(plat.logs())
        raise
    finally:
        stop.set()
        for browser in browsers:
            browser.close()
        plat.stop()
