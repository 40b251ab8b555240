"""The workspace socket at scale: every socket hears a queue change and leaves its groups."""

import json

from tests.conftest import wait_until

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def test_500_sockets_on_one_daphne_all_hear_a_queue_change_and_leave_their_groups(live_app, participants, clean_redis):
    """At 200 sockets the channel layer's Redis pool ran out (MaxConnectionsError) and dead
    channels stayed in the queue group."""
    import asyncio

    from websockets.asyncio.client import connect

    alice = live_app.login("user001")
    cookie = "; ".join(f"{k}={v}" for k, v in alice.cookies.items())
    url = f"{live_app.url.replace('http', 'ws', 1)}/user/001/ws"
    group = "workshop-test:group:queue"

    async def scenario():
        gate = asyncio.Semaphore(50)

        async def open_one(n):
            async with gate:
                ws = await connect(
                    f"{url}?clientId=s{n}",
                    additional_headers={"Cookie": cookie, "Origin": live_app.url},
                    open_timeout=60,
                )
                first = json.loads(await asyncio.wait_for(ws.recv(), 60))
                assert first["type"] == "status"
                return ws

        sockets = await asyncio.gather(*(open_one(n) for n in range(500)))
        assert clean_redis.zcard(group) == 500

        async def hears_the_change(ws):
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if message["type"] == "workshop.queue" and message["data"].get("waiting"):
                    return True

        listening = [asyncio.ensure_future(hears_the_change(ws)) for ws in sockets]
        await asyncio.to_thread(alice.post, f"{live_app.url}/user/001/api/prompt", json={"prompt": SIMPLE}, timeout=30)
        heard = await asyncio.gather(*listening)
        await asyncio.gather(*(ws.close() for ws in sockets))
        return heard

    heard = asyncio.run(scenario())
    assert heard == [True] * 500
    wait_until(lambda: clean_redis.zcard(group) == 0, timeout=30, message="closed sockets to leave the queue group")
    log = (live_app.tmp_path / "daphne.log").read_text()
    assert "MaxConnectionsError" not in log and "Traceback" not in log
