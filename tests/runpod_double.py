"""A RunPod serverless double: the endpoint API (`/v2/<id>/run`, `/status`, `/stream`,
`/cancel`, `/health`) in front of the worker-comfyui handler, which here runs each job on a
ComfyUI double (real Pillow compute) and returns its files inline as base64 or, with
`outputs="url"`, as presigned URLs of a bucket this double also serves.

    with RunpodDouble(cold_start=1.0) as runpod:
        runpod.endpoint   # http://127.0.0.1:PORT/v2/ep-test
"""

import base64
import json
import threading
import time
import uuid
from collections import Counter

import requests
from aiohttp import web
from websockets.sync.client import connect

from scripts.comfyui_double import ComfyUIDouble
from tests.threaded_server import ThreadedServer


class RunpodDouble(ThreadedServer):
    def __init__(
        self, key="rp-test-key", endpoint_id="ep-test", cold_start=0.0, outputs="base64", workers=1, **double_options
    ):
        self.key, self.endpoint_id, self.cold_start, self.outputs = key, endpoint_id, cold_start, outputs
        self.comfy = ComfyUIDouble(**double_options)
        self.jobs: dict[str, dict] = {}
        self.bucket: dict[str, bytes] = {}
        self.bucket_token = uuid.uuid4().hex
        self.counters = Counter()  # refused, runs, cancels, cold_starts, bucket_gets
        self.bucket_auth: list = []  # the Authorization header each bucket GET came with
        self.warm_until = 0.0
        self.warm_for = 60.0  # seconds a worker stays up after a job (RunPod's idle timeout)
        self.endpoint = self.base = None
        super().__init__()
        self._workers = threading.Semaphore(workers)  # the endpoint's max workers
        self.in_progress_peak = 0

    thread_name = "runpod-double"

    def start_more(self):
        self.comfy.start()

    def stop_more(self):
        self.comfy.stop()

    def routes(self, app):
        ep = f"/v2/{self.endpoint_id}"
        app.router.add_post(ep + "/run", self._run)
        app.router.add_get(ep + "/status/{id}", self._status)
        app.router.add_get(ep + "/stream/{id}", self._stream)
        app.router.add_post(ep + "/cancel/{id}", self._cancel)
        app.router.add_get(ep + "/health", self._health)
        app.router.add_get("/bucket/{name}", self._bucket)

    def started(self, base):
        self.base, self.endpoint = base, f"{base}/v2/{self.endpoint_id}"

    # --- the endpoint API ---

    def _authorized(self, request) -> bool:
        if request.headers.get("Authorization") in (f"Bearer {self.key}", self.key):
            return True
        self.counters["refused"] += 1
        return False

    async def _run(self, request):
        if not self._authorized(request):
            return web.json_response({"error": "Unauthorized"}, status=401)
        body = await request.json()
        job_id = f"{uuid.uuid4()}-u1"
        job = {
            "id": job_id,
            "status": "IN_QUEUE",
            "input": body.get("input") or {},
            "policy": body.get("policy") or {},
            "stream": [],
            "submitted": time.monotonic(),
            "cancel": threading.Event(),
        }
        self.jobs[job_id] = job
        self.counters["runs"] += 1
        threading.Thread(target=self._handler, args=(job,), daemon=True).start()
        return web.json_response({"id": job_id, "status": "IN_QUEUE"})

    def _public(self, job) -> dict:
        answer = {"id": job["id"], "status": job["status"]}
        for key in ("delayTime", "executionTime", "output", "error"):
            if key in job:
                answer[key] = job[key]
        return answer

    async def _status(self, request):
        if not self._authorized(request):
            return web.json_response({"error": "Unauthorized"}, status=401)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"error": "job not found"}, status=404)
        return web.json_response(self._public(job))

    async def _stream(self, request):
        if not self._authorized(request):
            return web.json_response({"error": "Unauthorized"}, status=401)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"error": "job not found"}, status=404)
        return web.json_response({"status": job["status"], "stream": [{"output": m} for m in job["stream"]]})

    async def _cancel(self, request):
        if not self._authorized(request):
            return web.json_response({"error": "Unauthorized"}, status=401)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"error": "job not found"}, status=404)
        self.counters["cancels"] += 1
        job["cancel"].set()
        if job["status"] in ("IN_QUEUE", "IN_PROGRESS"):
            job["status"] = "CANCELLED"
        return web.json_response({"id": job["id"], "status": job["status"]})

    async def _health(self, request):
        if not self._authorized(request):
            return web.json_response({"error": "Unauthorized"}, status=401)
        running = sum(1 for j in self.jobs.values() if j["status"] == "IN_PROGRESS")
        queued = sum(1 for j in self.jobs.values() if j["status"] == "IN_QUEUE")
        warm = time.monotonic() < self.warm_until
        return web.json_response(
            {
                "jobs": {"inQueue": queued, "inProgress": running},
                "workers": {
                    "idle": int(warm and not running),
                    "running": running,
                    "initializing": 0,
                    "ready": int(warm),
                },
            }
        )

    async def _bucket(self, request):
        self.counters["bucket_gets"] += 1
        self.bucket_auth.append(request.headers.get("Authorization"))
        if request.query.get("token") != self.bucket_token or request.match_info["name"] not in self.bucket:
            return web.Response(status=403, text="AccessDenied")
        return web.Response(body=self.bucket[request.match_info["name"]], content_type="application/octet-stream")

    # --- the handler (worker-comfyui), one thread per job ---

    def _handler(self, job):
        with self._workers:  # each of the endpoint's GPU workers takes one job; the rest wait IN_QUEUE
            if job["cancel"].is_set():
                return
            if time.monotonic() >= self.warm_until and self.cold_start:
                self.counters["cold_starts"] += 1
                if job["cancel"].wait(self.cold_start):
                    return
            job["delayTime"] = int((time.monotonic() - job["submitted"]) * 1000)
            job["status"] = "IN_PROGRESS"
            self.in_progress_peak = max(
                self.in_progress_peak, sum(1 for j in self.jobs.values() if j["status"] == "IN_PROGRESS")
            )
            started = time.monotonic()
            try:
                self._execute(job, started)
            except Exception as exc:  # the handler's own failure
                job.update(status="FAILED", error=f"{type(exc).__name__}: {exc}")
            job["executionTime"] = int((time.monotonic() - started) * 1000)
            self.warm_until = time.monotonic() + self.warm_for

    def _execute(self, job, started):
        comfy = self.comfy.url
        for image in job["input"].get("images") or []:
            data = image["image"].split(",", 1)[1] if image["image"].startswith("data:") else image["image"]
            requests.post(
                comfy + "/upload/image",
                files={"image": (image["name"], base64.b64decode(data))},
                data={"overwrite": "true"},
                timeout=30,
            ).raise_for_status()
        client_id = uuid.uuid4().hex
        with connect(comfy.replace("http", "ws", 1) + f"/ws?clientId={client_id}") as ws:
            answer = requests.post(
                comfy + "/prompt", json={"prompt": job["input"].get("workflow"), "client_id": client_id}, timeout=30
            )
            if answer.status_code == 400:
                job.update(
                    status="FAILED",
                    error=f"Workflow validation failed: {answer.json().get('error', {}).get('message')}",
                )
                return
            prompt_id = answer.json()["prompt_id"]
            limit = (job["policy"].get("executionTimeout") or 600_000) / 1000
            while True:
                if job["cancel"].is_set():
                    requests.post(comfy + "/interrupt", json={"prompt_id": prompt_id}, timeout=10)
                    return
                if time.monotonic() - started > limit:
                    requests.post(comfy + "/interrupt", json={"prompt_id": prompt_id}, timeout=10)
                    job["status"] = "TIMED_OUT"
                    return
                try:
                    raw = ws.recv(timeout=0.1)
                except TimeoutError:
                    continue
                if isinstance(raw, bytes):
                    continue
                message = json.loads(raw)
                if (message.get("data") or {}).get("prompt_id") != prompt_id:
                    continue
                if message["type"] in ("progress", "executing"):
                    job["stream"].append(message)
                if message["type"] == "execution_error":
                    job.update(status="FAILED", error=message["data"].get("exception_message", "ComfyUI failed"))
                    return
                if message["type"] == "execution_success":
                    break
        history = requests.get(comfy + f"/history/{prompt_id}", timeout=30).json()[prompt_id]
        images = []
        for node in history["outputs"].values():
            for item in node.get("images") or []:
                if item.get("type") != "output":
                    continue
                data = requests.get(comfy + "/view", params=item, timeout=30).content
                name = "/".join(p for p in (item.get("subfolder"), item["filename"]) if p)
                if self.outputs == "url":
                    key = f"{uuid.uuid4().hex}-{item['filename']}"
                    self.bucket[key] = data
                    images.append(
                        {
                            "filename": name,
                            "type": "s3_url",
                            "data": f"{self.base}/bucket/{key}?token={self.bucket_token}",
                        }
                    )
                else:
                    images.append({"filename": name, "type": "base64", "data": base64.b64encode(data).decode()})
        job.update(status="COMPLETED", output={"images": images})
