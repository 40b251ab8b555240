"""gpuworker on its own: it never needs Django, and it speaks ComfyUI's protocol (double)."""

import io
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from PIL import Image

from gpuworker.comfy import ComfyClient, ComfyValidationError
from gpuworker.throttle import ProgressThrottle
from scripts.comfyui_double import ComfyUIDouble

ROOT = Path(__file__).resolve().parent.parent
SIMPLE = json.loads((ROOT / "tests" / "workflows" / "simple.json").read_text())

BLOCK_DJANGO = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoDjango(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("django", "channels", "django_rq", "daphne"):
                raise ImportError(f"gpuworker must not import {name}")
            return None

    sys.meta_path.insert(0, NoDjango())
    """
)


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_gpuworker_imports_nothing_of_django():
    proof = run_python(BLOCK_DJANGO + "import django")
    assert proof.returncode != 0 and "must not import django" in proof.stderr, "the import blocker works"
    result = run_python(
        BLOCK_DJANGO
        + "import gpuworker, gpuworker.tasks, gpuworker.app, gpuworker.comfy, gpuworker.throttle, gpuworker.__main__\n"
        + "import gpuworker.catalog, gpuworker.cli, gpuworker.heartbeat, gpuworker.loop, gpuworker.providers\n"
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'channels')))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_gpuworker_cli_explains_missing_options():
    result = subprocess.run(
        [sys.executable, "-m", "gpuworker"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert (
        result.returncode == 2
        and "missing --redis, --app, --comfyui, --token-file (or GPUWORKER_TOKEN)" in result.stderr
    )


def test_the_token_is_never_an_argument_and_comes_from_the_environment_or_a_file(tmp_path, monkeypatch):
    from gpuworker.cli import parse

    base = ["--redis", "redis://x", "--app", "http://a", "--comfyui", "http://c"]
    with pytest.raises(SystemExit):
        parse([*base, "--token", "wt_secret"])
    token_file = tmp_path / "token"
    token_file.write_text("wt_from_file\n")
    assert parse([*base, "--token-file", str(token_file)]).token == "wt_from_file"
    monkeypatch.setenv("GPUWORKER_TOKEN", "wt_from_env")
    assert parse(base).token == "wt_from_env"


def test_a_running_worker_shows_no_token_in_its_command_line(live_app, participants, double):
    with live_app.gpu_worker(double.url) as proc:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert "gpuworker" in cmdline and "wt_" not in cmdline and "--token" not in cmdline


@pytest.fixture
def comfy():
    with ComfyUIDouble(step_time=0.01, steps=2) as double:
        yield double, ComfyClient(double.url)


def follow(socket, prompt_id, timeout=10):
    seen = []
    while True:
        message = socket.receive(timeout=timeout)
        assert message is not None, f"ComfyUI went quiet; saw {[m['type'] for m in seen]}"
        if message.get("data", {}).get("prompt_id") == prompt_id or message["type"] == "status":
            seen.append(message)
        if message["type"] in ("execution_success", "execution_error", "execution_interrupted"):
            return seen


def test_submit_follow_and_download_a_real_png(comfy):
    double, client = comfy
    socket = client.websocket()
    prompt_id = client.submit(SIMPLE, {}, socket.client_id)
    kinds = [m["type"] for m in follow(socket, prompt_id)]
    socket.close()
    assert (
        kinds.index("execution_start")
        < kinds.index("executing")
        < kinds.index("executed")
        < kinds.index("execution_success")
    )
    assert double.prompts[-1]["client_id"] == socket.client_id and "prompt_id" not in double.prompts[-1]
    output = client.history(prompt_id)["outputs"]["3"]["images"][0]
    png = b"".join(client.download(output, chunk_size=64))
    assert Image.open(io.BytesIO(png)).convert("RGB").getpixel((5, 5)) == (0, 255, 255)


def test_other_prompt_fields_reach_comfyui_but_never_a_prompt_id(comfy):
    """ "Queue selected output nodes" sends partial_execution_targets: ComfyUI must get it."""
    double, client = comfy
    client.submit(SIMPLE, {}, "c1", partial_execution_targets=["3"], prompt_id="chosen-by-someone")
    body = double.prompts[-1]
    assert body["partial_execution_targets"] == ["3"] and "prompt_id" not in body


def test_validation_error_carries_comfyuis_body(comfy):
    _, client = comfy
    with pytest.raises(ComfyValidationError) as caught:
        client.submit({"1": {"class_type": "NoSuchNode", "inputs": {}}}, {}, "c")
    assert caught.value.body["error"]["type"] == "invalid_prompt"
    assert "NoSuchNode does not exist" in str(caught.value)


def test_interrupt_stops_the_prompt(comfy):
    double, client = comfy
    double.steps, double.step_time = 500, 0.02
    socket = client.websocket()
    prompt_id = client.submit(SIMPLE, {}, socket.client_id)
    assert double.wait_running(5) == prompt_id
    client.interrupt(prompt_id)
    assert follow(socket, prompt_id)[-1]["type"] == "execution_interrupted"
    socket.close()


def test_upload_then_view_round_trip(comfy):
    double, client = comfy
    answer = client.upload_image("in.png", "sub", io.BytesIO(b"\x89PNG-bytes"))
    assert answer == {"name": "in.png", "subfolder": "sub", "type": "input"}
    item = {"filename": "in.png", "subfolder": "sub", "type": "input"}
    assert b"".join(client.download(item)) == b"\x89PNG-bytes"


def test_throttle_keeps_the_last_step_and_drops_bursts():
    clock = [0.0]
    throttle = ProgressThrottle(interval=0.25, clock=lambda: clock[0])
    msg = lambda v: {"type": "progress", "data": {"value": v, "max": 20, "node": "3"}}  # noqa: E731
    assert throttle.allow(msg(1))
    assert not throttle.allow(msg(2)), "too soon after the previous one"
    clock[0] = 0.3
    assert throttle.allow(msg(3))
    assert throttle.allow(msg(20)), "the final step always goes through"
    assert throttle.allow({"type": "executing", "data": {"node": "3"}}), "other messages are never throttled"


def test_throttle_never_drops_the_progress_state_that_ends_a_node():
    """A real ComfyUI's progress_state carries a `nodes` map, not a `node`: the frame in which
    the last node turns finished must reach the browser, or the UI keeps it marked running."""
    clock = [0.0]
    throttle = ProgressThrottle(interval=0.25, clock=lambda: clock[0])

    def state(**nodes):
        return {
            "type": "progress_state",
            "data": {
                "prompt_id": "p",
                "nodes": {k: {"state": v, "value": 1, "max": 2, "node_id": k} for k, v in nodes.items()},
            },
        }

    assert throttle.allow(state(a="running", b="pending"))
    assert not throttle.allow(state(a="running", b="pending")), "the same states again within 0.25 s: held back"
    assert throttle.allow(state(a="finished", b="running")), "a node changed state: sent at once"
    assert throttle.allow(state(a="finished", b="finished")), "the final all-finished frame is never dropped"
    assert not throttle.allow(state(a="finished", b="finished"))
    assert throttle.held() and not throttle.held(), "what was held back is handed over once before the end"


def test_double_cache_returns_the_earlier_file_like_comfyui(comfy):
    double, client = comfy
    names = []
    for _ in range(2):
        socket = client.websocket(uuid.uuid4().hex)
        prompt_id = client.submit(SIMPLE, {}, socket.client_id)
        seen = follow(socket, prompt_id)
        socket.close()
        names.append(client.history(prompt_id)["outputs"]["3"]["images"][0]["filename"])
    cached = [m for m in seen if m["type"] == "execution_cached"][0]
    assert cached["data"]["nodes"] == ["1", "2", "3"] and names[0] == names[1]


def test_double_follows_the_recorded_message_sequence(comfy):
    """The double's websocket sequence for the recorded model-free run matches real ComfyUI's."""
    recorded_path = ROOT / "tests" / "recorded" / "v0.3.64" / "transcripts.json"
    case = json.loads(recorded_path.read_text())["model_free_ok"]
    double, client = comfy
    socket = client.websocket()
    prompt_id = client.submit(case["request"]["prompt"], {}, socket.client_id)
    seen = follow(socket, prompt_id)
    socket.close()
    essential = {"execution_start", "execution_cached", "executing", "executed", "execution_success"}
    ours = [m["type"] for m in seen if m["type"] in essential]
    theirs = [m["type"] for m in case["ws"] if m["type"] in essential]
    assert ours == theirs
    ours_history = client.history(prompt_id)
    theirs_history = next(iter(case["history"].values()))
    assert set(ours_history) == set(theirs_history)
    assert ours_history["status"].keys() == theirs_history["status"].keys()
    assert [kind for kind, _ in ours_history["status"]["messages"]] == [
        k for k, _ in theirs_history["status"]["messages"]
    ]


def test_a_token_given_in_place_of_its_file_never_reaches_the_log():
    """`--token-file wt_…` (the token where its file's path belongs): the worker says what is
    wrong, and its message, which ends up in logs, does not hold the token."""
    token = "wt_" + "s3cr3t" * 7
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpuworker",
            "--redis",
            "redis://x",
            "--app",
            "http://a",
            "--comfyui",
            "http://c",
            "--token-file",
            token,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GPUWORKER_TOKEN": ""},
    )
    assert proc.returncode == 2
    assert token not in proc.stdout + proc.stderr
    assert "takes the path of a file that holds the token, not the token itself" in proc.stderr


def test_a_blueprint_that_cannot_be_fetched_is_not_offered_and_held_files_are_not_sent_again():
    """publish_catalog against the 0.28.0 double and an app that records what it is sent."""
    from gpuworker.catalog import catalog_of, publish_catalog
    from scripts.comfyui_double import ComfyUIDouble

    class App:
        def __init__(self):
            self.held, self.catalog = {}, None

        def published_files(self):
            return dict(self.held)

        def publish_file(self, path, content):
            import hashlib

            self.held[path] = hashlib.sha256(content).hexdigest()

        def publish_catalog(self, catalog):
            self.catalog = catalog

    with ComfyUIDouble(version="0.28.0", blueprints=5) as double:
        gone = next(iter(double.blueprints))
        comfy = ComfyClient(double.url)
        catalog = catalog_of(comfy, comfy.system_stats())
        del double.blueprints[gone]  # listed, then fails to fetch (ComfyUI answers null)
        app = App()
        publish_catalog(app, comfy, catalog)
        sent_first = len([path for path in app.held if path.startswith("/global_subgraphs/")])
        held = dict(app.held)
        app.publish_file = lambda path, content: pytest.fail(f"{path} sent again")
        publish_catalog(app, comfy, catalog)

    assert gone in catalog["global_subgraphs"] and gone not in app.catalog["global_subgraphs"]
    assert len(app.catalog["global_subgraphs"]) == 4 == sent_first and app.held == held
    assert f"/global_subgraphs/{gone}" not in app.catalog["files"]
    assert all("data" not in entry for entry in app.catalog["global_subgraphs"].values())
