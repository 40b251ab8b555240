"""Benchmark: what the platform adds to a run (not a test: it prints tables, asserts no speed).

    .venv/bin/python -m pytest bench/test_spine_latency.py -s -p no:cacheprovider

1. Overhead: the hello prompt through the whole spine (Daphne, RQ, gpuworker, the ComfyUI
   double with zero step time) from submit to `execution_success` on the participant's socket,
   its output in the workspace, against the same prompt posted straight to the same double and
   followed on the double's own socket. The two alternate, run by run.
2. Submit: `participants` participants press Run at the same moment, `rounds` times; the
   latency of each POST /api/prompt (validate, store, dispatch, announce) on PostgreSQL.
3. Cancel: cancel → /interrupt reaching ComfyUI.
"""

import json
import statistics
import threading
import time
import uuid

import pytest
import requests
from websockets.sync.client import connect

from jobs.stats import percentile
from tests.conftest import WORKFLOWS, wait_until
from tests.test_e2e import finished, post_prompt, receive_until

SIMPLE = json.loads((WORKFLOWS / "simple.json").read_text())


def hello(n: int) -> dict:
    prompt = json.loads(json.dumps(SIMPLE))
    prompt["1"]["inputs"]["color"] = n  # distinct prompts: no cache hits
    return prompt


def straight(double_url: str, ws, n: int) -> float:
    """The same prompt posted to ComfyUI directly, to its execution_success, in seconds."""
    started = time.perf_counter()
    answer = requests.post(f"{double_url}/prompt", json={"prompt": hello(n), "client_id": "direct"}, timeout=10)
    answer.raise_for_status()
    receive_until(ws, finished(answer.json()["prompt_id"]))
    return time.perf_counter() - started


def row(label, values):
    return (
        f"| {label} | {len(values)} | {statistics.median(values):.0f} | {percentile(values, 99):.0f} | "
        f"{max(values):.0f} |"
    )


@pytest.mark.e2e
def test_spine_latency(live_app, participants, double, runs, burst):
    from django.contrib.auth import get_user_model

    from accounts.models import Workspace
    from jobs.models import Job

    class_size, rounds = burst
    users = get_user_model()
    for n in range(4, class_size + 1):
        user = users.objects.create_user(f"user{n:03d}", password="pw")
        Workspace.objects.create(owner=user, slug=f"{n:03d}").ensure_folders()
    double.steps, double.step_time = 1, 0.0
    platform_ms, direct_ms = [], []
    outputs = Workspace.objects.get(slug="001").root / "output"
    with live_app.gpu_worker(double.url):
        alice = live_app.login("user001")
        direct_ws = connect(f"{double.url.replace('http', 'ws', 1)}/ws?clientId=direct", open_timeout=10)
        with live_app.ws(alice, "001") as ws, direct_ws:
            for n in range(runs):
                before = sum(1 for _ in outputs.rglob("*.png"))
                started = time.perf_counter()
                prompt_id = post_prompt(alice, live_app, "001", hello(n))
                receive_until(ws, finished(prompt_id))
                platform_ms.append((time.perf_counter() - started) * 1000)
                assert sum(1 for _ in outputs.rglob("*.png")) == before + 1, "the output is in the workspace"
                direct_ms.append(straight(double.url, direct_ws, 10_000 + n) * 1000)

            cancels = []
            double.steps, double.step_time = 1000, 0.01
            for n in range(5):
                prompt_id = post_prompt(alice, live_app, "001", hello(1000 + n))
                receive_until(
                    ws,
                    lambda m, prompt_id=prompt_id: m["type"] == "progress" and m["data"].get("prompt_id") == prompt_id,
                )
                double._interrupt_event.clear()
                asked = time.perf_counter()
                alice.post(f"{live_app.url}/user/001/api/interrupt", json={"prompt_id": prompt_id}, timeout=10)
                assert double.wait_interrupt(10)
                cancels.append((time.perf_counter() - asked) * 1000)
                receive_until(ws, lambda m: m["type"] == "execution_interrupted")

        double.steps, double.step_time = 1, 0.0
        sessions = [live_app.login(f"user{n:03d}") for n in range(1, class_size + 1)]
        submit_ms, floor_ms = [], []
        for r in range(rounds):
            gate = threading.Barrier(class_size)

            def trivial(n, gate=gate):  # the floor: Django and Daphne answering a request that does nothing
                session = sessions[n - 1]
                gate.wait()
                started = time.perf_counter()
                assert session.get(f"{live_app.url}/user/{n:03d}/api/features", timeout=30).status_code == 200
                floor_ms.append((time.perf_counter() - started) * 1000)

            threads = [threading.Thread(target=trivial, args=(n,)) for n in range(1, class_size + 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

            def press_run(n, gate=gate, r=r):
                session = sessions[n - 1]
                gate.wait()
                started = time.perf_counter()
                answer = session.post(
                    f"{live_app.url}/user/{n:03d}/api/prompt",
                    json={"prompt": hello(20_000 + r * 1000 + n), "client_id": str(uuid.uuid4())},
                    timeout=30,
                )
                submit_ms.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text

            threads = [threading.Thread(target=press_run, args=(n,)) for n in range(1, class_size + 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wait_until(
                lambda: not Job.objects.filter(state__in=("queued", "dispatched", "running")).exists(),
                timeout=120,
                message="the class's runs to finish",
            )

    overhead = [p - d for p, d in zip(platform_ms, direct_ms, strict=True)]
    print(f"\n\nThe hello prompt, {runs} runs each way, alternating (ComfyUI double, zero step time)\n")
    print("| measure | runs | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(row("through the platform: submit → execution_success on the participant's socket", platform_ms))
    print(row("straight to the same ComfyUI double", direct_ms))
    print(row("**what the platform adds** (run by run)", overhead))
    print(row("cancel → /interrupt reaches ComfyUI", cancels))
    print(f"\n{class_size} participants press Run at once, {rounds} times (PostgreSQL)\n")
    print("| measure | requests | p50 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(row("POST /api/prompt answered", submit_ms))
    print(row("the floor: GET /api/features, a view that does nothing", floor_ms))


@pytest.fixture
def runs():
    return 40


@pytest.fixture
def burst():
    return 20, 10
