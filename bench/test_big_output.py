"""Benchmark: one video-sized output from the GPU to the participant (prints a table).

    .venv/bin/python -m pytest bench/test_big_output.py -s -p no:cacheprovider

The ComfyUI double grows the run's output file to `output_bytes` (sparse on its side, so no
time goes into making it). The real gpuworker streams it from the double's /view into the
workspace through Daphne; the participant then downloads it whole, and in Range requests as a
video player seeks, and once more on a slow link that gives up after 8 MB. Daphne's and the
worker's resident memory are sampled throughout: the growth over each one's idle size is what
holding a file of gigabytes costs.
"""

import json
import threading
import time

import pytest

from bench.test_200_workspaces import rss_mb
from tests.conftest import WORKFLOWS
from tests.test_e2e import finished, post_prompt, receive_until

SIMPLE = json.loads((WORKFLOWS / "simple.json").read_text())


class PeakRSS:
    """The highest resident memory of some processes while the block runs, sampled every 20 ms."""

    def __init__(self, **pids):
        self.pids = pids
        self.idle = {name: rss_mb(pid) for name, pid in pids.items()}
        self.peak = dict(self.idle)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._done.wait(0.02):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mb(pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


@pytest.mark.e2e
def test_big_output(live_app, participants, double, output_bytes):
    from jobs.models import Job

    double.steps, double.step_time, double.output_bytes = 1, 0.0, output_bytes
    size_mb = output_bytes / 1e6
    with live_app.gpu_worker(double.url) as worker:
        alice = live_app.login("user001")
        with PeakRSS(daphne=live_app.pid, gpuworker=worker.pid) as memory:
            with live_app.ws(alice, "001") as ws:
                started = time.perf_counter()
                prompt_id = post_prompt(alice, live_app, "001", SIMPLE)
                receive_until(ws, finished(prompt_id), timeout=600)
                delivered = time.perf_counter() - started
            after_upload = dict(memory.peak)
            stored = next(iter(Job.objects.get(pk=prompt_id).files.values()))
            url = f"{live_app.url}/user/001/api/view"
            params = {"filename": stored["filename"], "subfolder": stored["subfolder"], "type": "output"}

            started, received = time.perf_counter(), 0
            with alice.get(url, params=params, stream=True, timeout=60) as answer:
                assert answer.status_code == 200 and int(answer.headers["Content-Length"]) == output_bytes
                for chunk in answer.iter_content(1024 * 1024):
                    received += len(chunk)
            downloaded = time.perf_counter() - started
            assert received == output_bytes

            seeks, started = 20, time.perf_counter()
            for n in range(seeks):
                first = (output_bytes - 1_000_000) * n // seeks
                part = alice.get(url, params=params, headers={"Range": f"bytes={first}-{first + 999_999}"}, timeout=60)
                assert part.status_code == 206 and len(part.content) == 1_000_000
                assert part.headers["Content-Range"] == f"bytes {first}-{first + 999_999}/{output_bytes}"
            seeking = (time.perf_counter() - started) / seeks

            # A participant on a slow link: reads 8 MB over 2 s, then leaves. What Daphne would
            # otherwise have buffered for them is the whole file.
            with alice.get(url, params=params, stream=True, timeout=60) as slow:
                for _ in range(32):
                    slow.raw.read(256 * 1024)
                    time.sleep(2 / 32)

    print(f"\n\nOne output of {size_mb:,.0f} MB: GPU worker → workspace → participant\n")
    print("| step | time | throughput |")
    print("| --- | ---: | ---: |")
    print(
        f"| submit → execution_success, the file streamed into the workspace | {delivered:.1f} s | "
        f"{size_mb / delivered:,.0f} MB/s |"
    )
    print(f"| the participant downloads it whole | {downloaded:.1f} s | {size_mb / downloaded:,.0f} MB/s |")
    print(f"| a 1 MB Range request (a player seeking), mean of {seeks} | {seeking * 1000:.0f} ms | |")
    print("\n| process | idle RSS MiB | peak while uploading | peak in all | growth MiB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in ("daphne", "gpuworker"):
        print(
            f"| {name} | {memory.idle[name]:.0f} | {after_upload[name]:.0f} | {memory.peak[name]:.0f} | "
            f"{memory.peak[name] - memory.idle[name]:.0f} |"
        )


@pytest.fixture
def output_bytes():
    return 2 * 1024**3
