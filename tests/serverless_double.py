"""A serverless ComfyUI double: the ComfyUI double behind what a provider puts in front of it.

- a path prefix (`https://host/<prefix>/prompt`, as Modal's or Verda's routes are),
- an auth header (`Authorization: Bearer <key>`; anything else is 401),
- a cold start: scaled to zero, the first request starts a container, and until it is up every
  request is answered 503 (as a provider's front does while it waits); with `idle_timeout`, a
  container that gets no request for that long scales to zero again,
- two replicas behind one load balancer, round robin for a new client and sticky by the
  `replica` cookie it sets, as load balancers keep a client on one replica. A replica that is
  gone sends its clients to the other one, with a new cookie.

    with ServerlessComfyUI(cold_start=1.5) as front:
        front.url   # http://127.0.0.1:PORT/comfy
"""

import asyncio
import time
from collections import Counter

import aiohttp
from aiohttp import web

from scripts.comfyui_double import ComfyUIDouble
from tests.threaded_server import ThreadedServer

HOP_HEADERS = {
    "host",
    "authorization",
    "cookie",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
}


class ServerlessComfyUI(ThreadedServer):
    def __init__(
        self, replicas=2, prefix="/comfy", key="sk-serverless-test", cold_start=0.0, idle_timeout=None, **double_options
    ):
        self.prefix, self.key, self.cold_start = prefix.rstrip("/"), key, cold_start
        # A container that gets no request for idle_timeout seconds stops (scales to zero).
        self.idle_timeout, self.last_request = idle_timeout, time.monotonic()
        self.replicas = [ComfyUIDouble(**double_options) for _ in range(replicas)]
        self.alive = [True] * replicas
        self.warm = cold_start <= 0
        self.starting_since = None
        self.counters = Counter()  # cold_starts, refused, replica-N (requests routed), sockets
        self._next = 0
        self.url = None
        super().__init__()

    # --- what tests change while it runs ---

    def scale_to_zero(self):
        """Every container stops: the next request waits for a cold start again."""
        self.warm, self.starting_since = self.cold_start <= 0, None

    def kill_replica(self, n: int):
        self.alive[n] = False
        self.replicas[n].stop()

    # --- running ---

    thread_name = "serverless-front"

    def start_more(self):
        for replica in self.replicas:
            replica.start()

    def stop_more(self):
        for n, replica in enumerate(self.replicas):
            if self.alive[n]:
                replica.stop()

    def routes(self, app):
        app.router.add_route("*", "/{tail:.*}", self._handle)

    def started(self, base):
        self.url = f"{base}{self.prefix}"

    def _choose(self, request) -> int | None:
        wanted = request.cookies.get("replica")
        if wanted is not None and wanted.isdigit() and int(wanted) < len(self.alive) and self.alive[int(wanted)]:
            return int(wanted)
        live = [n for n, up in enumerate(self.alive) if up]
        if not live:
            return None
        self._next = (self._next + 1) % len(live)
        return live[self._next]

    async def _handle(self, request: web.Request):
        path = request.path
        if not (path == self.prefix or path.startswith(self.prefix + "/")):
            return web.json_response({"error": "no such route"}, status=404)
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            self.counters["refused"] += 1
            return web.json_response({"error": "invalid API key"}, status=401)
        now = time.monotonic()
        if self.warm and self.idle_timeout and now - self.last_request > self.idle_timeout:
            self.scale_to_zero()
        self.last_request = now
        if not self.warm:
            if self.starting_since is None:
                self.starting_since = time.monotonic()
                self.counters["cold_starts"] += 1
            if time.monotonic() - self.starting_since < self.cold_start:
                return web.json_response({"error": "starting a container"}, status=503, headers={"Retry-After": "1"})
            self.warm = True
        n = self._choose(request)
        if n is None:
            return web.json_response({"error": "no replica"}, status=502)
        self.counters[f"replica-{n}"] += 1
        target = self.replicas[n].url + path[len(self.prefix) :]
        if request.query_string:
            target += "?" + request.query_string
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._socket(request, target, n)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with aiohttp.ClientSession() as session:
            async with session.request(
                request.method, target, headers=headers, data=await request.read(), allow_redirects=False
            ) as answer:
                body = await answer.read()
                kept = {
                    k: v
                    for k, v in answer.headers.items()
                    if k.lower() not in HOP_HEADERS and k.lower() != "content-encoding"
                }
        response = web.Response(status=answer.status, body=body, headers=kept)
        response.set_cookie("replica", str(n))
        return response

    async def _socket(self, request, target, n):
        self.counters["sockets"] += 1
        outer = web.WebSocketResponse(max_msg_size=0)
        outer.set_cookie("replica", str(n))
        await outer.prepare(request)
        async with aiohttp.ClientSession() as session:
            try:
                inner = await session.ws_connect(target.replace("http", "ws", 1), max_msg_size=0)
            except aiohttp.ClientError:
                await outer.close()
                return outer

            async def down():
                async for message in inner:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await outer.send_str(message.data)
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        await outer.send_bytes(message.data)
                await outer.close()

            task = asyncio.ensure_future(down())
            async for message in outer:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await inner.send_str(message.data)
            task.cancel()
            await inner.close()
        return outer
