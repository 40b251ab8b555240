"""Benchmark: what the platform adds to a run (not a test: it prints a table, asserts no speed).

    .venv/bin/python -m pytest bench/test_spine_latency.py -s -p no:cacheprovider

Runs N model-free jobs through the whole spine (Daphne, dispatcher, RQ, gpuworker, ComfyUI double
with zero step time) and reports, per job, submit → execution_success as the browser sees it,
against the time ComfyUI itself reported, plus the cancel latency (cancel → /interrupt on ComfyUI).
"""
import json
import statistics
import time

import pytest

from tests.conftest import WORKFLOWS
from tests.test_e2e import finished, post_prompt, receive_until

SIMPLE = json.loads((WORKFLOWS / "simple.json").read_text())
N = 30


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


@pytest.mark.e2e
def test_spine_latency(live_app, participants, double):
    double.steps, double.step_time = 1, 0.0
    rows = []
    with live_app.gpu_worker(double.url):
        alice = live_app.login("user001")
        with live_app.ws(alice, "001") as ws:
            for n in range(N):
                prompt = json.loads(json.dumps(SIMPLE))
                prompt["1"]["inputs"]["color"] = n  # distinct prompts: no cache hits
                started = time.perf_counter()
                prompt_id = post_prompt(alice, live_app, "001", prompt)
                posted = time.perf_counter()
                receive_until(ws, finished(prompt_id))
                rows.append((posted - started, time.perf_counter() - started))

            cancels = []
            double.steps, double.step_time = 1000, 0.01
            for n in range(5):
                prompt = json.loads(json.dumps(SIMPLE))
                prompt["1"]["inputs"]["color"] = 1000 + n
                prompt_id = post_prompt(alice, live_app, "001", prompt)
                receive_until(ws, lambda m: m["type"] == "progress" and m["data"].get("prompt_id") == prompt_id)
                double._interrupt_event.clear()
                asked = time.perf_counter()
                alice.post(f"{live_app.url}/user/001/api/interrupt", json={"prompt_id": prompt_id}, timeout=10)
                assert double.wait_interrupt(10)
                cancels.append(time.perf_counter() - asked)
                receive_until(ws, lambda m: m["type"] == "execution_interrupted")

    post_ms = [r[0] * 1000 for r in rows]
    total_ms = [r[1] * 1000 for r in rows]
    cancel_ms = [c * 1000 for c in cancels]
    print()
    print(f"spine latency, {N} sequential model-free jobs (ComfyUI double, zero step time), one gpuworker")
    print(f"{'measure':44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, values in (
        ("POST /api/prompt answered", post_ms),
        ("submit -> execution_success on the websocket", total_ms),
        ("cancel -> /interrupt reaches ComfyUI", cancel_ms),
    ):
        print(f"{label:44} {statistics.median(values):8.1f} {pct(values, 0.95):8.1f} {max(values):8.1f}")
