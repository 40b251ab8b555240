"""An aiohttp server on a thread of its own, for the doubles of what cannot run here (a RunPod
endpoint, a serverless platform's load balancer). A subclass adds its routes in `routes`, says
what it starts with it in `start_more` and `stop_more`, and reads its address in `started`."""

import asyncio
import threading

from aiohttp import web


class ThreadedServer:
    thread_name = "double"

    def __init__(self):
        self._loop = self._thread = self._runner = None
        self._started = threading.Event()

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def started(self, base: str) -> None:
        """Told its base URL (http://127.0.0.1:PORT) once it listens."""

    def start_more(self) -> None:
        """What starts before the server (the ComfyUIs behind it)."""

    def stop_more(self) -> None:
        """What stops after the server."""

    def start(self):
        self.start_more()
        self._thread = threading.Thread(target=self._serve, daemon=True, name=self.thread_name)
        self._thread.start()
        assert self._started.wait(10), f"{self.thread_name} did not start"
        return self

    def stop(self):
        if self._loop:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self.stop_more()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _serve(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=1024**3)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.started(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")
        self._started.set()
        self._loop.run_forever()
