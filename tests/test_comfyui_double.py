"""The ComfyUI protocol double answers like the recorded ComfyUI 0.3.64 (shared/comfyui/).

No Django, no Redis, no sleeping: every wait is on a websocket message or a threading event.
"""

import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from PIL import Image
from websockets.sync.client import connect

from scripts.comfyui_double import ComfyUIDouble
from tests.conftest import COMFYUI_NO_PROMPT

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "tests" / "recorded" / "v0.3.64" / "transcripts.json"
SIMPLE = json.loads((ROOT / "tests" / "workflows" / "simple.json").read_text())

# The recorded `model_free_ok` case: its prompt and the websocket message types seen (up to
# execution_success, where the recording stops).
MODEL_FREE_OK = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 2, "color": 16711680}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "capture"}},
    "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
}
MODEL_FREE_OK_TYPES = (
    ["status"] * 3
    + ["execution_start", "execution_cached"]
    + ["progress_state", "executing", "progress_state"]
    + ["progress_state", "executing", "executed", "progress_state"]
    + ["progress_state", "executing", "progress_state"]
    + ["progress_state", "executing", "executed", "progress_state", "execution_success"]
)


def failed(node_errors):
    return {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": node_errors,
    }


def missing(name):
    return {
        "type": "required_input_missing",
        "message": "Required input is missing",
        "details": name,
        "extra_info": {"input_name": name},
    }


def too_wide(value):
    return {
        "type": "value_bigger_than_max",
        "message": f"Value {value} bigger than max of 16384",
        "details": "width",
        "extra_info": {
            "input_name": "width",
            "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
            "received_value": value,
        },
    }


SAVE_X = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
# The recorded refusals (transcripts.json), and the one quoted in API_NOTES §2 (two outputs).
REFUSALS = {
    "unknown_node": (
        {"1": {"class_type": "NoSuchNode", "inputs": {}}, "2": SAVE_X},
        {
            "error": {
                "type": "invalid_prompt",
                "message": "Cannot execute because node NoSuchNode does not exist.",
                "details": "Node ID '#1'",
                "extra_info": {},
            },
            "node_errors": {},
        },
    ),
    "missing_input": (
        {"1": {"class_type": "EmptyImage", "inputs": {"width": 64}}, "2": SAVE_X},
        failed(
            {
                "1": {
                    "errors": [missing("color"), missing("height"), missing("batch_size")],
                    "dependent_outputs": ["2"],
                    "class_type": "EmptyImage",
                }
            }
        ),
    ),
    "value_out_of_range": (
        {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 999999, "height": 8, "batch_size": 1, "color": 0}},
            "2": SAVE_X,
        },
        failed({"1": {"errors": [too_wide(999999)], "dependent_outputs": ["2"], "class_type": "EmptyImage"}}),
    ),
    "no_output_node": (
        {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}},
        {
            "error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}},
            "node_errors": {},
        },
    ),
    "notes_invalid_missing_input": (
        {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 99999, "height": 64, "batch_size": 1}},
            "2": {"class_type": "ImageInvert", "inputs": {}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw_invalid"}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "gw_invalid_ok"}},
        },
        # Node 2 does not feed output 4 yet lists it: ComfyUI's dependent_outputs quirk.
        failed(
            {
                "2": {"errors": [missing("image")], "dependent_outputs": ["3", "4"], "class_type": "ImageInvert"},
                "1": {
                    "errors": [too_wide(99999), missing("color")],
                    "dependent_outputs": ["4"],
                    "class_type": "EmptyImage",
                },
            }
        ),
    ),
}


@pytest.fixture(autouse=True)
def own_data_dir():
    """Shadows conftest's autouse fixture, which needs Django's settings: the double needs none."""


@pytest.fixture(autouse=True)
def clean_redis():
    """Shadows conftest's autouse fixture: the double needs no Redis."""


@pytest.fixture
def comfy():
    with ComfyUIDouble(step_time=0.01, steps=0) as double:
        yield double


class Socket:
    """A /ws client: JSON messages as dicts, binary frames as bytes."""

    def __init__(self, double, client_id=None, path="/ws"):
        query = f"?clientId={client_id}" if client_id else ""
        self.ws = connect(double.url.replace("http", "ws", 1) + path + query).__enter__()
        self.hello = self.next()

    def next(self, timeout=5.0):
        raw = self.ws.recv(timeout=timeout)
        return raw if isinstance(raw, bytes) else json.loads(raw)

    def until(self, done, timeout=5.0) -> list:
        seen, deadline = [], time.monotonic() + timeout
        while True:
            seen.append(self.next(timeout=max(0.01, deadline - time.monotonic())))
            if not isinstance(seen[-1], bytes) and done(seen[-1]):
                return seen

    def until_finished(self, prompt_id, timeout=5.0) -> list:
        """Up to the `executing` with node null: ComfyUI's "this prompt is done" marker."""
        return self.until(
            lambda m: m["type"] == "executing" and m["data"]["node"] is None and m["data"]["prompt_id"] == prompt_id,
            timeout,
        )

    def quiet(self, timeout=0.2) -> bool:
        """Nothing arrives within `timeout`: for "this socket gets no message" checks."""
        try:
            self.ws.recv(timeout=timeout)
        except TimeoutError:
            return True
        return False

    def send(self, message):
        self.ws.send(json.dumps(message))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.ws.close()


def post(double, prompt, **body):
    return requests.post(double.url + "/prompt", json={"prompt": prompt, **body}, timeout=10)


def submit(double, prompt, **body) -> str:
    answer = post(double, prompt, **body)
    assert answer.status_code == 200, answer.text
    return answer.json()["prompt_id"]


def run(double, prompt, client_id="c"):
    with Socket(double, client_id) as ws:
        prompt_id = submit(double, prompt, client_id=client_id)
        return prompt_id, ws.until_finished(prompt_id)


def with_prefix(prefix):
    return {**SIMPLE, "3": {**SIMPLE["3"], "inputs": {**SIMPLE["3"]["inputs"], "filename_prefix": prefix}}}


def with_color(color):
    return {**SIMPLE, "1": {**SIMPLE["1"], "inputs": {**SIMPLE["1"]["inputs"], "color": color}}}


def types(messages):
    return [m["type"] for m in messages if not isinstance(m, bytes)]


def kinds(messages):
    """Message types, binary frames as "bin<event>"."""
    return [f"bin{int.from_bytes(m[:4], 'big')}" if isinstance(m, bytes) else m["type"] for m in messages]


def executed_outputs(messages):
    return {
        m["data"]["node"]: m["data"]["output"] for m in messages if not isinstance(m, bytes) and m["type"] == "executed"
    }


def history(double, prompt_id):
    return requests.get(f"{double.url}/history/{prompt_id}", timeout=10).json()[prompt_id]


def view(double, item, **params):
    return requests.get(double.url + "/view", params={**item, **params}, timeout=10)


def upload(double, name, data, **fields):
    return requests.post(
        double.url + "/upload/image", files={"image": (name, data, "image/png")}, data=fields, timeout=10
    )


def png(size, color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


# --- the recorded run ----------------------------------------------------------------------


def test_model_free_run_follows_the_recorded_message_sequence(comfy):
    with Socket(comfy, "client-a") as ws:
        answer = post(comfy, MODEL_FREE_OK, client_id="client-a")
        assert answer.status_code == 200 and set(answer.json()) == {"prompt_id", "number", "node_errors"}
        prompt_id = answer.json()["prompt_id"]
        seen = [ws.hello] + ws.until_finished(prompt_id)
    assert ws.hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "client-a"}}
    # Recorded up to execution_success; then `status` and the `executing` null clients wait for.
    assert types(seen) == MODEL_FREE_OK_TYPES + ["status", "executing"]
    assert [m["data"]["node"] for m in seen if m["type"] == "executing"] == ["1", "4", "2", "3", None]
    executed = {node: output["images"] for node, output in executed_outputs(seen).items()}
    assert [i["filename"] for i in executed["3"]] == ["capture_00001_.png", "capture_00002_.png"]
    assert [i["type"] for i in executed["4"]] == ["temp", "temp"]
    assert all(
        i["filename"].startswith("ComfyUI_temp_") and i["filename"].endswith(f"_0000{n}_.png")
        for n, i in enumerate(executed["4"], 1)
    )
    last_state = [m for m in seen if m["type"] == "progress_state"][-1]["data"]["nodes"]
    assert list(last_state) == ["1", "4", "2", "3"] and {n["state"] for n in last_state.values()} == {"finished"}
    assert last_state["3"] == {
        "value": 1.0,
        "max": 1.0,
        "state": "finished",
        "node_id": "3",
        "prompt_id": prompt_id,
        "display_node_id": "3",
        "parent_node_id": None,
        "real_node_id": "3",
    }

    entry = history(comfy, prompt_id)
    assert list(entry) == ["prompt", "outputs", "status", "meta"]
    number, pid, prompt, extra_data, outputs = entry["prompt"]
    assert (number, pid, prompt, extra_data) == (0, prompt_id, MODEL_FREE_OK, {"client_id": "client-a"})
    assert sorted(outputs) == ["3", "4"]
    assert entry["outputs"] == executed_outputs(seen)
    assert [kind for kind, _ in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert entry["meta"]["3"] == {"node_id": "3", "display_node": "3", "parent_node": None, "real_node_id": "3"}
    assert requests.get(comfy.url + "/queue", timeout=10).json() == {"queue_running": [], "queue_pending": []}


def test_the_embedded_facts_are_the_recorded_ones():
    recorded = json.loads(RECORDED.read_text())
    assert recorded["model_free_ok"]["request"]["prompt"] == MODEL_FREE_OK
    assert [m["type"] for m in recorded["model_free_ok"]["ws"]] == MODEL_FREE_OK_TYPES
    for case in ("unknown_node", "missing_input", "value_out_of_range", "no_output_node"):
        assert recorded[case]["request"]["prompt"] == REFUSALS[case][0]
        assert recorded[case]["response"] == {"status": 400, "body": REFUSALS[case][1]}


def test_each_step_reports_progress_and_previews_follow_the_feature_flags(comfy):
    comfy.steps, comfy.previews = 3, True
    with Socket(comfy, "old-client") as old, Socket(comfy, "new-client") as new:
        new.send({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        assert new.next() == {
            "type": "feature_flags",
            "data": {"supports_preview_metadata": True, "max_upload_size": 104857600},
        }
        first = submit(comfy, SIMPLE, client_id="old-client")
        seen = old.until_finished(first)
        second = submit(comfy, with_prefix("b"), client_id="new-client")  # nodes 1, 2 cached: only 3 runs
        seen_new = new.until_finished(second)
    # Each step: progress_state, progress, then (without the preview-metadata flag) binary event 1.
    node_1 = kinds(seen)[kinds(seen).index("executing") :]
    assert node_1[:12] == ["executing"] + ["progress_state", "progress", "bin1"] * 3 + ["progress_state"] * 2
    progress = [m["data"] for m in seen if not isinstance(m, bytes) and m["type"] == "progress"]
    assert progress[:3] == [{"value": v, "max": 3, "prompt_id": first, "node": "1"} for v in (1, 2, 3)]
    assert [p["node"] for p in progress] == ["1"] * 3 + ["2"] * 3 + ["3"] * 3
    finished = [m for m in seen if not isinstance(m, bytes) and m["type"] == "progress_state"][-1]["data"]["nodes"]
    assert {n: (s["value"], s["max"], s["state"]) for n, s in finished.items()} == {
        n: (3, 3, "finished") for n in ("1", "2", "3")
    }, "a finished bar is full at its own maximum"
    frame = next(m for m in seen if isinstance(m, bytes))
    assert frame[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x02" and frame[8:12] == b"\x89PNG", ">I 1, >I 2 (PNG), image"
    # With the flag: event 4 (>I 4, >I len, JSON metadata, image), sent before `progress`.
    node_3 = kinds(seen_new)[kinds(seen_new).index("executing") :]
    assert node_3[:4] == ["executing", "progress_state", "bin4", "progress"]
    frame = next(m for m in seen_new if isinstance(m, bytes))
    size = int.from_bytes(frame[4:8], "big")
    assert json.loads(frame[8 : 8 + size]) == {
        "node_id": "3",
        "prompt_id": second,
        "display_node_id": "3",
        "parent_node_id": None,
        "real_node_id": "3",
        "image_type": "image/png",
    }
    assert frame[8 + size : 12 + size] == b"\x89PNG"


def test_saved_png_is_real_and_red_inverted_is_cyan(comfy):
    with Socket(comfy, "c") as ws:
        prompt_id = submit(comfy, SIMPLE, client_id="c", extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}})
        ws.until_finished(prompt_id)
    item = history(comfy, prompt_id)["outputs"]["3"]["images"][0]
    assert item == {"filename": "gw_simple_00001_.png", "subfolder": "", "type": "output"}
    answer = view(comfy, item)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
    assert answer.headers["Content-Disposition"] == 'filename="gw_simple_00001_.png"'
    picture = Image.open(io.BytesIO(answer.content))
    assert picture.size == (256, 256) and picture.convert("RGB").getpixel((17, 200)) == (0, 255, 255)
    assert json.loads(picture.info["prompt"]) == SIMPLE and json.loads(picture.info["workflow"]) == {"nodes": []}
    assert (comfy.output_dir / "gw_simple_00001_.png").read_bytes() == answer.content


def test_several_outputs_subfolders_temp_text_and_animation(comfy):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 192, "height": 128, "batch_size": 2, "color": 255}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 5, "sigma": 2.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw_multi/blur"}},
        "4": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
        "7": {"class_type": "GetImageSize", "inputs": {"image": ["1", 0]}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["7", 0]}},
        "9": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": ["4", 0],
                "filename_prefix": "gw_multi_anim",
                "fps": 2.0,
                "lossless": True,
                "quality": 80,
                "method": "default",
            },
        },
    }
    idle = lambda m: m["type"] == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 0  # noqa: E731
    with Socket(comfy, "c") as ws, Socket(comfy, "bystander") as other:
        prompt_id = submit(comfy, prompt, client_id="c")
        seen = ws.until_finished(prompt_id)
        heard = other.until(idle)
    outputs = executed_outputs(seen)
    assert outputs["3"]["images"] == [
        {"filename": f"blur_0000{n}_.png", "subfolder": "gw_multi", "type": "output"} for n in (1, 2)
    ]
    assert outputs["8"] == {"text": ["192"]}
    assert outputs["9"]["animated"] == [True] and outputs["9"]["images"][0]["filename"] == "gw_multi_anim_00001_.webp"
    assert {i["type"] for i in outputs["6"]["images"]} == {"temp"}
    assert view(comfy, outputs["6"]["images"][0]).status_code == 200
    assert Image.open(io.BytesIO(view(comfy, outputs["3"]["images"][1]).content)).size == (192, 128)
    animation = Image.open(comfy.output_dir / "gw_multi_anim_00001_.webp")
    assert (animation.format, animation.size) == ("WEBP", (192, 128))  # two equal frames: the encoder merges them
    # GetImageSize's text: binary event 3 (>I 3, >I len(node id), node id, text), to every socket,
    # the bystander's too: ComfyUI's send_progress_text passes no client id.
    text = b"\x00\x00\x00\x03\x00\x00\x00\x017width: 192, height: 128\n batch size: 2"
    assert text in [m for m in seen if isinstance(m, bytes)] and text in [m for m in heard if isinstance(m, bytes)]
    assert types(heard) == ["status", "status", "status"], "a bystander hears queue counts and that text only"


def test_load_image_reads_the_input_folder(comfy):
    assert upload(comfy, "mine.png", png((32, 16), (10, 20, 30))).json() == {
        "name": "mine.png",
        "subfolder": "",
        "type": "input",
    }
    info = requests.get(comfy.url + "/object_info/LoadImage", timeout=10).json()
    assert info["LoadImage"]["input"]["required"]["image"] == [["mine.png"], {"image_upload": True}]
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "mine.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "from_input"}},
    }
    run(comfy, prompt)
    picture = Image.open(io.BytesIO(view(comfy, {"filename": "from_input_00001_.png", "type": "output"}).content))
    assert picture.size == (32, 16) and picture.convert("RGB").getpixel((0, 0)) == (245, 235, 225)
    upload(comfy, "mine.png", png((32, 16), (0, 0, 0)), overwrite="true")
    assert run(comfy, prompt)[1][3]["data"]["nodes"] == [], "a changed input file is not served from the cache"


# --- validation ----------------------------------------------------------------------------


def canonical(body):
    """ComfyUI walks a node's inputs as a set: the order of one node's errors varies by run."""
    body = json.loads(json.dumps(body))
    for node in body["node_errors"].values():
        node["errors"].sort(key=lambda e: (e["type"], e["details"]))
    return body


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_match_the_recorded_bodies(comfy, case):
    prompt, expected = REFUSALS[case]
    answer = post(comfy, prompt, client_id="c")
    assert answer.status_code == 400
    assert canonical(answer.json()) == canonical(expected)
    assert list(answer.json()["node_errors"]) == list(expected["node_errors"])


def test_number_counts_every_post_and_refusals_send_nothing(comfy):
    with Socket(comfy, "c") as ws:
        assert post(comfy, REFUSALS["unknown_node"][0]).status_code == 400
        no_prompt = requests.post(comfy.url + "/prompt", json={"client_id": "c"}, timeout=10)
        assert no_prompt.status_code == 400 and no_prompt.json() == COMFYUI_NO_PROMPT
        assert ws.quiet(), "a refused prompt produces no websocket message, not even status"
        answer = post(comfy, SIMPLE, client_id="c", prompt_id="my-own-id")
        assert answer.json() == {"prompt_id": "my-own-id", "number": 2, "node_errors": {}}
        seen = ws.until_finished("my-own-id")
    assert seen[0] == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}
    assert comfy.counters["posted"] == 3 and comfy.counters["rejected"] == 2
    assert comfy.prompts[1] == {"client_id": "c"}


def test_other_input_checks(comfy):
    def errors(prompt):
        answer = post(comfy, prompt)
        assert answer.status_code == 400, answer.text
        return {
            nid: [(e["type"], e["message"], e["details"]) for e in node["errors"]]
            for nid, node in answer.json()["node_errors"].items()
        }

    image = {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}}
    assert errors({"1": image, "2": SAVE_X}) == {
        "1": [("value_smaller_than_min", "Value 0 smaller than min of 1", "width")]
    }
    image["inputs"]["width"] = 8
    mask = {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "purple"}}
    assert errors(
        {
            "1": image,
            "2": mask,
            "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
        }
    ) == {
        "2": [("value_not_in_list", "Value not in list", "channel: 'purple' not in ['red', 'green', 'blue', 'alpha']")]
    }
    assert errors(
        {
            "1": image,
            "2": {**mask, "inputs": {"image": ["1", 0], "channel": "red"}},
            "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        }
    ) == {
        "3": [
            (
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                "images, received_type(MASK) mismatch input_type(IMAGE)",
            )
        ]
    }
    answer = post(comfy, {"1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}}, "2": SAVE_X})
    assert answer.json()["node_errors"]["1"]["errors"] == [
        {
            "type": "custom_validation_failed",
            "message": "Custom validation failed for node",
            "details": "image - Invalid image file: nope.png",
            "extra_info": {"input_name": "image"},
        }
    ]


def test_one_valid_output_is_enough_and_only_it_runs(comfy):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "good"}},
        "3": {"class_type": "ImageInvert", "inputs": {}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "bad"}},
    }
    with Socket(comfy, "c") as ws:
        answer = post(comfy, prompt, client_id="c")
        assert answer.status_code == 200
        assert answer.json()["node_errors"] == {
            "3": {"errors": [missing("image")], "dependent_outputs": ["4"], "class_type": "ImageInvert"}
        }
        seen = ws.until_finished(answer.json()["prompt_id"])
        assert list(executed_outputs(seen)) == ["2"]
        prompt["3"]["inputs"]["image"] = ["1", 0]
        answer = post(comfy, prompt, client_id="c", partial_execution_targets=["4"])  # "run selected outputs"
        assert answer.json()["node_errors"] == {}
        seen = ws.until_finished(answer.json()["prompt_id"])
    assert list(executed_outputs(seen)) == ["4"]


# --- errors, interrupt, queue ----------------------------------------------------------------


def test_runtime_error_is_reported_like_comfyui(comfy):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "alpha"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "gw_runtime_error"}},
    }
    prompt_id, seen = run(comfy, prompt)
    assert types(seen)[-3:] == ["execution_error", "status", "executing"]
    error = seen[-3]["data"]
    assert list(error) == [
        "prompt_id",
        "node_id",
        "node_type",
        "executed",
        "exception_message",
        "exception_type",
        "traceback",
        "current_inputs",
        "current_outputs",
        "timestamp",
    ]
    assert (error["node_id"], error["node_type"], error["executed"]) == ("2", "ImageToMask", ["1"])
    assert error["exception_type"] == "IndexError"
    assert error["exception_message"] == "index 3 is out of bounds for dimension 3 with size 3\n"
    assert error["current_inputs"]["channel"] == ["alpha"] and error["current_inputs"]["image"][0].startswith("tensor(")
    assert sorted(error["current_outputs"]) == ["1", "2", "3", "4"] and isinstance(error["traceback"], list)
    status = history(comfy, prompt_id)["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    assert status["messages"][-1] == ["execution_error", error]


def test_a_node_that_needs_models_fails_at_run_time(comfy):
    prompt = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    error = next(m for m in run(comfy, prompt)[1] if m["type"] == "execution_error")["data"]
    assert error["node_type"] == "EmptyLatentImage" and "SIMULATED" in error["exception_message"]


def test_a_link_validation_never_looks_at_fails_the_run_not_the_server(comfy):
    prompt = {**SIMPLE, "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0], "undeclared": ["99", 0]}}}
    error = next(m for m in run(comfy, prompt)[1] if m["type"] == "execution_error")["data"]
    assert error["exception_type"] == "KeyError"
    assert "execution_success" in types(run(comfy, SIMPLE)[1]), "the double keeps serving"


def test_interrupt_stops_the_running_prompt_within_a_step(comfy):
    comfy.steps, comfy.step_time = 1000, 0.02  # 20 s per node unless interrupted
    with Socket(comfy, "c") as ws:
        prompt_id = submit(comfy, SIMPLE, client_id="c")
        ws.until(lambda m: m["type"] == "progress")
        assert (
            requests.post(comfy.url + "/interrupt", json={"prompt_id": "someone-else"}, timeout=10).status_code == 200
        )
        ws.until(lambda m: m["type"] == "progress")  # another prompt's id left this one running
        asked = time.monotonic()
        requests.post(comfy.url + "/api/interrupt", json={"prompt_id": prompt_id}, timeout=10)
        seen = ws.until_finished(prompt_id)
        latency = time.monotonic() - asked
    assert latency < 0.5, f"interrupt took {latency:.2f} s with 0.02 s steps"
    assert types(seen)[-3:] == ["execution_interrupted", "status", "executing"]
    stopped = seen[-3]["data"]
    assert list(stopped) == ["prompt_id", "node_id", "node_type", "executed", "timestamp"]
    assert (stopped["node_id"], stopped["node_type"], stopped["executed"]) == ("1", "EmptyImage", [])
    assert history(comfy, prompt_id)["status"]["status_str"] == "error"
    assert [wanted for _, wanted in comfy.interrupts] == ["someone-else", prompt_id] and comfy.wait_interrupt(0)


def test_an_idle_interrupt_does_not_touch_the_next_prompt(comfy):
    assert requests.post(comfy.url + "/interrupt", timeout=10).status_code == 200
    assert "execution_success" in types(run(comfy, SIMPLE)[1])


def test_queue_order_front_delete_and_clear(comfy):
    comfy.steps, comfy.step_time = 1000, 0.02  # the first prompt holds the queue until interrupted
    first = submit(comfy, with_color(0), client_id="c")
    assert comfy.wait_started(first, 5) and comfy.wait_running(5) == first
    later = submit(comfy, with_color(1), client_id="c")
    jumper = submit(comfy, with_color(2), client_id="c", front=True, extra_data={"auth_token_comfy_org": "secret"})
    dropped = submit(comfy, with_color(3), client_id="c")
    queue = requests.get(comfy.url + "/queue", timeout=10).json()
    assert [item[1] for item in queue["queue_running"]] == [first]
    assert [item[:2] for item in queue["queue_pending"]] == [[-2, jumper], [1, later], [3, dropped]]
    assert queue["queue_pending"][0][3:] == [{"auth_token_comfy_org": "secret", "client_id": "c"}, ["3"]]
    assert requests.get(comfy.url + "/prompt", timeout=10).json() == {"exec_info": {"queue_remaining": 4}}
    requests.post(comfy.url + "/queue", json={"delete": [dropped, first]}, timeout=10)
    queue = requests.get(comfy.url + "/queue", timeout=10).json()
    assert [i[1] for i in queue["queue_running"]] == [first], "delete leaves the running prompt alone"
    assert [i[1] for i in queue["queue_pending"]] == [jumper, later]
    comfy.steps = 0
    requests.post(comfy.url + "/interrupt", json={"prompt_id": first}, timeout=10)
    assert comfy.wait_finished(later, 5)
    assert list(requests.get(comfy.url + "/history", timeout=10).json()) == [first, jumper, later]
    assert not comfy.wait_started(dropped, 0)
    assert "auth_token_comfy_org" not in history(comfy, jumper)["prompt"][3], "history drops comfy.org tokens"
    assert list(requests.get(comfy.url + "/history?max_items=1", timeout=10).json()) == [later]

    comfy.steps = 1000
    holder, cleared = submit(comfy, with_color(4)), submit(comfy, with_color(5))
    assert comfy.wait_started(holder, 5)
    requests.post(comfy.url + "/queue", json={"clear": True}, timeout=10)
    assert requests.get(comfy.url + "/queue", timeout=10).json()["queue_pending"] == []
    requests.post(comfy.url + "/interrupt", timeout=10)
    assert comfy.wait_finished(holder, 5) and not comfy.wait_started(cleared, 0)

    requests.post(comfy.url + "/history", json={"delete": [first]}, timeout=10)
    assert requests.get(f"{comfy.url}/history/{first}", timeout=10).json() == {}
    requests.post(comfy.url + "/history", json={"clear": True}, timeout=10)
    assert requests.get(comfy.url + "/history", timeout=10).json() == {}


def test_without_client_id_progress_goes_to_everyone_and_execution_events_to_no_one(comfy):
    comfy.steps = 1
    idle = lambda m: m["type"] == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 0  # noqa: E731
    with Socket(comfy, "a") as a, Socket(comfy, "b") as b:
        prompt_id = submit(comfy, SIMPLE)
        for seen in (a.until(idle), b.until(idle)):
            assert set(types(seen)) == {"status", "progress_state", "progress"}
            assert all(m["data"]["prompt_id"] == prompt_id for m in seen if m["type"] == "progress")
        submit(comfy, with_prefix("o"), client_id="a")
        assert "execution_success" in types(a.until(idle)) and set(types(b.until(idle))) == {"status"}


def test_a_socket_reconnecting_mid_run_hears_the_running_node(comfy):
    comfy.steps, comfy.step_time = 1000, 0.02
    with Socket(comfy, "tab") as first:
        prompt_id = submit(comfy, SIMPLE, client_id="tab")
        first.until(lambda m: m["type"] == "progress")
        with Socket(comfy, "tab") as again:
            # The node running now, without prompt_id, like ComfyUI's notice to a reconnecting client.
            assert again.until(lambda m: m["type"] == "executing")[-1] == {"type": "executing", "data": {"node": "1"}}
            requests.post(comfy.url + "/interrupt", timeout=10)
            assert "execution_interrupted" in types(again.until_finished(prompt_id))


def test_websocket_without_client_id_gets_a_uuid_and_api_prefix_works(comfy):
    with Socket(comfy, path="/api/ws") as ws:
        sid = ws.hello["data"]["sid"]
        assert len(sid) == 32 and int(sid, 16) >= 0
        ws.send({"type": "feature_flags", "data": {}})
        assert ws.next()["type"] == "feature_flags"
        ws.send({"type": "feature_flags", "data": {}})
        assert ws.quiet(), "only the first frame is taken as feature flags"


# --- cache -----------------------------------------------------------------------------------


def test_identical_prompt_is_served_from_the_cache_without_new_files(comfy):
    comfy.steps = 1
    run(comfy, SIMPLE, "alice")
    prompt_id, seen = run(comfy, SIMPLE, "bob")  # another user: the cache is server-wide
    assert types(seen) == [
        "status",
        "status",
        "execution_start",
        "execution_cached",
        "executed",
        "progress_state",
        "execution_success",
        "status",
        "executing",
    ]
    assert seen[3]["data"]["nodes"] == ["1", "2", "3"]
    assert executed_outputs(seen)["3"]["images"][0]["filename"] == "gw_simple_00001_.png"
    assert history(comfy, prompt_id)["outputs"]["3"]["images"][0]["filename"] == "gw_simple_00001_.png"
    assert sorted(os.listdir(comfy.output_dir)) == ["gw_simple_00001_.png"]
    _, seen = run(comfy, with_prefix("other"))
    assert seen[3]["data"]["nodes"] == ["1", "2"]
    assert [m["data"]["node"] for m in seen if m["type"] == "executing"] == ["3", None]
    _, seen = run(comfy, SIMPLE)
    assert seen[3]["data"]["nodes"] == ["1", "2"], "the classic cache keeps only what the last prompt used"
    assert comfy.counters["nodes_cached"] == 1
    requests.post(comfy.url + "/free", json={"free_memory": True}, timeout=10)
    assert run(comfy, SIMPLE)[1][3]["data"]["nodes"] == []


def test_cache_can_be_switched_off():
    with ComfyUIDouble(steps=0, cache=False) as double:
        run(double, SIMPLE)
        _, seen = run(double, SIMPLE)
        assert seen[3]["data"]["nodes"] == []
        assert sorted(os.listdir(double.output_dir)) == ["gw_simple_00001_.png", "gw_simple_00002_.png"]


# --- files ---------------------------------------------------------------------------------


def test_upload_and_view_round_trip_with_renames(comfy):
    assert upload(comfy, "up.png", b"first").json() == {"name": "up.png", "subfolder": "", "type": "input"}
    assert upload(comfy, "up.png", b"first").json()["name"] == "up.png", "same bytes: the same file"
    assert upload(comfy, "up.png", b"second").json()["name"] == "up (1).png"
    assert upload(comfy, "up.png", b"third").json()["name"] == "up (2).png"
    assert upload(comfy, "up.png", b"replaced", overwrite="true").json()["name"] == "up.png"
    assert upload(comfy, "x.png", b"sub", subfolder="gwsub", type="temp").json() == {
        "name": "x.png",
        "subfolder": "gwsub",
        "type": "temp",
    }
    item = {"filename": "up (1).png", "subfolder": "", "type": "input"}
    assert view(comfy, item).content == b"second" and view(comfy, item).headers["Content-Type"] == "image/png"
    assert view(comfy, {"filename": "up.png"}, type="input").content == b"replaced"
    assert view(comfy, {"filename": "x.png", "subfolder": "gwsub", "type": "temp"}).content == b"sub"
    assert view(comfy, {"filename": "up.png [input]", "type": "output"}).content == b"replaced", "annotated name"
    assert [u["name"] for u in comfy.uploads] == ["up.png", "up.png", "up (1).png", "up (2).png", "up.png", "x.png"]


def test_paths_outside_the_folders_are_refused(comfy):
    upload(comfy, "ok.png", b"ok")
    assert upload(comfy, "evil.png", b"x", subfolder="../../etc").status_code == 400
    assert requests.post(comfy.url + "/upload/image", data={"subfolder": ""}, timeout=10).status_code == 400
    assert view(comfy, {"filename": "../ok.png", "type": "input"}).status_code == 400
    assert view(comfy, {"filename": "passwd", "type": "input", "subfolder": "../../../../etc"}).status_code == 403
    assert view(comfy, {"filename": "nope.png", "type": "input"}).status_code == 404
    assert view(comfy, {"filename": "ok.png", "type": "models"}).status_code == 400
    assert not (comfy.input_dir.parent.parent / "etc" / "evil.png").exists()


def test_view_reencodes_previews(comfy):
    upload(comfy, "big.png", png((40, 30), (200, 10, 10)))
    answer = view(comfy, {"filename": "big.png", "type": "input"}, preview="webp;50")
    assert answer.headers["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(answer.content)).size == (40, 30)


# --- the rest of the surface -------------------------------------------------------------------


def test_read_only_routes_and_api_prefix(comfy):
    get = lambda path: requests.get(comfy.url + path, timeout=10)  # noqa: E731
    assert get("/api/object_info/ImageInvert").json() == {
        "ImageInvert": {
            "input": {"required": {"image": ["IMAGE"]}},
            "input_order": {"required": ["image"]},
            "output": ["IMAGE"],
            "output_is_list": [False],
            "output_name": ["IMAGE"],
            "name": "ImageInvert",
            "display_name": "Invert Image",
            "description": "",
            "python_module": "nodes",
            "category": "image",
            "output_node": False,
        }
    }
    assert get("/object_info/Nope").json() == {}
    assert {"EmptyImage", "SaveImage", "PreviewImage", "LoadImage", "KSampler"} <= set(get("/object_info").json())
    assert get("/system_stats").json()["system"]["comfyui_version"] == "0.3.64"
    assert get("/api/features").json() == {"supports_preview_metadata": True, "max_upload_size": 104857600}
    assert get("/embeddings").json() == [] and get("/models/checkpoints").json() == []
    assert get("/models").json()[:3] == ["checkpoints", "configs", "loras"] and get("/models/bogus").status_code == 404
    assert "/extensions/workshop-demo/demo.js" in get("/extensions").json()
    assert "registerExtension" in get("/extensions/workshop-demo/demo.js").text
    assert get("/workflow_templates").json() == {"workshop-demo": ["demo_example"]}
    assert get("/api/workflow_templates/workshop-demo/demo_example.json").json()["extra"] == {"demo": True}
    assert requests.post(comfy.url + "/free", json={"unload_models": True}, timeout=10).status_code == 200


def test_a_foreign_origin_is_refused_like_comfyui(comfy):
    foreign = requests.post(
        comfy.url + "/prompt", json={"prompt": SIMPLE}, headers={"Origin": "http://evil.example"}, timeout=10
    )
    same = requests.get(comfy.url + "/queue", headers={"Origin": comfy.url}, timeout=10)
    assert foreign.status_code == 403 and same.status_code == 200 and comfy.prompts == []


def test_command_line_runs_in_the_foreground_until_sigterm():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.comfyui_double", "--port", str(port), "--step-time", "0.01", "--steps", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        assert "SIMULATED ComfyUI" in line and "no GPU" in line and f"http://127.0.0.1:{port}" in line, line
        stats = requests.get(f"http://127.0.0.1:{port}/system_stats", timeout=10).json()
        # scripts/run's simulated GPU: a release workshop_doctor calls supported.
        assert stats["system"]["comfyui_version"] == "0.8.0" and "ComfyUI 0.8.0" in line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
