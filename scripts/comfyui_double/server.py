"""The double's HTTP + websocket server, its queue and its executor.

Behaviour follows what a real ComfyUI 0.3.64 was seen to do (shared/comfyui/API_NOTES.md and
transcripts.json) and, where the recording is silent, what its server.py / execution.py do.
Deliberate differences are marked "Unlike ComfyUI".
"""

import argparse
import asyncio
import copy
import gzip
import hashlib
import io
import json
import mimetypes
import os
import signal
import socket
import struct
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType, web
from PIL import Image

from . import nodes
from .blueprints import RECORDED_BYTES as RECORDED_BLUEPRINT_BYTES
from .blueprints import RECORDED_COUNT as RECORDED_BLUEPRINTS
from .blueprints import make as make_blueprints
from .validation import error_body, full_type_name, validate_prompt, version_tuple

VERSION = "0.3.64"
SIMULATED_VERSION = "0.8.0"  # what `python -m scripts.comfyui_double` reports (scripts/run's simulated GPU)
FRONTEND_VERSION = "1.27.10"
TEMPLATES_VERSION = "0.1.95"
REQUIRED_FRONTEND = {"0.8.0": "1.35.9", "0.28.0": "1.45.21"}
FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
MAX_HISTORY = 10000
MODEL_FOLDERS = [
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
    "latent_upscale_models",
]
# Binary websocket events (server.py BinaryEventTypes).
PREVIEW_IMAGE, TEXT, PREVIEW_IMAGE_WITH_METADATA = 1, 3, 4
PNG_FORMAT = 2
# A custom node pack's frontend files, as ComfyUI serves them from the pack's web folder: lets the
# platform's "publish custom nodes' JS" path be tested.
DEMO_EXTENSION = {
    "/extensions/workshop-demo/demo.js": 'import { app } from "../../scripts/app.js";\n'
    'import { hello } from "./lib/helper.js";\n'
    'app.registerExtension({ name: "workshop.demo", setup() { hello(); } });\n',
    "/extensions/workshop-demo/lib/helper.js": "export function hello() { return 'demo'; }\n",
}
EXTENSIONS = ["/extensions/core/groupNode.js", "/extensions/workshop-demo/demo.js"]
# And the pack's example workflows (ComfyUI lists custom nodes' example_workflows/ per module).
TEMPLATES = {"workshop-demo": ["demo_example"]}
DEMO_TEMPLATE = {"nodes": [], "links": [], "version": 0.4, "extra": {"demo": True}}


def now_ms() -> int:
    return int(time.time() * 1000)


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def offer_model_files(object_info: dict, names: list[str]) -> None:
    """Add `names` to every model loader's empty file list (old-style or new-style COMBO), as a
    ComfyUI lists the files of its model folders; upload inputs are left alone."""
    if not names:
        return
    for info in object_info.values():
        for section in (info.get("input") or {}).values():
            for config in section.values() if isinstance(section, dict) else ():
                extra = config[1] if len(config) > 1 and isinstance(config[1], dict) else {}
                if any(k.endswith("upload") for k in extra) or extra.get("remote"):
                    continue
                if config[0] == []:
                    config[0].extend(names)
                elif config[0] == "COMBO" and extra.get("options") == []:
                    extra["options"].extend(names)


def load_object_info(path=None) -> dict:
    """The embedded subset (real specs of the implemented nodes, plus the model nodes of ComfyUI's
    default graph, advertised so that graph loads), or a whole recorded /object_info."""
    source = Path(path) if path else Path(__file__).with_name("object_info.json")
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rt") as f:
        return json.load(f)


def describe(value):
    """execution.format_value for current_inputs; our images stand where torch prints a tensor."""
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    if isinstance(value, list) and value and isinstance(value[0], Image.Image):
        first = value[0]
        return f"tensor(<{len(value)}x{first.height}x{first.width}x{len(first.getbands())} simulated>)"
    return str(value)


class Interrupted(Exception):
    """comfy.model_management.InterruptProcessingException"""


class NodeFailed(Exception):
    def __init__(self, node_id, exc, inputs):
        super().__init__(str(exc))
        self.node_id, self.exc, self.inputs = node_id, exc, inputs


class ExecutionList:
    """The order ComfyUI 0.3.64 runs nodes in (comfy_execution/graph.py): a node is ready once
    its uncached inputs have run; of the ready ones an output node goes first, then one feeding
    an output one or two links away, else the one added first (depth-first from the outputs).
    This is why the recording runs 1, 4, 2, 3 for model_free_ok and 2, 1, 3, 4 for runtime_error."""

    def __init__(self, prompt, is_output, is_cached):
        self.prompt, self.is_output, self.is_cached = prompt, is_output, is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict] = {}

    def add_node(self, node_id):
        stack, links = [node_id], []
        while stack:
            current = stack.pop()
            if current in self.pending:
                continue
            self.pending[current] = True
            self.block_count[current], self.blocking[current] = 0, {}
            for value in self.prompt[current]["inputs"].values():
                if is_link(value):
                    if not self.is_cached(value[0]):
                        stack.append(value[0])
                    links.append((value[0], current))
        for source, target in links:
            if not self.is_cached(source) and target not in self.blocking[source]:
                self.blocking[source][target] = True
                self.block_count[target] += 1

    def stage(self) -> str | None:
        ready = [n for n in self.pending if self.block_count[n] == 0]
        feeds = lambda n, hops: any(  # noqa: E731
            self.is_output(t) if hops == 1 else feeds(t, hops - 1) for t in self.blocking[n]
        )
        for test in (self.is_output, lambda n: feeds(n, 1), lambda n: feeds(n, 2)):
            for node_id in ready:
                if test(node_id):
                    return node_id
        return ready[0] if ready else None  # None: a dependency cycle

    def complete(self, node_id):
        del self.pending[node_id]
        for target in self.blocking.pop(node_id):
            self.block_count[target] -= 1


class Run:
    """One prompt's execution state."""

    def __init__(self, item):
        self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs = item[:5]
        self.item = item
        self.sid = self.extra_data.get("client_id")
        self.messages: list = []  # history's status.messages
        self.progress: dict = {}  # node -> {"value", "max", "state"}, as progress_state reports it
        self.ui: dict = {}  # node -> ui output, in execution order
        self.executed: list = []


class ComfyUIDouble:
    """A simulated ComfyUI on a free port, run by a background thread with its own event loop.

    step_time / steps / previews may be changed while it runs. `cache=False` behaves like
    `--cache-none` (every prompt runs every node). `object_info` may name a recorded /object_info
    (.json or .json.gz) to advertise all its classes; those not implemented fail when executed.
    """

    def __init__(
        self,
        step_time=0.02,
        steps=3,
        output_dir=None,
        host="127.0.0.1",
        port=0,
        cache=True,
        previews=False,
        object_info=None,
        version=VERSION,
        model_files=(),
        stand_ins=False,
        models_dir=None,
        blueprints=None,
    ):
        self.step_time, self.steps, self.previews = step_time, steps, previews
        # Like a models folder named in extra_model_paths: LoRAs in <models_dir>/loras (links
        # followed, as folder_paths walks them) are offered and loaded; loads are recorded.
        self.models_dir = Path(models_dir) if models_dir else None
        self.lora_loads: list[tuple[str, bytes]] = []  # (name, the file's first bytes) per load
        self.cache_enabled = cache
        self.host, self.port = host, port
        self._tmp = None
        if output_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="comfyui-double-")
            output_dir = self._tmp.name
        base = Path(output_dir)
        self.folders = {kind: base / kind for kind in ("input", "output", "temp")}
        for folder in self.folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        self.input_dir, self.output_dir, self.temp_dir = (self.folders[k] for k in ("input", "output", "temp"))
        self.object_info = load_object_info()
        # 0.28.0 advertises its whole recorded catalog (805 classes, 1.37 MB) and ships 89
        # blueprints (4.2 MB): what a GPU host of the current line publishes.
        if object_info is None and version_tuple(version) >= (0, 28, 0):
            object_info = Path(__file__).with_name("object_info_0.28.0.json.gz")
        if object_info:
            self.object_info = {**self.object_info, **load_object_info(object_info)}
        if blueprints is None:
            blueprints = RECORDED_BLUEPRINTS if version_tuple(version) >= (0, 28, 0) else 0
        # blueprints: how many global subgraphs, or (how many, total bytes)
        count, total = blueprints if isinstance(blueprints, tuple) else (blueprints, None)
        self.blueprints = (
            make_blueprints(count, total or count * RECORDED_BLUEPRINT_BYTES // RECORDED_BLUEPRINTS) if count else {}
        )
        # 0.8 and later: V3 nodes, /global_subgraphs; model files "installed" on this GPU host are
        # offered by every model loader; stand-ins run the classes that need models.
        self.version, self.stand_ins = version, stand_ins
        # model_files: file names offered by every loader, or {folder: [names]} to list each
        # under its folder in /models/<folder> as well, as a GPU host with those files does.
        self.model_folders = {k: list(v) for k, v in model_files.items()} if isinstance(model_files, dict) else {}
        offer_model_files(
            self.object_info,
            [n for names in self.model_folders.values() for n in names]
            if isinstance(model_files, dict)
            else list(model_files),
        )
        self.url = None
        # What tests look at (appended on the server thread, read anywhere).
        self.prompts: list[dict] = []  # every POST /prompt body, as received
        self.interrupts: list[tuple[float, str | None]] = []  # (time.monotonic(), prompt_id asked for)
        self.uploads: list[dict] = []
        self.counters = Counter()  # posted, rejected, queued, executed_prompts, nodes_executed, nodes_cached, files...
        self.running_prompt_id = None
        # Set: every file an output node writes is grown to this many bytes (sparse here), a
        # video of gigabytes without the time or the disk to make one.
        self.output_bytes: int | None = None
        # Server state, touched only on the event loop.
        self.number = 0
        self.history: dict[str, dict] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._socket_flags: dict[str, dict] = {}
        self._pending: list[tuple] = []  # (number, prompt_id, seq, item)
        self._seq = 0
        self._run: Run | None = None
        self._last_node = None  # for a socket that reconnects mid-run
        self._interrupt_flag = False
        self._free_memory = False
        self._cache: dict[str, tuple] = {}  # node signature -> (outputs, ui)
        self._temp_prefixes: dict[tuple, str] = {}
        # Thread-safe waits for tests.
        self._lock = threading.Lock()
        self._events: dict[tuple, threading.Event] = {}
        self._running_event = threading.Event()
        self._interrupt_event = threading.Event()
        self._started = threading.Event()
        self._start_error = None
        self._loop = self._thread = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self._thread_main, name="comfyui-double", daemon=True)
        self._thread.start()
        if not self._started.wait(10) or self._start_error:
            raise RuntimeError(f"ComfyUI double did not start: {self._start_error}")
        return self

    def _thread_main(self):
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()'s caller
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._shutdown())
        self._loop.close()

    async def _serve(self):
        self._wake = asyncio.Event()
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        # Bind the socket ourselves: port 0 gets a free port and we can read which one.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://{self.host}:{self.port}"
        self._worker_task = asyncio.ensure_future(self._worker())

    async def _shutdown(self):
        self._worker_task.cancel()
        for ws in list(self.sockets.values()):
            await ws.close(code=WSCloseCode.GOING_AWAY)
        await self._runner.cleanup()
        await self._loop.shutdown_default_executor()

    def stop(self):
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- waits for tests (threading events: no sleeping) ------------------------------------

    def _event(self, kind, prompt_id) -> threading.Event:
        with self._lock:
            return self._events.setdefault((kind, prompt_id), threading.Event())

    def wait_running(self, timeout=5.0) -> str | None:
        """The id of the prompt running now (waiting up to `timeout` for one to start), or None."""
        return self.running_prompt_id if self._running_event.wait(timeout) else None

    def wait_started(self, prompt_id, timeout=5.0) -> bool:
        return self._event("started", prompt_id).wait(timeout)

    def wait_finished(self, prompt_id, timeout=5.0) -> bool:
        """True once the prompt's history entry is written (success, error or interrupt)."""
        return self._event("finished", prompt_id).wait(timeout)

    def wait_interrupt(self, timeout=5.0) -> bool:
        """True once any POST /interrupt has arrived."""
        return self._interrupt_event.wait(timeout)

    # --- routes ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=FEATURES["max_upload_size"], middlewares=[origin_check])
        routes = [
            ("GET", "/ws", self.websocket),
            ("POST", "/prompt", self.post_prompt),
            ("GET", "/prompt", self.get_prompt),
            ("GET", "/queue", self.get_queue),
            ("POST", "/queue", self.post_queue),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history),
            ("POST", "/history", self.post_history),
            ("GET", "/view", self.view),
            ("POST", "/upload/image", self.upload_image),
            ("POST", "/interrupt", self.interrupt),
            ("POST", "/free", self.free),
            ("GET", "/object_info", self.get_object_info),
            ("GET", "/object_info/{node_class}", self.get_object_info),
            ("GET", "/system_stats", self.system_stats),
            ("GET", "/features", json_handler(FEATURES)),
            ("GET", "/embeddings", json_handler([])),
            ("GET", "/extensions", json_handler(EXTENSIONS)),
            ("GET", "/models", json_handler(MODEL_FOLDERS)),
            ("GET", "/models/{folder}", self.models_in),
            ("GET", "/workflow_templates", json_handler(TEMPLATES)),
            ("GET", "/global_subgraphs", self.global_subgraphs),
            ("GET", "/global_subgraphs/{id}", self.global_subgraph),
            ("GET", "/workflow_templates/{module}/{file}", self.template_file),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        # Like static files, a pack's frontend files and the page have no /api twin.
        app.router.add_get("/extensions/{path:.+}", self.extension_file)
        app.router.add_get("/", self.index)
        return app

    async def index(self, request):
        return web.Response(text=f"SIMULATED ComfyUI {self.version} (protocol double: no GPU, model-free nodes only)\n")

    async def system_stats(self, request):
        return web.json_response(
            {
                "system": {
                    "os": "posix",
                    "ram_total": 1 << 34,
                    "ram_free": 1 << 33,
                    "comfyui_version": self.version,
                    "required_frontend_version": REQUIRED_FRONTEND.get(self.version, "1.35.9")
                    if self.version != VERSION
                    else FRONTEND_VERSION,
                    "installed_templates_version": TEMPLATES_VERSION,
                    "required_templates_version": TEMPLATES_VERSION,
                    "python_version": "simulated",
                    "pytorch_version": "simulated",
                    "embedded_python": False,
                    "argv": ["main.py", "--simulated"],
                },
                "devices": [
                    {
                        "name": "SIMULATED GPU (ComfyUI protocol double)",
                        "type": "cpu",
                        "index": None,
                        "vram_total": 0,
                        "vram_free": 0,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        )

    async def global_subgraphs(self, request):
        if self.version == VERSION:
            return web.Response(status=404)  # 0.3.64 has no such route
        return web.json_response(
            {key: {k: v for k, v in entry.items() if k != "data"} for key, entry in self.blueprints.items()}
        )

    async def global_subgraph(self, request):
        if self.version == VERSION:
            return web.Response(status=404)
        return web.json_response(self.blueprints.get(request.match_info["id"]))

    async def models_in(self, request):
        if request.match_info["folder"] not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(self.model_folders.get(request.match_info["folder"], []))

    async def extension_file(self, request):
        body = DEMO_EXTENSION.get("/extensions/" + request.match_info["path"])
        if body is None:
            return web.Response(status=404)
        return web.Response(text=body, content_type="text/javascript")

    async def template_file(self, request):
        if request.match_info["file"].removesuffix(".json") not in TEMPLATES.get(request.match_info["module"], []):
            return web.Response(status=404)
        return web.json_response(DEMO_TEMPLATE)

    def _load_lora(self, ctx, lora_name, model=None, clip=None, **strengths):
        """comfy.utils.load_torch_file on a .safetensors: the header is read and checked."""
        path = self.models_dir / "loras" / lora_name
        with open(path, "rb") as fh:
            head = fh.read(8)
            length = struct.unpack("<Q", head)[0]
            header = json.loads(fh.read(length))
        assert any(k != "__metadata__" for k in header), "a LoRA without tensors"
        self.lora_loads.append((lora_name, path.read_bytes()))
        return (model, clip) if "clip" in self.object_info.get(ctx.prompt[ctx.node_id]["class_type"], {}).get(
            "input", {}
        ).get("required", {}) else (model,), None

    def lora_files(self) -> list[str]:
        root = self.models_dir / "loras" if self.models_dir else None
        if root is None or not root.is_dir():
            return []
        found = []
        for folder, _, files in os.walk(root, followlinks=True):
            for name in files:
                if name.endswith(".safetensors") and not name.startswith("."):
                    found.append(str((Path(folder) / name).relative_to(root)))
        return sorted(found)

    def _with_loras(self, info: dict) -> dict:
        if self.models_dir is None:
            return info
        info = dict(info)
        for class_type in ("LoraLoader", "LoraLoaderModelOnly"):
            if class_type in info:
                info[class_type] = copy.deepcopy(info[class_type])
                info[class_type]["input"]["required"]["lora_name"][0] = self.lora_files()
        return info

    async def get_object_info(self, request):
        info = self._with_loras(copy.deepcopy(self.object_info))
        # LoadImage offers every image in input/ (everybody's uploads), refreshed on each call.
        if "LoadImage" in info:
            files = sorted(
                p.name
                for p in self.input_dir.iterdir()
                if p.is_file() and (mimetypes.guess_type(p.name)[0] or "").startswith("image/")
            )
            info["LoadImage"]["input"]["required"]["image"][0] = files
        node_class = request.match_info.get("node_class")
        if node_class is None:
            return web.json_response(info)
        return web.json_response({node_class: info[node_class]} if node_class in info else {})

    # --- websocket ------------------------------------------------------------------------

    async def websocket(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws  # a second socket with the same clientId replaces the first
        self._socket_flags[sid] = {}
        try:
            await ws.send_json({"type": "status", "data": {"status": self._queue_info(), "sid": sid}})
            if self._run and self._run.sid == sid and self._last_node is not None:
                await ws.send_json({"type": "executing", "data": {"node": self._last_node}})
            first = True
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    continue
                if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                    self._socket_flags[sid] = data.get("data") or {}
                    await ws.send_json({"type": "feature_flags", "data": FEATURES})
                first = False
        finally:
            # Like ComfyUI: the sid goes whichever socket holds it now, so when an older socket with
            # the same clientId closes, the newer one hears nothing more. Clients must cope.
            self.sockets.pop(sid, None)
            self._socket_flags.pop(sid, None)
        return ws

    async def send(self, event, data, sid=None):
        """ComfyUI's send_sync: to the socket of `sid`, or to every socket when sid is None."""
        targets = list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        text = None if isinstance(event, int) else json.dumps({"type": event, "data": data})
        for ws in targets:
            try:
                await (ws.send_bytes(data) if text is None else ws.send_str(text))
            except (ConnectionError, RuntimeError):
                pass  # closing: its handler will unregister it

    def _queue_info(self) -> dict:
        return {"exec_info": {"queue_remaining": len(self._pending) + (1 if self._run else 0)}}

    async def _queue_updated(self):
        await self.send("status", {"status": self._queue_info()})

    # --- prompt, validation ---------------------------------------------------------------

    async def post_prompt(self, request):
        body = await request.json()  # not JSON: aiohttp answers 500, as ComfyUI does
        self.prompts.append(copy.deepcopy(body))
        self.counters["posted"] += 1
        if "number" in body:
            number = float(body["number"])  # a client-set priority does not advance the counter
        else:
            number = -self.number if body.get("front") else self.number
            self.number += 1  # every POST, rejected ones too
        if "prompt" not in body:
            self.counters["rejected"] += 1
            return web.json_response(
                {"error": error_body("no_prompt", "No prompt provided", "No prompt provided"), "node_errors": {}},
                status=400,
            )
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        valid, error, outputs, node_errors = validate_prompt(
            prompt,
            self._with_loras(self.object_info),
            {"LoadImage": {"image": self._image_exists}},
            body.get("partial_execution_targets"),
            version=self.version,
        )
        extra_data = body.get("extra_data", {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if not valid:
            self.counters["rejected"] += 1
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        self._seq += 1
        self._pending.append((number, prompt_id, self._seq, (number, prompt_id, prompt, extra_data, outputs)))
        self.counters["queued"] += 1
        await self._queue_updated()
        self._wake.set()
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    def _image_exists(self, name):
        """LoadImage.VALIDATE_INPUTS"""
        try:
            if isinstance(name, str) and nodes.resolve_annotated(name, self.folders).is_file():
                return True
        except ValueError:
            pass
        return f"Invalid image file: {name}"

    # --- queue, history, interrupt --------------------------------------------------------

    async def get_prompt(self, request):
        return web.json_response(self._queue_info())

    async def get_queue(self, request):
        running = [list(self._run.item)] if self._run else []
        pending = [list(entry[3]) for entry in sorted(self._pending, key=lambda e: e[:3])]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def post_queue(self, request):
        body = await request.json()
        if body.get("clear"):
            self._pending.clear()
            await self._queue_updated()
        for prompt_id in body.get("delete", []):
            # Only waiting prompts; the running one needs /interrupt.
            match = next((e for e in self._pending if e[1] == prompt_id), None)
            if match:
                self._pending.remove(match)
                await self._queue_updated()
        return web.Response()

    async def get_history(self, request):
        prompt_id = request.match_info.get("prompt_id")
        if prompt_id is not None:
            return web.json_response({prompt_id: self.history[prompt_id]} if prompt_id in self.history else {})
        max_items = request.query.get("max_items")
        max_items = int(max_items) if max_items is not None else None
        offset = int(request.query.get("offset", -1))
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items  # the newest max_items
        ids = list(self.history)[max(offset, 0) :]
        return web.json_response({k: self.history[k] for k in ids[:max_items]})

    async def post_history(self, request):
        body = await request.json()
        if body.get("clear"):
            self.history.clear()
        for prompt_id in body.get("delete", []):
            self.history.pop(prompt_id, None)
        return web.Response()

    async def interrupt(self, request):
        try:
            body = await request.json()
        except ValueError:
            body = {}
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        self.interrupts.append((time.monotonic(), wanted))
        self.counters["interrupts"] += 1
        self._interrupt_event.set()
        # With a prompt_id only that prompt, if running; without one, whatever runs (and a flag set
        # while idle is cleared when the next prompt starts, so it has no effect).
        if not wanted or (self._run and self._run.prompt_id == wanted):
            self._interrupt_flag = True
        return web.Response()

    async def free(self, request):
        body = await request.json()
        if body.get("free_memory"):
            self._free_memory = True  # ComfyUI resets its executor: the execution cache is dropped
            if self._run is None:
                self._cache.clear()
        return web.Response()

    # --- files ----------------------------------------------------------------------------

    async def view(self, request):
        query = request.query
        if "filename" not in query:
            return web.Response(status=404)
        filename, kind = query["filename"], query.get("type", "output")
        for candidate in ("input", "output", "temp"):
            if filename.endswith(f" [{candidate}]"):
                filename, kind = filename[: -len(candidate) - 3], candidate
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if kind not in self.folders:
            return web.Response(status=400)
        folder = self.folders[kind].resolve()
        if "subfolder" in query:
            wanted = Path(os.path.abspath(folder / query["subfolder"]))
            if not wanted.is_relative_to(folder):
                return web.Response(status=403)
            folder = wanted
        filename = os.path.basename(filename)
        path = folder / filename
        if not path.is_file():
            return web.Response(status=404)
        headers = {"Content-Disposition": f'filename="{filename}"'}
        channel = query.get("channel", "rgba")
        if "preview" in query or channel in ("rgb", "a"):
            body, content_type = _reencode(path, query.get("preview"), channel)
            return web.Response(body=body, headers=headers, content_type=content_type)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css"}:
            content_type = "application/octet-stream"  # ComfyUI forces those to download
        return web.FileResponse(path, headers={**headers, "Content-Type": content_type})

    async def upload_image(self, request):
        form = await request.post()
        image = form.get("image")
        kind = form.get("type") or "input"
        if kind not in self.folders:
            return web.Response(status=500)  # ComfyUI fails with an UnboundLocalError here
        if image is None or not getattr(image, "filename", None):
            return web.Response(status=400)
        base = self.folders[kind].resolve()
        subfolder = form.get("subfolder", "")
        folder = Path(os.path.normpath(base / subfolder))
        name = image.filename
        if not Path(os.path.abspath(folder / name)).is_relative_to(base):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        data = image.file.read()
        stem, ext = os.path.splitext(name)
        duplicate, n = False, 1
        if form.get("overwrite") not in ("true", "1"):
            # Same name and same bytes: the existing file is the answer; else "name (n).ext".
            while (folder / name).exists():
                if hashlib.sha256((folder / name).read_bytes()).digest() == hashlib.sha256(data).digest():
                    duplicate = True
                    break
                name, n = f"{stem} ({n}){ext}", n + 1
        if not duplicate:
            (folder / name).write_bytes(data)
        self.uploads.append({"name": name, "subfolder": subfolder, "type": kind, "size": len(data)})
        self.counters["uploads"] += 1
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})

    # --- execution --------------------------------------------------------------------------

    async def _worker(self):
        """ComfyUI's prompt_worker: one prompt at a time, lowest number first (front: negative)."""
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            entry = min(self._pending, key=lambda e: e[:3])
            self._pending.remove(entry)
            self._run = run = Run(entry[3])
            self.running_prompt_id = run.prompt_id
            self._running_event.set()
            self._event("started", run.prompt_id).set()
            await self._queue_updated()
            try:
                await self._execute(run)
            except Exception:  # a bug in the double: report it, keep serving
                traceback.print_exc()
            finally:
                self._finish(run)
                self._run = self.running_prompt_id = self._last_node = None
                self._running_event.clear()
                if self._free_memory:
                    self._cache.clear()
                    self._free_memory = False
            await self._queue_updated()
            if run.sid is not None:
                await self.send("executing", {"node": None, "prompt_id": run.prompt_id}, run.sid)
            self._event("finished", run.prompt_id).set()

    def _grow_files(self, ui: dict) -> None:
        for items in ui.values():
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and item.get("filename") and item.get("type", "output") in self.folders:
                    folder = self.folders[item.get("type", "output")] / item.get("subfolder", "")
                    os.truncate(folder / item["filename"], self.output_bytes)

    async def _message(self, run, event, data, broadcast=False):
        """PromptExecutor.add_message: into the history, and to the client (everyone if broadcast
        and the prompt has no client_id)."""
        data = {**data, "timestamp": now_ms()}
        run.messages.append([event, data])
        if run.sid is not None or broadcast:
            await self.send(event, data, run.sid)

    async def _execute(self, run):
        self._interrupt_flag = False
        await self._message(run, "execution_start", {"prompt_id": run.prompt_id})
        signatures = self._signatures(run.prompt)
        if not self.cache_enabled:
            self._cache.clear()
        # Like the classic cache: only what the new prompt can use survives it.
        self._cache = {sig: value for sig, value in self._cache.items() if sig in signatures.values()}
        cached = [n for n in run.prompt if signatures[n] in self._cache]
        await self._message(run, "execution_cached", {"nodes": cached, "prompt_id": run.prompt_id})
        try:
            order = ExecutionList(
                run.prompt,
                lambda n: self.object_info[run.prompt[n]["class_type"]].get("output_node"),
                lambda n: signatures.get(n) in self._cache,
            )
            for output in run.outputs:
                order.add_node(output)
            while order.pending:
                node_id = order.stage()
                if node_id is None:
                    raise NodeFailed(next(iter(order.pending)), RuntimeError("Dependency cycle detected"), {})
                await self._execute_node(run, node_id, signatures)
                order.complete(node_id)
        except Interrupted as stop:
            node_id = str(stop)
            await self._message(
                run,
                "execution_interrupted",
                {
                    "prompt_id": run.prompt_id,
                    "node_id": node_id,
                    "node_type": run.prompt[node_id]["class_type"],
                    "executed": list(run.executed),
                },
                broadcast=True,
            )
            return
        except Exception as exc:  # a node failed, or the graph did (a link to a node that is not there)
            failure = exc if isinstance(exc, NodeFailed) else NodeFailed(run.outputs[0], exc, {})
            exc = failure.exc
            await self._message(
                run,
                "execution_error",
                {
                    "prompt_id": run.prompt_id,
                    "node_id": failure.node_id,
                    "node_type": run.prompt[failure.node_id]["class_type"],
                    "executed": list(run.executed),
                    "exception_message": f"{exc}\n",
                    "exception_type": full_type_name(type(exc)),
                    "traceback": traceback.format_tb(exc.__traceback__),
                    "current_inputs": {k: [describe(v)] for k, v in failure.inputs.items()},
                    "current_outputs": list(run.prompt),
                },
            )
            return
        await self._message(run, "execution_success", {"prompt_id": run.prompt_id})

    def _signatures(self, prompt) -> dict:
        """Cache keys like ComfyUI's input signature: class, inputs, and recursively the inputs'
        sources; the node id only for nodes taking UNIQUE_ID; a LoadImage changes with its file."""
        memo = {}

        def signature(node_id):
            if node_id not in memo:
                # Never equal to anything: a node in a cycle, or one that is not there, is not cached.
                memo[node_id] = f"uncachable:{uuid.uuid4()}"
                if node_id not in prompt:
                    return memo[node_id]
                node = prompt[node_id]
                info = self.object_info[node["class_type"]]
                parts = [node["class_type"], self._is_changed(node)]
                if "UNIQUE_ID" in (info["input"].get("hidden") or {}).values():
                    parts.append(node_id)
                for name in sorted(node.get("inputs", {})):
                    value = node["inputs"][name]
                    parts.append([name, ["ANCESTOR", signature(value[0]), value[1]] if is_link(value) else value])
                memo[node_id] = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
            return memo[node_id]

        return {node_id: signature(node_id) for node_id in prompt}

    def _is_changed(self, node) -> str:
        if node["class_type"] != "LoadImage":
            return ""
        try:
            return hashlib.sha256(
                nodes.resolve_annotated(node["inputs"]["image"], self.folders).read_bytes()
            ).hexdigest()
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    async def _progress_state(self, run, node_id, value, maximum, state):
        """ComfyUI's progress registry: every started node's state, resent on each change."""
        if state == "finished":  # the bar is filled to whatever its maximum was
            value = maximum = run.progress.get(node_id, {}).get("max", 1.0)
        run.progress[node_id] = {"value": value, "max": maximum, "state": state}
        await self.send(
            "progress_state",
            {
                "prompt_id": run.prompt_id,
                "nodes": {
                    n: {
                        **p,
                        "node_id": n,
                        "prompt_id": run.prompt_id,
                        "display_node_id": n,
                        "parent_node_id": None,
                        "real_node_id": n,
                    }
                    for n, p in run.progress.items()
                },
            },
            run.sid,
        )

    async def _progress(self, run, node_id, value, maximum, png=None):
        """The progress hook samplers call each step: where an interrupt takes effect."""
        if self._interrupt_flag:
            raise Interrupted(node_id)
        await self._progress_state(run, node_id, value, maximum, "running")
        with_metadata = bool(self._socket_flags.get(run.sid, {}).get("supports_preview_metadata"))
        if png and with_metadata:
            meta = json.dumps(
                {
                    "node_id": node_id,
                    "prompt_id": run.prompt_id,
                    "display_node_id": node_id,
                    "parent_node_id": None,
                    "real_node_id": node_id,
                    "image_type": "image/png",
                }
            ).encode()
            await self.send(
                PREVIEW_IMAGE_WITH_METADATA,
                struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + png,
                run.sid,
            )
        await self.send(
            "progress", {"value": value, "max": maximum, "prompt_id": run.prompt_id, "node": node_id}, run.sid
        )
        if png and not with_metadata:
            await self.send(PREVIEW_IMAGE, struct.pack(">II", PREVIEW_IMAGE, PNG_FORMAT) + png, run.sid)

    async def _execute_node(self, run, node_id, signatures):
        node = run.prompt[node_id]
        class_type, signature = node["class_type"], signatures[node_id]
        if signature in self._cache:
            # A cached output node: its earlier result is announced again, nothing is recomputed.
            _, ui = self._cache[signature]
            if run.sid is not None:
                await self.send(
                    "executed",
                    {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": run.prompt_id},
                    run.sid,
                )
            if ui:
                run.ui[node_id] = ui
            self.counters["nodes_cached"] += 1
            await self._progress_state(run, node_id, None, None, "finished")
            return
        await self._progress_state(run, node_id, 0.0, 1.0, "running")
        if run.sid is not None:
            self._last_node = node_id
            await self.send(
                "executing", {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id}, run.sid
            )
        if self._interrupt_flag:  # before_node_execution
            raise Interrupted(node_id)
        spec = self.object_info[class_type]["input"]
        declared = {**spec.get("required", {}), **spec.get("optional", {})}
        # V3 dynamic inputs arrive dotted (resize_type.width): they belong to a declared input.
        declared |= {name: None for name in node["inputs"] if name.split(".", 1)[0] in declared}
        # Like get_input_data: every link, but only the widget values the node declares.
        kwargs = {
            name: self._cache[signatures[value[0]]][0][value[1]] if is_link(value) else value
            for name, value in node["inputs"].items()
            if is_link(value) or name in declared
        }
        # The simulated work: a sampler's steps, each a chance to report progress and be interrupted.
        steps = self.steps
        for step in range(1, steps + 1):
            await asyncio.sleep(self.step_time)
            await self._progress(run, node_id, step, steps, _step_preview(step) if self.previews else None)
        function = nodes.NODES.get(class_type)
        ctx = nodes.Context(
            node_id,
            run.prompt,
            run.extra_data.get("extra_pnginfo"),
            self.folders,
            self._temp_prefixes.setdefault((node_id, class_type), nodes.random_temp_prefix()),
        )
        try:
            # Stand-ins: a class that needs models, or a model-free one fed a stand-in's
            # placeholder, yields placeholders; output nodes still write their file.
            if class_type in ("LoraLoader", "LoraLoaderModelOnly") and self.models_dir is not None:
                function = self._load_lora
            elif self.stand_ins and (
                function is None or (None in kwargs.values() and not self.object_info[class_type].get("output_node"))
            ):
                function = nodes.stand_in(self.object_info[class_type])
            if function is None:
                raise RuntimeError(f"{class_type} needs models: this SIMULATED ComfyUI runs model-free nodes only")
            outputs, ui = await asyncio.to_thread(function, ctx, **kwargs)
        except Exception as exc:
            raise NodeFailed(node_id, exc, kwargs) from exc
        for text in ctx.texts:
            # send_progress_text passes no sid: ComfyUI sends node text to every socket.
            body = node_id.encode()
            await self.send(TEXT, struct.pack(">II", TEXT, len(body)) + body + text.encode())
        for value, maximum, png in ctx.previews:
            await self._progress(run, node_id, value, maximum, png)
        if ui:
            run.ui[node_id] = ui
            if self.output_bytes:
                self._grow_files(ui)
            self.counters["files_written"] += sum(
                len(v) for v in ui.values() if isinstance(v, list) and v and isinstance(v[0], dict)
            )
            if run.sid is not None:
                await self.send(
                    "executed",
                    {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": run.prompt_id},
                    run.sid,
                )
        self._cache[signature] = (outputs, ui)
        run.executed.append(node_id)
        self.counters["nodes_executed"] += 1
        await self._progress_state(run, node_id, None, None, "finished")

    def _finish(self, run):
        """PromptQueue.task_done: the history entry (sensitive keys dropped, unlike in /queue)."""
        success = bool(run.messages) and run.messages[-1][0] == "execution_success"
        extra = {k: v for k, v in run.extra_data.items() if k not in SENSITIVE_EXTRA_DATA_KEYS}
        if len(self.history) >= MAX_HISTORY:
            self.history.pop(next(iter(self.history)))
        self.history[run.prompt_id] = {
            "prompt": [run.number, run.prompt_id, run.prompt, extra, run.outputs],
            "outputs": run.ui,
            "status": {"status_str": "success" if success else "error", "completed": success, "messages": run.messages},
            "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in run.ui},
        }
        self.counters["executed_prompts"] += 1


def json_handler(value):
    async def handler(request):
        return web.json_response(value)

    return handler


LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


@web.middleware
async def origin_check(request, handler):
    """ComfyUI's origin_only_middleware: with a loopback Host, an Origin naming another host:port
    is refused (a web page must not queue prompts on a local ComfyUI)."""
    host, origin = request.headers.get("Host"), request.headers.get("Origin")
    if host and origin:
        host_name = urllib.parse.urlsplit("//" + host.lower()).hostname
        if host_name in LOOPBACK or (host_name or "").startswith("127."):
            if urllib.parse.urlparse(origin).netloc.lower() != host.lower():
                return web.Response(status=403)
    return await handler(request)


def _step_preview(step: int) -> bytes:
    return nodes.png_bytes(Image.new("RGB", (16, 16), (step * 20 % 256, 64, 128)))


def _reencode(path, preview, channel) -> tuple[bytes, str]:
    """/view's `preview=webp;50` / `jpeg;90` and `channel=rgb|a`."""
    with Image.open(path) as image:
        if channel == "a":
            alpha = image.getchannel("A") if "A" in image.getbands() else Image.new("L", image.size, 255)
            image = Image.new("RGBA", image.size, (0, 0, 0, 0))
            image.putalpha(alpha)
        elif channel == "rgb":
            image = image.convert("RGB")
        buffer = io.BytesIO()
        fmt, quality = "png", 90
        if preview:
            fmt, _, level = preview.partition(";")
            fmt = fmt if fmt in ("webp", "jpeg") and "a" not in channel else "webp"
            quality = int(level) if level.isdigit() else quality
        (image.convert("RGB") if fmt == "jpeg" else image).save(buffer, format=fmt, quality=quality)
        return buffer.getvalue(), f"image/{fmt}"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m scripts.comfyui_double", description="A SIMULATED ComfyUI (no GPU; model-free nodes only)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--step-time", type=float, default=0.3, help="seconds per simulated step")
    parser.add_argument("--steps", type=int, default=8, help="progress steps per executed node")
    parser.add_argument("--output-dir", default=None, help="holds input/, output/, temp/ (default: a temporary folder)")
    parser.add_argument("--no-cache", action="store_true", help="like --cache-none: rerun every node")
    parser.add_argument("--previews", action="store_true", help="a binary preview frame per step")
    parser.add_argument("--object-info", default=None, help="advertise this recorded /object_info (.json[.gz])")
    # Run on its own it stands in for a supported GPU host (0.8.0's protocol, which the double
    # also speaks), so `workshop_doctor` and the console treat it as one.
    parser.add_argument("--comfyui-version", default=SIMULATED_VERSION, help="the release it reports")
    args = parser.parse_args(argv)
    double = ComfyUIDouble(
        step_time=args.step_time,
        steps=args.steps,
        output_dir=args.output_dir,
        host=args.host,
        port=args.port,
        cache=not args.no_cache,
        previews=args.previews,
        object_info=args.object_info,
        version=args.comfyui_version,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    double.start()
    print(
        f"SIMULATED ComfyUI {args.comfyui_version} (protocol double: no GPU, model-free nodes only) at {double.url}",
        flush=True,
    )
    stop.wait()
    double.stop()
