"""gpuworker against the ComfyUI protocol double: its ComfyUI client, the job function with an
app double (in process, or over HTTP), the app client's retries and streaming, the progress
throttle and the command line's settings. No Django, no database: run with `-p no:django`."""
import asyncio
import base64
import io
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from gpuworker import tasks
from gpuworker.__main__ import ConfigError, parse, public_stats, redacted
from gpuworker.app import AppClient, AppError, AppUnreachable
from gpuworker.comfy import ComfyClient, ComfyValidationError, MultipartBody
from gpuworker.tasks import Settings, run_job
from gpuworker.throttle import ProgressThrottle
from tests.comfyui_double import ComfyUIDouble

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT.parent / "shared" / "comfyui" / "workflows"
WORKFLOWS = RECORDED if RECORDED.is_dir() else ROOT / "tests" / "workflows"


def workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / name).read_text())


# These tests need neither Django nor Redis: the suite's autouse fixtures that do are replaced.
@pytest.fixture(autouse=True)
def own_data_dir():
    yield


@pytest.fixture(autouse=True)
def clean_redis():
    yield


@pytest.fixture
def double():
    with ComfyUIDouble(step_time=0.02, steps=3) as d:
        yield d


@pytest.fixture
def comfy(double):
    return ComfyClient(double.url)


def png(color=(255, 0, 0), size=(32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


# --- the ComfyUI client ----------------------------------------------------------------------


def test_submit_follow_and_download_the_png(double, comfy):
    with comfy.websocket() as socket:
        prompt_id = comfy.submit(workflow("simple.json"), {"extra_pnginfo": {"workflow": {}}}, socket.client_id)
        seen = list(socket.follow(prompt_id, timeout=10))
    kinds = [m["type"] for m in seen if m]
    assert kinds[0] == "execution_start" and kinds[-1] == "execution_success"
    assert kinds.index("executing") < kinds.index("executed") < kinds.index("execution_success")
    executed = next(m for m in seen if m and m["type"] == "executed")
    item = executed["data"]["output"]["images"][0]
    data = b"".join(comfy.download(item["filename"], item["subfolder"], item["type"], chunk_size=100))
    # simple.json: a red image inverted
    assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((3, 3)) == (0, 255, 255)
    assert comfy.history(prompt_id)["outputs"]["3"] == executed["data"]["output"]


def test_submit_never_sends_a_prompt_id_nor_comfy_org_tokens(double, comfy):
    extra = {"extra_pnginfo": {"workflow": {"nodes": []}}, "auth_token_comfy_org": "secret", "api_key_comfy_org": "k"}
    with comfy.websocket() as socket:
        prompt_id = comfy.submit(workflow("simple.json"), extra, socket.client_id)
        list(socket.follow(prompt_id, timeout=10))
    sent = double.prompts[-1]
    assert set(sent) == {"prompt", "extra_data", "client_id"}
    assert sent["extra_data"] == {"extra_pnginfo": {"workflow": {"nodes": []}}}
    assert sent["client_id"] == socket.client_id
    assert extra["auth_token_comfy_org"] == "secret", "the caller's dict is left alone"


def test_each_socket_has_its_own_client_id(comfy):
    with comfy.websocket() as a, comfy.websocket() as b:
        assert a.client_id != b.client_id
        assert uuid.UUID(a.client_id)


@pytest.mark.parametrize("name, kind", [
    ("invalid_unknown_node.json", "invalid_prompt"),
    ("invalid_missing_input.json", "prompt_outputs_failed_validation"),
    ("invalid_no_output.json", "prompt_no_outputs"),
])
def test_validation_error_carries_comfyuis_body(double, comfy, name, kind):
    with pytest.raises(ComfyValidationError) as caught:
        comfy.submit(workflow(name), {}, "client")
    assert caught.value.body["error"]["type"] == kind
    assert caught.value.error["message"] in str(caught.value)
    if kind == "prompt_outputs_failed_validation":
        errors = caught.value.node_errors
        assert errors["2"]["errors"][0]["type"] == "required_input_missing"
        assert errors["2"]["class_type"] == "ImageInvert"


def test_interrupt_stops_a_slow_run_quickly(double, comfy):
    double.steps, double.step_time = 1000, 0.02  # 20 s per node
    with comfy.websocket() as socket:
        prompt_id = comfy.submit(workflow("simple.json"), {}, socket.client_id)
        assert double.wait_running(5) == prompt_id
        asked = time.monotonic()
        comfy.interrupt(prompt_id)
        seen = [m for m in socket.follow(prompt_id, timeout=10) if m]
    assert time.monotonic() - asked < 1.0
    assert seen[-1]["type"] == "execution_interrupted"
    assert double.interrupts[-1][1] == prompt_id


def test_follow_yields_none_while_quiet_so_the_caller_can_look_for_a_cancel(double, comfy):
    double.steps, double.step_time = 1, 1.0
    ticks, gaps, last = 0, [], time.monotonic()
    with comfy.websocket() as socket:
        prompt_id = comfy.submit(workflow("simple.json"), {}, socket.client_id)
        for message in socket.follow(prompt_id, poll=0.1, timeout=15):
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            ticks += message is None
    assert ticks >= 5
    assert max(gaps) < 0.5


def test_upload_round_trip_streams_with_a_known_length(double, comfy):
    data = bytes(range(256)) * 40_000  # 10 MB: over the in-memory spool
    answer = comfy.upload_image('in "1".png', "sub", io.BytesIO(data))
    assert answer == {"name": 'in "1".png', "subfolder": "sub", "type": "input"}
    assert b"".join(comfy.download('in "1".png', "sub", "input")) == data

    class Pipe(io.RawIOBase):  # an HTTP response body: readable once, not seekable
        def __init__(self, payload):
            self.source = io.BytesIO(payload)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self.source.read(min(len(buffer), 4096))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    answer = comfy.upload_image("piped.png", "", Pipe(png()), type="input", overwrite=True)
    assert answer["name"] == "piped.png"
    assert double.uploads[-1]["size"] == len(png())


def test_multipart_body_is_read_piece_by_piece():
    body = MultipartBody({"type": "input"}, "image", "a.png", io.BytesIO(b"x" * 100_000))
    pieces = list(iter(lambda: body.read(8192), b""))
    assert len(pieces) > 10 and max(map(len, pieces)) <= 8192
    assert sum(map(len, pieces)) == len(body)


def test_auth_headers_go_with_every_request_and_the_websocket_handshake():
    """Serverless ComfyUIs (Modal, Verda) sit behind an auth header."""
    from websockets.sync.server import serve

    seen = []

    def process_request(connection, request):
        seen.append((request.path, request.headers.get("Authorization")))
        if request.path.startswith("/system_stats"):
            return connection.respond(200, '{"system": {"comfyui_version": "0.3.64"}}')
        return None

    def handler(ws):
        ws.send(json.dumps({"type": "status", "data": {"status": {}, "sid": "x"}}))
        ws.recv()

    with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        client = ComfyClient(url, {"Authorization": "Bearer serverless-key"})
        assert client.system_stats()["system"]["comfyui_version"] == "0.3.64"
        with client.websocket("job-client") as socket:
            assert socket.receive(5)["type"] == "status"
        server.shutdown()
    assert seen == [("/system_stats", "Bearer serverless-key"), ("/ws?clientId=job-client", "Bearer serverless-key")]


def test_download_of_a_missing_file_fails_before_anything_is_sent(comfy):
    from gpuworker.comfy import ComfyFileMissing

    with pytest.raises(ComfyFileMissing):
        comfy.download("nope.png", "", "output")


# --- the progress throttle (pure) ---------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def progress(node, value, maximum=20):
    return {"type": "progress", "data": {"node": node, "value": value, "max": maximum, "prompt_id": "p"}}


def state(**nodes):
    return {"type": "progress_state", "data": {"prompt_id": "p", "nodes": {
        n: {"value": v, "max": 20, "state": s, "node_id": n} for n, (v, s) in nodes.items()}}}


def test_throttle_sends_at_most_four_a_second_and_holds_the_newest():
    clock = Clock()
    throttle = ProgressThrottle(interval=0.25, clock=clock)
    sent = []
    for step in range(1, 20):  # 19 steps in 0.95 s
        sent += throttle.offer(progress("3", step))
        clock.now += 0.05
        sent += throttle.due()
    assert len(sent) <= 5
    assert [m["data"]["value"] for m in sent][0] == 1
    assert sent[-1]["data"]["value"] >= 16, "the newest goes out when its time comes, not the first dropped"
    assert throttle.offer(progress("3", 20)) == [progress("3", 20)], "value == max always goes at once"


def test_throttle_never_loses_the_last_progress_of_a_node():
    clock = Clock()
    throttle = ProgressThrottle(interval=0.25, clock=clock)
    assert throttle.offer(progress("3", 1))
    assert throttle.offer(progress("3", 2)) == []
    assert throttle.offer(progress("3", 3)) == []
    # The next node's first step: node 3's last one goes first.
    clock.now += 0.01
    assert [m["data"]["node"] for m in throttle.offer(progress("4", 1))] == ["3"]
    assert [m["data"]["value"] for m in throttle.drain()] == [1]
    assert throttle.drain() == []


def test_throttle_lets_state_changes_through_and_passes_other_messages():
    clock = Clock()
    throttle = ProgressThrottle(interval=0.25, clock=clock)
    assert throttle.offer(state(**{"1": (0, "running")}))
    assert throttle.offer(state(**{"1": (1, "running")})) == []
    assert throttle.offer(state(**{"1": (20, "finished"), "2": (0, "running")})), "a node finished: at once"
    assert throttle.offer(state(**{"1": (20, "finished"), "2": (1, "running")})) == []
    assert throttle.offer(state(**{"1": (20, "finished"), "2": (2, "running")})) == [], \
        "finished nodes at their maximum do not make every later state important"
    executing = {"type": "executing", "data": {"node": "2"}}
    assert throttle.offer(executing) == [executing]
    assert throttle.allow(executing)


# --- the job function, with the app as an object ---------------------------------------------


class FakeRedis:
    def __init__(self):
        self.values = {}

    def get(self, key):
        return self.values.get(key)

    def set(self, key, value):
        self.values[key] = value.encode()


class FakeApp:
    """What run_job calls on AppClient, recorded in one timeline."""

    def __init__(self, inputs=None, may_start=True):
        self.inputs = inputs or {}
        self.may_start = may_start
        self.timeline = []  # ("events", [...]) / ("upload", name) / ("finish", body)
        self.stored = {}
        self.chunks = {}
        self.cancel = None  # what the events call answers
        self.on_events = None
        self.fail_uploads = None

    def started(self, job_id, comfyui_prompt_id=None):
        self.timeline.append(("started", job_id))
        return self.may_start

    def events(self, job_id, events):
        self.timeline.append(("events", events))
        if self.on_events:
            self.on_events(events)
        return self.cancel

    def fetch_input(self, job_id, item, fileobj):
        data = self.inputs[item["filename"]]
        fileobj.write(data)
        fileobj.seek(0)
        return len(data)

    def upload_output(self, job_id, item, open_stream):
        if self.fail_uploads:
            raise self.fail_uploads
        chunks = list(open_stream())
        name = f"{job_id[:4]}-{item['filename']}"
        self.stored[name] = b"".join(chunks)
        self.chunks[name] = len(chunks)
        self.timeline.append(("upload", item["filename"]))
        return {"filename": name, "subfolder": "stored", "type": item.get("type", "output")}

    def finish(self, job_id, result):
        self.timeline.append(("finish", result))
        return {"ok": True, "state": "done"}

    # What tests look at.
    @property
    def events_sent(self):
        return [e for kind, batch in self.timeline if kind == "events" for e in batch]

    @property
    def result(self):
        finished = [body for kind, body in self.timeline if kind == "finish"]
        assert len(finished) == 1, f"finish called {len(finished)} times"
        return finished[0]


def payload(prompt, **extra):
    return {"job_id": str(uuid.uuid4()), "workspace": "007", "prompt": prompt,
            "extra_data": {"extra_pnginfo": {"workflow": {}}}, "inputs": [], "timeout": 60, "attempt": 1, **extra}


def run(app, comfy, job, connection=None):
    return run_job(job, app=app, comfy=comfy, connection=connection if connection is not None else FakeRedis())


def test_run_job_relays_under_the_job_id_and_delivers_files_before_executed(double, comfy):
    app = FakeApp()
    job = payload(workflow("simple.json"))
    assert run(app, comfy, job) == "success"

    result = app.result
    assert result["status"] == "success" and result["error"] is None
    stored = result["outputs"]["3"]["images"][0]
    assert stored == {"filename": f"{job['job_id'][:4]}-gw_simple_00001_.png", "subfolder": "stored", "type": "output"}
    assert app.stored[stored["filename"]].startswith(b"\x89PNG")
    assert 0 < result["gpu_seconds"] < 10
    assert [kind for kind, _ in result["messages"]] == ["execution_start", "execution_cached", "execution_success"]

    events = app.events_sent
    kinds = [e["type"] for e in events]
    assert kinds[0] == "execution_start" and kinds[-1] == "execution_success"
    for event in events:
        assert event["data"]["prompt_id"] == job["job_id"]
        for node in (event["data"].get("nodes") or {}).values():
            assert node["prompt_id"] == job["job_id"], "no ComfyUI prompt id inside progress_state either"
    executed = next(e for e in events if e["type"] == "executed")
    assert executed["data"]["output"]["images"][0] == stored
    order = [(kind, body) for kind, body in app.timeline if kind in ("upload", "events")]
    upload_at = order.index(("upload", "gw_simple_00001_.png"))
    executed_at = next(i for i, (kind, body) in enumerate(order) if kind == "events"
                       and any(e["type"] == "executed" for e in body))
    assert upload_at < executed_at
    assert "prompt_id" not in double.prompts[-1]


def test_a_cached_rerun_still_delivers_the_earlier_runs_file(double, comfy):
    first, second = FakeApp(), FakeApp()
    prompt = workflow("simple.json")
    run(first, comfy, payload(prompt))
    run(second, comfy, payload(prompt))
    cached = [d for kind, d in second.result["messages"] if kind == "execution_cached"][0]
    assert cached["nodes"] == ["1", "2", "3"]
    name = second.result["outputs"]["3"]["images"][0]["filename"]
    assert second.stored[name] == next(iter(first.stored.values()))


def test_every_file_kind_of_an_output_is_delivered(double, comfy):
    app = FakeApp()
    assert run(app, comfy, payload(workflow("multi_output.json"))) == "success"
    outputs = app.result["outputs"]
    files = [f for out in outputs.values() for v in out.values() if isinstance(v, list)
             for f in v if isinstance(f, dict)]
    assert len(files) == 7 and len(app.stored) == 7
    assert {f["type"] for f in files} == {"output", "temp"}
    assert all(f["subfolder"] == "stored" for f in files)
    animated = next(out for out in outputs.values() if "animated" in out)
    assert animated["animated"] == [True], "lists that are not files pass unchanged"
    assert any(out.get("text") for out in outputs.values())


def test_a_large_output_is_streamed_in_chunks(double, comfy):
    app = FakeApp()
    job = payload({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 2048, "height": 2048, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    })
    assert run(app, comfy, job) == "success"
    (name, data), = app.stored.items()
    assert app.chunks[name] == -(-len(data) // (1024 * 1024)), "one chunk per MiB, never the whole file"


def test_inputs_go_from_the_app_to_comfyui_before_the_prompt(double, comfy):
    app = FakeApp(inputs={"cat.png": png((0, 0, 255))})
    job = payload({
        "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw_in"}},
    }, inputs=[{"filename": "cat.png", "subfolder": "", "type": "input"}])
    assert run(app, comfy, job) == "success"
    assert double.uploads[-1]["name"] == "cat.png"
    (data,) = app.stored.values()
    assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((1, 1)) == (255, 255, 0)


def test_a_refused_prompt_finishes_with_comfyuis_error_text(double, comfy):
    app = FakeApp()
    assert run(app, comfy, payload(workflow("invalid_missing_input.json"))) == "error"
    error = app.result["error"]
    assert error["exception_message"].startswith("Prompt outputs failed validation")
    assert "#2 ImageInvert: Required input is missing (image)" in error["exception_message"]
    assert "Value 99999 bigger than max of 16384" in error["exception_message"]
    assert error["node_errors"]["1"]["class_type"] == "EmptyImage"
    assert double.counters["executed_prompts"] == 0


def test_a_runtime_error_finishes_with_the_execution_error(double, comfy):
    app = FakeApp()
    assert run(app, comfy, payload(workflow("runtime_error.json"))) == "error"
    error = app.result["error"]
    assert error["exception_type"] == "IndexError" and error["node_id"] == "2"
    assert "out of bounds" in error["exception_message"]
    assert app.events_sent[-1]["type"] == "execution_error"


def test_a_job_cancelled_before_it_started_is_not_run(double, comfy):
    app = FakeApp(may_start=False)
    assert run(app, comfy, payload(workflow("simple.json"))) == "skipped"
    assert double.prompts == [] and [kind for kind, _ in app.timeline] == ["started"]


def test_cancel_key_in_redis_interrupts_comfyui_within_half_a_second(double, comfy):
    double.steps, double.step_time = 1000, 0.02
    app, redis_ = FakeApp(), FakeRedis()
    job = payload(workflow("simple.json"))
    asked = {}

    def cancel_soon():
        asked["prompt"] = double.wait_running(10)
        time.sleep(0.3)
        asked["at"] = time.monotonic()
        redis_.set(f"workshop:cancel:{job['job_id']}", "cancel")

    threading.Thread(target=cancel_soon, daemon=True).start()
    assert run(app, comfy, job, redis_) == "interrupted"
    interrupted_at, prompt_id = double.interrupts[0]
    assert interrupted_at - asked["at"] < 0.5
    assert prompt_id == asked["prompt"], "only our prompt is interrupted"
    assert app.result["status"] == "interrupted"
    assert app.result["error"]["node_type"] == "EmptyImage"


def test_the_events_answer_is_a_second_way_to_stop(double, comfy):
    double.steps, double.step_time = 1000, 0.02
    app = FakeApp()

    def answer(events):
        if any(e["type"] == "executing" for e in events):
            app.cancel = "interrupt"

    app.on_events = answer
    assert run(app, comfy, payload(workflow("simple.json")), FakeRedis()) == "interrupted"
    assert len(double.interrupts) >= 1


def test_timeout_interrupts_and_fails_with_a_clear_message(double, comfy):
    double.steps, double.step_time = 1000, 0.02
    app = FakeApp()
    began = time.monotonic()
    assert run(app, comfy, payload(workflow("simple.json"), timeout=1)) == "error"
    assert time.monotonic() - began < 3
    assert app.result["error"]["exception_message"] == "Timed out after 1 s"
    assert double.interrupts


def test_a_cancel_before_comfyui_started_the_prompt_still_lands(double, comfy):
    """ComfyUI skips an interrupt for a prompt that is not running yet: it is repeated."""
    double.steps, double.step_time = 1000, 0.02
    blocker = comfy.submit(workflow("simple.json"), {}, "someone-else")  # ComfyUI busy with another prompt
    app, redis_ = FakeApp(), FakeRedis()
    job = payload(workflow("simple.json"))

    def cancel_then_free_comfyui():
        deadline = time.monotonic() + 10
        while len(double.prompts) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        redis_.set(f"workshop:cancel:{job['job_id']}", "cancel")  # ours waits in ComfyUI's queue
        time.sleep(0.5)
        comfy.interrupt(blocker)

    threading.Thread(target=cancel_then_free_comfyui, daemon=True).start()
    began = time.monotonic()
    assert run(app, comfy, job, redis_) == "interrupted"
    assert time.monotonic() - began < 5
    ours = double.prompts[-1]["client_id"]
    assert ours != "someone-else"


def test_a_dropped_websocket_is_reopened_with_the_same_client_id(double, comfy):
    double.steps, double.step_time = 10, 0.05
    app = FakeApp()
    job = payload(workflow("simple.json"))

    def drop_once_running():
        double.wait_running(10)
        time.sleep(0.2)
        (sid,) = [s for s in list(double.sockets) if double.prompts and s == double.prompts[-1]["client_id"]]
        # The double has no public switch for this: close its server side as a network failure would.
        asyncio.run_coroutine_threadsafe(double.sockets[sid].close(), double._loop).result(5)

    threading.Thread(target=drop_once_running, daemon=True).start()
    assert run(app, comfy, job) == "success"
    assert app.result["outputs"]["3"]["images"][0]["subfolder"] == "stored"
    assert len({p["client_id"] for p in double.prompts}) == 1


def test_a_run_that_ends_while_the_socket_is_down_is_found_in_the_history(double, comfy, monkeypatch):
    double.steps, double.step_time = 5, 0.05
    app = FakeApp()
    job = payload(workflow("simple.json"))
    opened = []
    real_open = tasks.ComfyClient.websocket

    def websocket(self, client_id=None, open_timeout=15):
        socket = real_open(self, client_id, open_timeout)
        original = socket.open

        def open_later():  # ComfyUI unreachable on websocket until the run is over
            opened.append(time.monotonic())
            if not double.history:
                raise ConnectionRefusedError("simulated")
            original()

        socket.open = open_later
        return socket

    monkeypatch.setattr(tasks.ComfyClient, "websocket", websocket)

    def drop():
        double.wait_running(10)
        sid = double.prompts[-1]["client_id"]
        asyncio.run_coroutine_threadsafe(double.sockets[sid].close(), double._loop).result(5)

    threading.Thread(target=drop, daemon=True).start()
    assert run(app, comfy, job) == "success"
    result = app.result
    assert result["outputs"]["3"]["images"][0]["subfolder"] == "stored", "outputs recovered from /history"
    assert any(e["type"] == "executed" for e in app.events_sent)
    assert result["gpu_seconds"] > 0
    assert len(opened) >= 2


def test_previews_are_relayed_at_most_twice_a_second(double, comfy):
    double.previews, double.steps, double.step_time = True, 30, 0.05  # 20 previews a second
    app = FakeApp()
    began = time.monotonic()
    run(app, comfy, payload(workflow("simple.json")))
    elapsed = time.monotonic() - began
    previews = [e for e in app.events_sent if e["type"] == "_preview"]
    assert 1 <= len(previews) <= elapsed * 2 + 1
    frame = base64.b64decode(previews[0]["data"]["frame"])
    assert frame[:4] == b"\x00\x00\x00\x01" and frame[8:12] == b"\x89PNG"


def test_progress_is_throttled_but_each_nodes_last_step_arrives(double, comfy):
    double.steps, double.step_time = 40, 0.01  # 100 steps a second
    app = FakeApp()
    run(app, comfy, payload(workflow("simple.json")))
    progress_ = [e["data"] for e in app.events_sent if e["type"] == "progress"]
    assert len(progress_) < 3 * 40 / 2
    last = {}
    for data in progress_:
        last[data["node"]] = data["value"]
    assert last == {"1": 40, "2": 40, "3": 40}
    calls = [kind for kind, _ in app.timeline].count("events")
    assert calls < 40, "events go out in batches"


def test_an_unexpected_failure_is_reported_then_raised(double, comfy):
    app = FakeApp()
    app.fail_uploads = OSError("disk full on the app host")
    with pytest.raises(OSError):
        run(app, comfy, payload(workflow("simple.json")))
    assert app.result["status"] == "error"
    assert app.result["error"]["exception_message"] == "GPU worker error: disk full on the app host"


def test_a_job_the_app_took_back_is_dropped_without_a_result(double, comfy):
    app = FakeApp()
    app.fail_uploads = AppError("PUT", "jobs/x/outputs", 409, '{"state": "queued"}')
    assert run(app, comfy, payload(workflow("simple.json"))) == "gone"
    assert [kind for kind, _ in app.timeline if kind == "finish"] == []


def test_settings_come_from_the_environment():
    env = {"GPUWORKER_APP": "http://app", "GPUWORKER_TOKEN": "t", "GPUWORKER_COMFYUI": "http://c:8188",
           "GPUWORKER_HEADERS": '{"Authorization": "Bearer k"}', "GPUWORKER_APP_RETRY": "7"}
    settings = Settings.from_env(env)
    assert settings.headers == {"Authorization": "Bearer k"} and settings.app_retry == 7.0
    with pytest.raises(RuntimeError, match="GPUWORKER_TOKEN"):
        Settings.from_env({"GPUWORKER_APP": "x", "GPUWORKER_COMFYUI": "y"})


# --- the app client, over HTTP ----------------------------------------------------------------


class AppDouble:
    """The app's worker API in memory, over real HTTP (chunked uploads included)."""

    def __init__(self, token="tok", inputs=None):
        self.token = token
        self.inputs = inputs or {}
        self.calls = []  # (method, path, query, body)
        self.failures = {}  # path suffix -> statuses to answer first
        self.started_status = 200
        self.cancel = None
        self.jobs = []  # RQ-free: nothing here
        self.lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                double.handle(self)

            do_POST = do_PUT = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def of(self, suffix):
        return [c for c in self.calls if c[1].endswith(suffix)]

    def read_body(self, request) -> bytes:
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(request.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    request.rfile.readline()
                    return out
                out += request.rfile.read(size)
                request.rfile.readline()
        return request.rfile.read(int(request.headers.get("Content-Length") or 0))

    def handle(self, request):
        parts = urlsplit(request.path)
        path = parts.path.removeprefix("/api/worker/")
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = self.read_body(request)
        with self.lock:
            self.calls.append((request.command, path, query, body,
                               request.headers.get("Transfer-Encoding", "")))
            failing = next((s for s in self.failures if path.endswith(s) and self.failures[s]), None)
            status = self.failures[failing].pop(0) if failing else None
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.answer(request, 401, {"error": "Unknown worker token"})
        if status:
            return self.answer(request, status, {"error": "simulated"})
        if path.endswith("/inputs"):
            data = self.inputs.get(query["filename"])
            if data is None:
                return self.answer(request, 404, {"error": "That file is not an input of this job"})
            request.send_response(200)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
            return None
        if path.endswith("/started"):
            return self.answer(request, self.started_status,
                               {"ok": True} if self.started_status == 200 else {"state": "cancelled"})
        if path.endswith("/events"):
            return self.answer(request, 200, {"ok": True, "cancel": self.cancel})
        if path.endswith("/outputs"):
            return self.answer(request, 200, {"filename": "s-" + query["filename"], "subfolder": query["subfolder"],
                                              "type": query["type"]})
        if path == "register":
            return self.answer(request, 200, {"worker": json.loads(body)["name"], "queue": "gpu"})
        return self.answer(request, 200, {"ok": True, "state": "completed"})

    @staticmethod
    def answer(request, status, payload_):
        data = json.dumps(payload_).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def json_bodies(self, suffix):
        return [json.loads(c[3]) for c in self.of(suffix)]


@pytest.fixture
def app_double():
    with AppDouble(inputs={"cat.png": png()}) as app:
        yield app


def test_app_calls_carry_the_token_and_retry_5xx(app_double):
    app_double.failures["heartbeat"] = [503, 502]
    client = AppClient(app_double.url, "tok", retry_seconds=10)
    assert client.heartbeat("idle") == {"ok": True, "state": "completed"}
    assert len(app_double.of("heartbeat")) == 3


def test_app_4xx_is_final_and_readable(app_double):
    client = AppClient(app_double.url, "wrong", retry_seconds=10)
    with pytest.raises(AppError) as caught:
        client.heartbeat("idle")
    assert caught.value.status == 401 and "Unknown worker token" in caught.value.body
    assert "401" in str(caught.value)
    assert len(app_double.calls) == 1


def test_started_409_means_do_not_run(app_double):
    app_double.started_status = 409
    assert AppClient(app_double.url, "tok").started("j1") is False


def test_app_unreachable_gives_up_after_the_retry_period():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = AppClient(f"http://127.0.0.1:{port}", "tok", retry_seconds=1.5)
    began = time.monotonic()
    with pytest.raises(AppUnreachable):
        client.heartbeat("idle")
    assert 1.0 < time.monotonic() - began < 4


def test_outputs_are_streamed_chunked_and_reopened_for_a_retry(app_double):
    app_double.failures["outputs"] = [503]
    opened = []

    def open_stream():
        opened.append(1)
        return (bytes([i]) * 65536 for i in range(40))  # 2.5 MB, produced piece by piece

    client = AppClient(app_double.url, "tok", retry_seconds=10)
    stored = client.upload_output("j1", {"filename": "v.mp4", "subfolder": "", "type": "output"}, open_stream)
    assert stored == {"filename": "s-v.mp4", "subfolder": "", "type": "output"}
    assert len(opened) == 2
    method, _, query, body, encoding = app_double.of("outputs")[-1]
    assert method == "PUT" and encoding == "chunked" and len(body) == 40 * 65536
    assert query == {"filename": "v.mp4", "subfolder": "", "type": "output"}


def test_inputs_are_fetched_streamed(app_double):
    client = AppClient(app_double.url, "tok")
    spool = io.BytesIO(b"old content that must go")
    size = client.fetch_input("j1", {"filename": "cat.png", "subfolder": "", "type": "input"}, spool)
    assert spool.read() == png() and size == len(png())
    with pytest.raises(AppError) as caught:
        client.fetch_input("j1", {"filename": "dog.png", "subfolder": "", "type": "input"}, io.BytesIO())
    assert caught.value.status == 404


def test_run_job_over_http_with_settings(app_double, double):
    settings = Settings(app=app_double.url, token="tok", comfyui=double.url)
    job = payload(workflow("simple.json"), inputs=[{"filename": "cat.png", "subfolder": "", "type": "input"}])
    assert run_job(job, settings, connection=FakeRedis()) == "success"
    (finish,) = app_double.json_bodies("/finish")
    assert finish["outputs"]["3"]["images"][0]["filename"] == "s-gw_simple_00001_.png"
    assert app_double.of("/inputs") and double.uploads[-1]["name"] == "cat.png"
    assert app_double.of("/started")[0][1] == f"jobs/{job['job_id']}/started"


# --- the command line's settings -----------------------------------------------------------


BASE = ["--redis", "redis://r", "--app", "http://app/", "--token", "t", "--comfyui", "http://127.0.0.1:8189/"]


def test_command_line_wins_over_environment_and_config(tmp_path):
    config = tmp_path / "worker.toml"
    config.write_text('queue = "from-config"\nname = "from-config"\napp_retry = 9\n[headers]\nX-A = "config"\n')
    env = {"GPUWORKER_QUEUE": "from-env", "GPUWORKER_CONFIG": str(config)}
    options = parse([*BASE, "--name", "cli", "--header", "X-B: cli"], environ=env)
    assert (options.name, options.queue, options.app_retry) == ("cli", "from-env", 9.0)
    assert options.headers == {"X-A": "config", "X-B": "cli"}
    assert options.app == "http://app" and options.comfyui == "http://127.0.0.1:8189"


def test_default_name_is_host_and_port():
    import socket

    assert parse(BASE, environ={}).name == f"{socket.gethostname()}-8189"
    https = parse([*BASE[:-1], "https://x.modal.run"], environ={})
    assert https.name.endswith("-443")


def test_config_file_chooses_the_provider(tmp_path):
    toml = tmp_path / "serverless.toml"
    toml.write_text('provider = "comfyui"\nredis = "redis://r"\napp = "http://app"\ntoken = "t"\n'
                    '[comfyui]\nurl = "https://example--comfyui.modal.run"\n'
                    'headers = { Modal-Key = "k", Modal-Secret = "s" }\n')
    options = parse(["--config", str(toml)], environ={})
    assert options.comfyui == "https://example--comfyui.modal.run"
    assert options.headers == {"Modal-Key": "k", "Modal-Secret": "s"}
    as_json = tmp_path / "worker.json"
    as_json.write_text(json.dumps({"provider": "comfyui", "redis": "redis://r", "app": "http://app", "token": "t",
                                   "comfyui": {"url": "http://c:1", "headers": {"Authorization": "Bearer z"}}}))
    assert parse(["--config", str(as_json)], environ={}).headers == {"Authorization": "Bearer z"}
    # The docker example's flat shape: keys as the long options.
    flat = tmp_path / "flat.toml"
    flat.write_text('comfyui = "https://c"\nprovider = "comfyui"\n[headers]\nAuthorization = "Bearer y"\n')
    options = parse(["--config", str(flat), "--redis", "r", "--app", "a"], environ={"GPUWORKER_TOKEN": "t"})
    assert options.comfyui == "https://c" and options.headers == {"Authorization": "Bearer y"} and options.token == "t"


def test_config_mistakes_are_explained(tmp_path):
    typo = tmp_path / "typo.toml"
    typo.write_text('tokn = "x"\n')
    with pytest.raises(ConfigError, match="unknown setting 'tokn'"):
        parse(["--config", str(typo)], environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("provider = \n")
    with pytest.raises(ConfigError, match="not valid TOML or JSON"):
        parse(["--config", str(broken)], environ={})
    with pytest.raises(ConfigError, match="must look like 'Name: value'"):
        parse([*BASE, "--header", "no colon"], environ={})


def test_runpod_is_configured_but_says_it_is_not_supported_yet(tmp_path):
    config = tmp_path / "runpod.toml"
    config.write_text('provider = "runpod"\n[runpod]\nendpoint_id = "abc123"\napi_key = "k"\n')
    with pytest.raises(ConfigError) as caught:
        parse(["--config", str(config)], environ={})
    assert "provider 'runpod' is not supported yet" in str(caught.value.code)
    assert "endpoint abc123" in str(caught.value.code) and "'comfyui'" in str(caught.value.code)


def test_what_the_worker_prints_and_publishes_hides_secrets():
    assert redacted("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted("redis://user:pw@host/0") == "redis://user:***@host/0"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"
    stats = {"system": {"comfyui_version": "0.3.64", "argv": ["main.py", "--listen"], "base_path": "/opt/comfyui",
                        "python_version": "3.12"}, "devices": [{"name": "cuda:0"}]}
    public = public_stats(stats)
    assert public["system"] == {"comfyui_version": "0.3.64", "python_version": "3.12"}
    assert public["devices"] == stats["devices"] and "argv" in stats["system"]


def test_module_docstring_names_every_environment_variable():
    import gpuworker.__main__ as cli

    assert all(re.search(name, cli.__doc__) for name in cli.ENV.values())
