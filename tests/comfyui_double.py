"""A ComfyUI protocol double: a real HTTP + websocket server that speaks ComfyUI 0.3.64's
protocol (as recorded in the shared ComfyUI transcripts and read in its server.py/execution.py)
and really computes a few model-free nodes, so the GPU worker and the platform can be tested
end to end on a machine with no GPU and no ComfyUI.

    with ComfyUIDouble(step_time=0.05, steps=4) as comfy:
        comfy.url  # http://127.0.0.1:<port>

`python -m tests.comfyui_double --port 8188` runs it as a SIMULATED GPU for trying the platform.
"""
import argparse
import asyncio
import io
import json
import os
import random
import signal
import string
import struct
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

from aiohttp import WSMsgType, web
from PIL import Image, ImageFilter, ImageOps, PngImagePlugin

OBJECT_INFO = json.loads((Path(__file__).with_name("comfyui_object_info.json")).read_text())
VERSION = "0.3.64"
FRONTEND_VERSION = "1.27.10"
FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}


# A custom node pack's frontend files, as ComfyUI serves them from the pack's web folder.
DEMO_EXTENSION = {
    "/extensions/workshop-demo/demo.js": 'import { app } from "../../scripts/app.js";\n'
                                         'import { hello } from "./lib/helper.js";\n'
                                         'app.registerExtension({ name: "workshop.demo", setup() { hello(); } });\n',
    "/extensions/workshop-demo/lib/helper.js": "export function hello() { return 'demo'; }\n",
}
DEMO_EXTENSION_LISTED = ["/extensions/workshop-demo/demo.js"]


def _preview_png(step: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (step * 20 % 256, 64, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def now_ms() -> int:
    return int(time.time() * 1000)


class Interrupted(Exception):
    pass


class NodeFailure(Exception):
    def __init__(self, node_id, class_type, exc, executed, inputs):
        super().__init__(str(exc))
        self.node_id, self.class_type, self.exc, self.executed, self.inputs = node_id, class_type, exc, executed, inputs


# --- model-free nodes, computed for real with Pillow ---------------------------------------


def _rgb(color: int):
    return ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)


class Nodes:
    """Each node returns (outputs tuple, ui dict or None). Images are lists of PIL images."""

    def __init__(self, double):
        self.double = double

    def EmptyImage(self, width, height, batch_size=1, color=0):
        return ([Image.new("RGB", (width, height), _rgb(color)) for _ in range(batch_size)],), None

    def ImageInvert(self, image):
        return ([ImageOps.invert(im.convert("RGB")) for im in image],), None

    def ImageBlur(self, image, blur_radius=1, sigma=1.0):
        return ([im.filter(ImageFilter.GaussianBlur(radius=sigma)) for im in image],), None

    def SolidMask(self, value, width, height):
        return ([Image.new("L", (width, height), int(max(0.0, min(1.0, value)) * 255))],), None

    def JoinImageWithAlpha(self, image, alpha):
        out = []
        for n, im in enumerate(image):
            mask = alpha[min(n, len(alpha) - 1)].resize(im.size)
            rgba = im.convert("RGB")
            rgba.putalpha(ImageOps.invert(mask))
            out.append(rgba)
        return (out,), None

    def ImageToMask(self, image, channel):
        index = ["red", "green", "blue", "alpha"].index(channel)
        bands = image[0].getbands()
        if index >= len(bands):
            # What torch says for image[:, :, :, 3] on an RGB tensor.
            raise IndexError(f"index {index} is out of bounds for dimension 3 with size {len(bands)}")
        return ([im.getchannel(index) for im in image],), None

    def GetImageSize(self, image):
        width, height = image[0].size
        return (width, height, len(image)), None

    def PreviewAny(self, source):
        return (), {"text": [str(source)]}

    def LoadImage(self, image):
        name, _, kind = image.partition(" [")
        folder = {"output]": self.double.output_dir, "temp]": self.double.temp_dir}.get(kind, self.double.input_dir)
        path = Path(folder) / name
        im = Image.open(path)
        im.load()
        mask = im.getchannel("A") if "A" in im.getbands() else Image.new("L", im.size, 0)
        return ([im.convert("RGB")], [mask]), None

    def SaveImage(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        return (), {"images": self.double.save_images(images, filename_prefix, "output", prompt, extra_pnginfo)}

    def PreviewImage(self, images, prompt=None, extra_pnginfo=None):
        prefix = "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        return (), {"images": self.double.save_images(images, prefix, "temp", prompt, extra_pnginfo)}


# --- the server ------------------------------------------------------------------------------


class ComfyUIDouble:
    def __init__(self, step_time=0.02, steps=3, output_dir=None, host="127.0.0.1", port=0, cache=True,
                 previews=False):
        self.previews = previews  # like --preview-method auto: a binary preview frame per step
        self.step_time = step_time
        self.steps = steps
        self.cache_enabled = cache
        self.host, self.port = host, port
        self._tmp = None
        if output_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="comfyui-double-")
            output_dir = self._tmp.name
        base = Path(output_dir)
        self.output_dir, self.input_dir, self.temp_dir = base / "output", base / "input", base / "temp"
        for d in (self.output_dir, self.input_dir, self.temp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.url = None
        self.prompts: list[dict] = []  # every POST /prompt body
        self.interrupts: list[tuple[float, str | None]] = []
        self.uploads: list[dict] = []
        self._interrupt_event = threading.Event()
        self._running_event = threading.Event()
        self.running_prompt_id = None
        self.number = 0
        self.queue: list[list] = []
        self.history: dict[str, dict] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._cache: dict[str, tuple] = {}  # node id -> (signature, outputs, ui)
        self._counters: dict[tuple, int] = {}
        self._loop = None
        self._thread = None
        self._started = threading.Event()
        self._interrupt_flag = False
        self.nodes = Nodes(self)

    # --- lifecycle ---

    def start(self):
        self._thread = threading.Thread(target=self._run, name="comfyui-double", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("ComfyUI double did not start")
        return self

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _serve(self):
        self._wake = asyncio.Event()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self._worker = asyncio.ensure_future(self._prompt_worker())
        self._started.set()

    def stop(self):
        if self._loop and self._loop.is_running():
            async def shutdown():
                self._worker.cancel()
                for ws in list(self.sockets.values()):
                    await ws.close()
                self._loop.stop()

            asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
            self._thread.join(10)
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- what tests wait on (events, not sleeps) ---

    def wait_interrupt(self, timeout=5.0) -> bool:
        return self._interrupt_event.wait(timeout)

    def wait_running(self, timeout=5.0) -> str | None:
        return self.running_prompt_id if self._running_event.wait(timeout) else None

    # --- routes ---

    def app(self):
        app = web.Application(client_max_size=FEATURES["max_upload_size"])
        routes = [
            ("GET", "/ws", self.ws),
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
            ("GET", "/object_info", self.object_info),
            ("GET", "/object_info/{node_class}", self.object_info),
            ("GET", "/system_stats", self.system_stats),
            ("GET", "/features", self.static_json(FEATURES)),
            ("GET", "/embeddings", self.static_json([])),
            ("GET", "/extensions", self.static_json(["/extensions/core/groupNode.js", *DEMO_EXTENSION_LISTED])),
            ("GET", "/extensions/{pack}/{file:.+}", self.extension_file),
            ("GET", "/workflow_templates", self.static_json({"workshop-demo": ["demo_example"]})),
            ("GET", "/workflow_templates/{module}/{file}", self.template_file),
            ("GET", "/models", self.static_json(["checkpoints", "loras", "vae"])),
            ("GET", "/models/{folder}", self.models_in),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        return app

    @staticmethod
    def static_json(value):
        async def handler(request):
            return web.json_response(value)

        return handler

    async def system_stats(self, request):
        return web.json_response(
            {
                "system": {
                    "os": "posix", "ram_total": 1 << 34, "ram_free": 1 << 33, "comfyui_version": VERSION,
                    "required_frontend_version": FRONTEND_VERSION, "python_version": "3.12",
                    "pytorch_version": "simulated", "embedded_python": False, "argv": ["main.py", "--simulated"],
                },
                "devices": [{"name": "Simulated GPU (ComfyUI protocol double)", "type": "cpu", "index": 0,
                             "vram_total": 0, "vram_free": 0, "torch_vram_total": 0, "torch_vram_free": 0}],
            }
        )

    async def template_file(self, request):
        if (request.match_info["module"], request.match_info["file"]) != ("workshop-demo", "demo_example.json"):
            return web.Response(status=404)
        return web.json_response({"nodes": [], "links": [], "version": 0.4, "extra": {"demo": True}})

    async def extension_file(self, request):
        path = f"/extensions/{request.match_info['pack']}/{request.match_info['file']}"
        if path not in DEMO_EXTENSION:
            return web.Response(status=404)
        return web.Response(text=DEMO_EXTENSION[path], content_type="text/javascript")

    async def models_in(self, request):
        if request.match_info["folder"] not in ("checkpoints", "loras", "vae"):
            return web.Response(status=404)
        return web.json_response([])

    async def object_info(self, request):
        node_class = request.match_info.get("node_class")
        info = json.loads(json.dumps(OBJECT_INFO))
        files = sorted(p.name for p in self.input_dir.iterdir() if p.is_file())
        info["LoadImage"]["input"]["required"]["image"][0] = files
        if node_class is None:
            return web.json_response(info)
        return web.json_response({node_class: info[node_class]} if node_class in info else {})

    # --- websocket ---

    async def ws(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws
        try:
            await ws.send_json({"type": "status", "data": {"status": self._status(), "sid": sid}})
            if self.running_prompt_id and self._running_client == sid and self._running_node:
                await ws.send_json({"type": "executing", "data": {"node": self._running_node}})
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        continue
                    if isinstance(data, dict) and data.get("type") == "feature_flags":
                        await ws.send_json({"type": "feature_flags", "data": FEATURES})
        finally:
            # Like the real server: the older socket's close unregisters the sid.
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws

    def _status(self):
        return {"exec_info": {"queue_remaining": len(self.queue) + (1 if self.running_prompt_id else 0)}}

    async def send(self, kind, data, sid=None):
        message = json.dumps({"type": kind, "data": data})
        targets = [self.sockets[sid]] if sid in self.sockets else ([] if sid else list(self.sockets.values()))
        for ws in targets:
            if not ws.closed:
                await ws.send_str(message)

    async def send_status(self):
        await self.send("status", {"status": self._status()})

    # --- prompt ---

    async def post_prompt(self, request):
        self.number += 1  # counted on every POST, rejected ones too, like the real one
        number = self.number - 1
        try:
            body = await request.json()
        except ValueError:
            body = {}
        self.prompts.append(body)
        if "prompt" not in body:
            return self._invalid("no_prompt", "No prompt provided", "No prompt provided")
        prompt = body["prompt"]
        error, node_errors, outputs = self.validate(prompt)
        if error:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        if body.get("front"):
            number = -number
        self.queue.append([number, prompt_id, prompt, extra, outputs])
        self.queue.sort(key=lambda item: item[0])
        self._wake.set()
        await self.send_status()
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    def _invalid(self, kind, message, details=""):
        return web.json_response(
            {"error": {"type": kind, "message": message, "details": details, "extra_info": {}}, "node_errors": {}},
            status=400,
        )

    def validate(self, prompt):
        """ComfyUI's validate_prompt for the checks the double needs."""
        for node_id, node in prompt.items():
            if "class_type" not in node:
                return ({"type": "invalid_prompt", "message": "Cannot execute because a node is missing the class_type property.",
                         "details": f"Node ID '#{node_id}'", "extra_info": {}}, {}, [])
            if node["class_type"] not in OBJECT_INFO:
                return ({"type": "invalid_prompt", "message": f"Cannot execute because node {node['class_type']} does not exist.",
                         "details": f"Node ID '#{node_id}'", "extra_info": {}}, {}, [])
        outputs = [nid for nid, node in prompt.items() if OBJECT_INFO[node["class_type"]].get("output_node")]
        if not outputs:
            return ({"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, {}, [])
        node_errors = {}
        for node_id, node in prompt.items():
            errors = []
            spec = OBJECT_INFO[node["class_type"]]["input"].get("required", {})
            for name, config in spec.items():
                value = node.get("inputs", {}).get(name)
                if name not in node.get("inputs", {}):
                    errors.append({"type": "required_input_missing", "message": "Required input is missing",
                                   "details": name, "extra_info": {"input_name": name}})
                    continue
                if isinstance(value, list) or len(config) < 2 or not isinstance(config[1], dict):
                    continue
                opts = config[1]
                if "min" in opts and isinstance(value, (int, float)) and value < opts["min"]:
                    errors.append({"type": "value_smaller_than_min", "message": f"Value {value} smaller than min of {opts['min']}",
                                   "details": name, "extra_info": {"input_name": name, "input_config": config, "received_value": value}})
                if "max" in opts and isinstance(value, (int, float)) and value > opts["max"]:
                    errors.append({"type": "value_bigger_than_max", "message": f"Value {value} bigger than max of {opts['max']}",
                                   "details": name, "extra_info": {"input_name": name, "input_config": config, "received_value": value}})
            if errors:
                node_errors[node_id] = {"errors": errors, "dependent_outputs": [], "class_type": node["class_type"]}
        if node_errors:
            for out in outputs:
                for nid in self._ancestors(prompt, out):
                    if nid in node_errors:
                        node_errors[nid]["dependent_outputs"].append(out)
            return ({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                     "details": "", "extra_info": {}}, node_errors, [])
        return None, {}, outputs

    def _ancestors(self, prompt, node_id, seen=None):
        seen = seen if seen is not None else []
        if node_id in seen or node_id not in prompt:
            return seen
        seen.append(node_id)
        for value in prompt[node_id].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                self._ancestors(prompt, value[0], seen)
        return seen

    async def get_prompt(self, request):
        return web.json_response({"exec_info": self._status()["exec_info"]})

    async def get_queue(self, request):
        running = [self._running_item] if self.running_prompt_id else []
        return web.json_response({"queue_running": running, "queue_pending": list(self.queue)})

    async def post_queue(self, request):
        body = await request.json()
        if body.get("clear"):
            self.queue.clear()
        for prompt_id in body.get("delete", []):
            self.queue = [item for item in self.queue if item[1] != prompt_id]
        return web.Response()

    async def get_history(self, request):
        prompt_id = request.match_info.get("prompt_id")
        if prompt_id:
            return web.json_response({prompt_id: self.history[prompt_id]} if prompt_id in self.history else {})
        items = list(self.history.items())
        max_items = int(request.query.get("max_items", 0) or 0)
        if max_items:
            items = items[-max_items:]
        return web.json_response(dict(items))

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
        if self.running_prompt_id and (wanted is None or wanted == self.running_prompt_id):
            self._interrupt_flag = True
            self._interrupt_event.set()
        return web.Response()

    async def free(self, request):
        return web.Response()

    # --- files ---

    def _folder(self, kind):
        return {"output": self.output_dir, "input": self.input_dir, "temp": self.temp_dir}.get(kind)

    async def view(self, request):
        filename = request.query.get("filename", "")
        if not filename or filename.startswith("/") or ".." in filename:
            return web.Response(status=400)
        folder = self._folder(request.query.get("type", "output"))
        if folder is None:
            return web.Response(status=400)
        base = folder.resolve()
        path = (base / request.query.get("subfolder", "") / filename).resolve()
        if not path.is_relative_to(base):
            return web.Response(status=403)
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)

    async def upload_image(self, request):
        form = await request.post()
        image = form.get("image")
        if image is None or not getattr(image, "filename", None):
            return web.Response(status=400)
        folder = self._folder(form.get("type", "input") or "input")
        subfolder = form.get("subfolder", "") or ""
        if folder is None:
            return web.Response(status=400)
        target_dir = (folder / subfolder).resolve()
        if not target_dir.is_relative_to(folder.resolve()):
            return web.Response(status=400)
        target_dir.mkdir(parents=True, exist_ok=True)
        name = os.path.basename(image.filename)
        data = image.file.read()
        overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
        path = target_dir / name
        if path.exists() and not overwrite and path.read_bytes() != data:
            stem, ext = os.path.splitext(name)
            n = 1
            while path.exists():
                name = f"{stem} ({n}){ext}"
                path = target_dir / name
                n += 1
        path.write_bytes(data)
        self.uploads.append({"name": name, "subfolder": subfolder, "size": len(data)})
        return web.json_response({"name": name, "subfolder": subfolder, "type": form.get("type", "input") or "input"})

    def save_images(self, images, prefix, kind, prompt, extra_pnginfo):
        subfolder, _, base = prefix.rpartition("/")
        folder = self._folder(kind) / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        results = []
        for im in images:
            key = (kind, subfolder, base)
            counter = self._counters.get(key, len(list(folder.glob(f"{base}_*_.png")))) + 1
            self._counters[key] = counter
            name = f"{base}_{counter:05}_.png"
            meta = PngImagePlugin.PngInfo()
            if prompt is not None:
                meta.add_text("prompt", json.dumps(prompt))
            for k, v in (extra_pnginfo or {}).items():
                meta.add_text(k, json.dumps(v))
            im.save(folder / name, pnginfo=meta)
            results.append({"filename": name, "subfolder": subfolder, "type": kind})
        return results

    # --- execution ---

    async def _prompt_worker(self):
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self.queue.pop(0)
            await self._execute(item)

    def _execution_order(self, prompt, outputs):
        """Like ComfyUI's ux_friendly_pick_node: a ready output node runs as soon as it can."""
        pending = []
        for out in outputs:
            for nid in reversed(self._ancestors(prompt, out)):
                if nid not in pending:
                    pending.append(nid)
        deps = {
            nid: {v[0] for v in prompt[nid].get("inputs", {}).values()
                  if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)}
            for nid in pending
        }
        order = []
        while pending:
            ready = [nid for nid in pending if deps[nid] <= set(order)]
            pick = next((nid for nid in ready if nid in outputs), ready[0])
            order.append(pick)
            pending.remove(pick)
        return order

    def _signature(self, prompt, node_id, memo):
        if node_id not in memo:
            node = prompt[node_id]
            parts = []
            for name, value in sorted(node.get("inputs", {}).items()):
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    parts.append((name, self._signature(prompt, value[0], memo), value[1]))
                else:
                    parts.append((name, json.dumps(value, sort_keys=True)))
            memo[node_id] = json.dumps([node["class_type"], parts])
        return memo[node_id]

    async def _execute(self, item):
        number, prompt_id, prompt, extra, outputs = item
        sid = extra.get("client_id")
        self.running_prompt_id, self._running_item, self._running_client = prompt_id, item, sid
        self._running_node = None
        self._interrupt_flag = False
        self._running_event.set()
        messages = []

        async def emit(kind, data, broadcast_without_sid=True):
            await self.send(kind, data, sid)
            if kind in ("execution_start", "execution_cached", "execution_success", "execution_error", "execution_interrupted"):
                messages.append([kind, data])

        await self.send_status()
        await emit("execution_start", {"prompt_id": prompt_id, "timestamp": now_ms()})
        order = self._execution_order(prompt, outputs)
        memo = {}
        cached = [nid for nid in order if self.cache_enabled and self._cache.get(nid, (None,))[0] == self._signature(prompt, nid, memo)]
        await emit("execution_cached", {"nodes": cached, "prompt_id": prompt_id, "timestamp": now_ms()})
        values, ui_outputs, executed, status = {}, {}, [], "success"
        try:
            for nid in order:
                node = prompt[nid]
                signature = self._signature(prompt, nid, memo)
                if nid in cached:
                    _, values[nid], ui = self._cache[nid]
                    if ui:
                        ui_outputs[nid] = ui
                        await emit("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id})
                    continue
                self._running_node = nid
                await emit("progress_state", {"prompt_id": prompt_id, "nodes": {nid: {"value": 0.0, "max": 1.0, "state": "running",
                           "node_id": nid, "prompt_id": prompt_id, "display_node_id": nid, "parent_node_id": None, "real_node_id": nid}}})
                await emit("executing", {"node": nid, "display_node": nid, "prompt_id": prompt_id})
                for step in range(1, self.steps + 1):
                    if self._interrupt_flag:
                        raise Interrupted(nid)
                    await asyncio.sleep(self.step_time)
                    await emit("progress", {"value": step, "max": self.steps, "prompt_id": prompt_id, "node": nid})
                    if self.previews and sid in self.sockets:
                        await self.sockets[sid].send_bytes(struct.pack(">II", 1, 2) + _preview_png(step))
                if self._interrupt_flag:
                    raise Interrupted(nid)
                kwargs = {}
                for name, value in node.get("inputs", {}).items():
                    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                        kwargs[name] = values[value[0]][value[1]]
                    else:
                        kwargs[name] = value
                if node["class_type"] in ("SaveImage", "PreviewImage"):
                    kwargs.update(prompt=prompt, extra_pnginfo=extra.get("extra_pnginfo"))
                try:
                    implementation = getattr(self.nodes, node["class_type"], None)
                    if implementation is None:
                        # Advertised (the default graph uses it) but needs models: a simulated GPU has none.
                        raise RuntimeError(f"{node['class_type']} needs models; the simulated GPU runs model-free nodes only")
                    result, ui = implementation(**kwargs)
                except Exception as exc:
                    raise NodeFailure(nid, node["class_type"], exc, list(executed), kwargs) from exc
                values[nid] = result
                self._cache[nid] = (signature, result, ui)
                executed.append(nid)
                if ui:
                    ui_outputs[nid] = ui
                    await emit("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id})
            await emit("execution_success", {"prompt_id": prompt_id, "timestamp": now_ms()})
        except Interrupted as stop:
            status = "error"
            nid = str(stop)
            await emit("execution_interrupted", {"prompt_id": prompt_id, "node_id": nid, "node_type": prompt[nid]["class_type"],
                                                 "executed": cached + executed, "timestamp": now_ms()})
        except NodeFailure as failure:
            status = "error"
            await emit("execution_error", {
                "prompt_id": prompt_id, "node_id": failure.node_id, "node_type": failure.class_type,
                "executed": cached + failure.executed, "exception_message": f"{failure.exc}\n",
                "exception_type": type(failure.exc).__name__,
                "traceback": traceback.format_exception(failure.exc),
                "current_inputs": {k: [repr(v)[:80]] for k, v in failure.inputs.items()},
                "current_outputs": list(order), "timestamp": now_ms(),
            })
        self.history[prompt_id] = {
            "prompt": item, "outputs": ui_outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
            "meta": {nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid} for nid in ui_outputs},
        }
        self.running_prompt_id = self._running_node = None
        self._running_event.clear()
        await self.send_status()
        await self.send("executing", {"node": None, "prompt_id": prompt_id}, sid)


def main(argv=None):
    parser = argparse.ArgumentParser(description="A SIMULATED ComfyUI (no GPU; model-free nodes only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--step-time", type=float, default=0.3, help="seconds per simulated sampling step")
    parser.add_argument("--steps", type=int, default=8, help="progress steps per node")
    parser.add_argument("--output-dir", default=None)
    args = parser.parse_args(argv)
    double = ComfyUIDouble(step_time=args.step_time, steps=args.steps, output_dir=args.output_dir, host=args.host, port=args.port)
    double.start()
    print(f"SIMULATED ComfyUI {VERSION} (protocol double: no GPU, model-free nodes only) at {double.url}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    double.stop()


if __name__ == "__main__":
    main()
