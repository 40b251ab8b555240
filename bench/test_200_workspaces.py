"""Benchmark: many participants on one Daphne process (prints tables; asserts no speed).

    .venv/bin/python -m pytest bench/test_200_workspaces.py -s -p no:cacheprovider

The first 200 logged-in sessions make the ComfyUI frontend's start-up API calls; then 200, and
then 500, hold the workspace websocket open. Daphne's resident memory is read after each phase.
With the sockets open, `changes` queue changes (a participant pressing Run) are made one after
another, and for each the time until every socket has its new queue message is taken, socket by
socket. Every socket must hear every change, and nothing may error.
"""

import asyncio
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from jobs.stats import percentile

STARTUP = [
    "",
    "api/users",
    "api/settings",
    "api/system_stats",
    "api/i18n",
    "api/object_info",
    "api/extensions",
    "api/experiment/models",
    "api/queue",
    "api/history?max_items=64",
    "api/userdata?dir=workflows&recurse=true&split=false&full_info=true",
    "api/userdata?dir=subgraphs%2F&recurse=true&split=false&full_info=true",
    "api/userdata/user.css",
    "api/userdata/comfy.templates.json",
    "api/workshop/queue",
]
HELLO = {
    "1": {"class_type": "EmptyImage", "inputs": {}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def push_to(live_app, sessions, count: int, changes: int):
    """`count` open sockets; returns (RSS with them open, per-socket latencies in ms, errors)."""
    from websockets.asyncio.client import connect

    sockets = []
    for n in range(1, count + 1):
        cookie = "; ".join(f"{k}={v}" for k, v in sessions[n - 1].cookies.items())
        ws = await connect(
            f"{live_app.url.replace('http', 'ws')}/user/{n:03d}/ws?clientId=c{n}",
            additional_headers={"Cookie": cookie, "Origin": live_app.url},
            max_queue=None,
        )
        sockets.append(ws)
    await asyncio.sleep(0)
    held = rss_mb(live_app.pid)
    latencies, errors = [], 0

    async def heard(ws, since, total):
        nonlocal errors
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "error":
                errors += 1
            if message["type"] == "workshop.queue" and _total(message) == total:
                latencies.append((time.perf_counter() - since) * 1000)
                return

    for change in range(changes):
        n = change % count + 1
        prompt = json.loads(json.dumps(HELLO))
        prompt["1"]["inputs"]["color"] = change
        since = time.perf_counter()
        answer = await asyncio.to_thread(
            sessions[n - 1].post,
            f"{live_app.url}/user/{n:03d}/api/prompt",
            json={"prompt": prompt, "client_id": f"c{n}"},
            timeout=30,
        )
        if answer.status_code != 200:
            errors += 1
        await asyncio.wait_for(asyncio.gather(*(heard(ws, since, change + 1) for ws in sockets)), 60)
    for ws in sockets:
        await ws.close()
    return held, latencies, errors


def _total(message) -> int | None:
    return (message.get("data") or {}).get("total_waiting")


@pytest.mark.e2e
def test_many_workspaces_on_one_daphne(live_app, db, socket_counts, changes):
    from django.contrib.auth import get_user_model

    from accounts.models import Workspace
    from jobs.models import Job

    users = get_user_model()
    most = max(socket_counts)
    for n in range(1, most + 1):
        user = users.objects.create_user(f"user{n:03d}", password="pw")
        Workspace.objects.create(owner=user, slug=f"{n:03d}").ensure_folders()
    rows = [("idle, after start", rss_mb(live_app.pid), "")]

    with ThreadPoolExecutor(16) as pool:
        sessions = list(pool.map(lambda n: live_app.login(f"user{n:03d}"), range(1, most + 1)))
    loaded = min(200, most)

    def startup(n):
        for path in STARTUP:
            answer = sessions[n - 1].get(f"{live_app.url}/user/{n:03d}/{path}", timeout=30)
            assert answer.status_code == 200, (path, answer.status_code)

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(startup, range(1, loaded + 1)))
    rows.append(
        (
            f"{most} logins, {loaded} × {len(STARTUP)} start-up API calls",
            rss_mb(live_app.pid),
            f"{time.perf_counter() - started:.1f} s for the calls",
        )
    )

    pushes = []
    for count in socket_counts:
        Job.objects.all().delete()
        held, latencies, errors = asyncio.run(push_to(live_app, sessions, count, changes))
        rows.append((f"+ {count} open websockets", held, ""))
        pushes.append((count, latencies, errors))
        assert len(latencies) == count * changes, "every socket heard every change"
        assert errors == 0

    print(f"\n\nOne Daphne process, up to {most} workspaces\n")
    print("| phase | Daphne RSS MiB | note |")
    print("| --- | ---: | --- |")
    for phase, rss, note in rows:
        print(f"| {phase} | {rss:.0f} | {note} |")
    print(f"\nA queue change (a participant presses Run) reaching every open socket, {changes} changes\n")
    print("| open sockets | deliveries | p50 ms | p99 ms | max ms | errors |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for count, latencies, errors in pushes:
        print(
            f"| {count} | {len(latencies)} | {statistics.median(latencies):.0f} | {percentile(latencies, 99):.0f} | "
            f"{max(latencies):.0f} | {errors} |"
        )


@pytest.fixture
def socket_counts():
    return 200, 500


@pytest.fixture
def changes():
    return 10
