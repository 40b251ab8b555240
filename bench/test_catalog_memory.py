"""Benchmark: a 20 MB catalog published by a GPU worker, and what it costs the app (prints a table).

    .venv/bin/python -m pytest bench/test_catalog_memory.py -s -p no:cacheprovider

The ComfyUI double on 0.28.0 with four times its 89 blueprints: object_info 1.4 MB plus 356
global subgraphs, about 20 MB in all when each is fetched. A real gpuworker publishes it as it
does (the catalog gzip-compressed with the blueprints' index only, then each blueprint as a file
of its own, only those the app does not hold), first on a fresh app, then again after a restart
of the worker. Side by side, the same catalog sent the way workers did before, in one request
with every blueprint inline. Daphne's resident memory is sampled throughout; the goal is a
growth of at most 64 MB.
"""

import gzip
import json
import time

import pytest
import requests

from bench.test_big_output import PeakRSS
from jobs.models import Catalog, ExtensionFile, Worker
from scripts.comfyui_double import ComfyUIDouble
from scripts.comfyui_double.blueprints import RECORDED_COUNT

TOTAL = 20_000_000  # bytes of object_info and every blueprint, as JSON
ROWS: list[tuple] = []


def catalog_double():
    """The double on 0.28.0 with four times its blueprints, grown to TOTAL bytes in all."""
    object_info_bytes = len(json.dumps(ComfyUIDouble(version="0.28.0", blueprints=0).object_info))
    return ComfyUIDouble(version="0.28.0", blueprints=(4 * RECORDED_COUNT, TOTAL - object_info_bytes))


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["in parts", "one request, blueprints inline (before)"])
def test_catalog_memory(live_app, participants, how):
    """Each way on a fresh app (Daphne keeps the heap it grew: a second run would be cheaper)."""
    with catalog_double() as double:
        whole = {"object_info": double.object_info, "global_subgraphs": double.blueprints}
        size = len(json.dumps(whole))
        if how == "in parts":
            for label in ("in parts, first start", "in parts, worker restarted"):
                with PeakRSS(daphne=live_app.pid) as memory:
                    started = time.monotonic()
                    with live_app.gpu_worker(double.url, name="gpu-1") as worker:
                        seconds = time.monotonic() - started
                    log = worker.log_path.read_text()
                sent = next(
                    (line.split("catalog files: ")[1] for line in log.splitlines() if "catalog files:" in line), "?"
                )
                ROWS.append((label, size, seconds, memory.peak["daphne"] - memory.idle["daphne"], sent))
            assert ExtensionFile.objects.filter(path__startswith="/global_subgraphs/").count() == 4 * RECORDED_COUNT
            assert Catalog.objects.filter(worker__name="gpu-1", comfyui_version="0.28.0").exists()
            assert ROWS[0][3] <= 64, "the app's memory grows at most 64 MB for a 20 MB catalog"
        else:
            _, token = Worker.create_with_token("gpu-inline")
            body = json.dumps({**whole, "comfyui_version": "0.28.0"}).encode()
            with PeakRSS(daphne=live_app.pid) as memory:
                started = time.monotonic()
                answer = requests.post(
                    f"{live_app.url}/api/worker/catalog",
                    data=gzip.compress(body, 6),
                    timeout=300,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                        "Content-Encoding": "gzip",
                    },
                )
                seconds = time.monotonic() - started
            ROWS.append(
                (how, len(body), seconds, memory.peak["daphne"] - memory.idle["daphne"], f"answer {answer.status_code}")
            )
            print(f"\n{4 * RECORDED_COUNT} blueprints; Daphne's resident memory, each way on a fresh app")
            print(f"{'how it is published':42} {'catalog MB':>10} {'seconds':>8} {'Daphne +MB':>11}  files")
            for label, nbytes, secs, growth, sent in ROWS:
                print(f"{label:42} {nbytes / 1e6:10.1f} {secs:8.1f} {growth:11.1f}  {sent}")
