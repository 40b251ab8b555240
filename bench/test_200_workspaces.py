"""Benchmark: 200 participants on one Daphne process (prints a table; asserts no speed).

    .venv/bin/python -m pytest bench/test_200_workspaces.py -s -p no:cacheprovider

200 logged-in sessions each make the ComfyUI frontend's start-up API calls, then each holds the
websocket open; Daphne's resident memory is read after each phase, and the time one queue change
takes to reach all 200 sockets is measured.
"""
import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

N = 200
STARTUP = [
    "", "api/users", "api/settings", "api/system_stats", "api/i18n", "api/object_info", "api/extensions",
    "api/experiment/models", "api/queue", "api/history?max_items=64",
    "api/userdata?dir=workflows&recurse=true&split=false&full_info=true",
    "api/userdata?dir=subgraphs%2F&recurse=true&split=false&full_info=true",
    "api/userdata/user.css", "api/userdata/comfy.templates.json", "api/workshop/queue",
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.e2e
def test_two_hundred_workspaces_on_one_daphne(live_app, db):
    from django.contrib.auth import get_user_model

    from accounts.models import Workspace

    User = get_user_model()
    for n in range(1, N + 1):
        user = User.objects.create_user(f"user{n:03d}", password="pw")
        Workspace.objects.create(owner=user, slug=f"{n:03d}").ensure_folders()
    rows = [("idle, after start", rss_mb(live_app.pid), "")]

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        sessions = list(pool.map(lambda n: live_app.login(f"user{n:03d}"), range(1, N + 1)))

    def startup(n):
        session = sessions[n - 1]
        for path in STARTUP:
            answer = session.get(f"{live_app.url}/user/{n:03d}/{path}", timeout=30)
            assert answer.status_code == 200, (path, answer.status_code)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(startup, range(1, N + 1)))
    load_seconds = time.perf_counter() - started
    rows.append((f"{N} logins + start-up API calls ({len(STARTUP)} each)", rss_mb(live_app.pid),
                 f"{load_seconds:.1f} s in all"))

    async def hold_sockets():
        from websockets.asyncio.client import connect

        sockets = []
        for n in range(1, N + 1):
            cookie = "; ".join(f"{k}={v}" for k, v in sessions[n - 1].cookies.items())
            ws = await connect(f"{live_app.url.replace('http', 'ws')}/user/{n:03d}/ws?clientId=c{n}",
                               additional_headers={"Cookie": cookie, "Origin": live_app.url})
            await ws.recv()
            await ws.recv()
            sockets.append(ws)
        held = rss_mb(live_app.pid)
        # One queue change (a new waiting job) must reach every open socket.
        async def until_queue_message(ws):
            while json.loads(await ws.recv())["type"] != "workshop.queue":
                pass

        posted = time.perf_counter()
        await asyncio.to_thread(
            sessions[0].post, f"{live_app.url}/user/001/api/prompt",
            json={"prompt": {"1": {"class_type": "EmptyImage", "inputs": {}},
                             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}},
        )
        await asyncio.wait_for(asyncio.gather(*(until_queue_message(ws) for ws in sockets)), 60)
        first = time.perf_counter() - posted
        got = [json.dumps({"type": "workshop.queue"})]
        for ws in sockets:
            await ws.close()
        return held, first, got

    held, first, got = asyncio.run(hold_sockets())
    rows.append((f"+ {N} open websockets", held, f"submit -> queue position on all {N} sockets {first * 1000:.0f} ms"))
    assert json.loads(got[0])["type"] in ("status", "workshop.queue")

    print()
    print(f"one Daphne process serving {N} workspaces")
    print(f"{'phase':52} {'RSS MiB':>8}  note")
    for phase, rss, note in rows:
        print(f"{phase:52} {rss:8.0f}  {note}")
