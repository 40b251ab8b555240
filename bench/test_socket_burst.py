"""Benchmark: every tab of a class reconnecting at the same moment (prints a table).

    .venv/bin/python -m pytest bench/test_socket_burst.py -s -p no:cacheprovider

A Daphne restart in a room of 200 makes every open tab reconnect at once. N websockets of one
participant's workspace are opened together on one Daphne process, with no pacing: how many
connect and get ComfyUI's first `status` frame, and how long the last one took.
"""

import asyncio
import json
import time

import pytest


@pytest.fixture(params=[200, 500])
def burst_size(request):
    return request.param


@pytest.mark.e2e
def test_socket_burst(live_app, participants, burst_size):
    from websockets.asyncio.client import connect

    alice = live_app.login("user001")
    cookie = "; ".join(f"{k}={v}" for k, v in alice.cookies.items())
    url = f"{live_app.url.replace('http', 'ws', 1)}/user/001/ws"

    async def burst():
        started = time.monotonic()

        async def open_one(n):
            try:
                ws = await connect(
                    f"{url}?clientId=b{n}",
                    additional_headers={"Cookie": cookie, "Origin": live_app.url},
                    open_timeout=60,
                )
                first = json.loads(await asyncio.wait_for(ws.recv(), 60))
                return ws, time.monotonic() - started, first["type"] == "status"
            except Exception:
                return None, time.monotonic() - started, False

        results = await asyncio.gather(*(open_one(n) for n in range(burst_size)))
        await asyncio.gather(*(ws.close() for ws, _, _ in results if ws is not None))
        return results

    results = asyncio.run(burst())
    ok = [seconds for _, seconds, fine in results if fine]
    print(
        f"\n{burst_size} websockets opened at once on one Daphne: {len(ok)} connected with their status frame; "
        f"last in {max(ok, default=0):.1f} s, median {sorted(ok)[len(ok) // 2] if ok else 0:.1f} s"
    )
    assert len(ok) == burst_size
