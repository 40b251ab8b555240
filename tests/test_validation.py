"""Prompt validation answers like ComfyUI 0.3.64 (recorded bodies), so the UI marks the node."""
import gzip
import json
from pathlib import Path

import pytest

from frontend_bridge.validation import input_files, output_node_ids, validate_prompt

HERE = Path(__file__).parent
SHARED = HERE.parent.parent / "shared" / "comfyui"
SUBSET = json.loads((HERE / "comfyui_object_info.json").read_text())


def full_object_info():
    path = SHARED / "object_info.json.gz"
    if not path.exists():
        pytest.skip("recorded ComfyUI object_info not present on this machine")
    return json.loads(gzip.open(path).read())


def transcripts():
    path = SHARED / "transcripts.json"
    if not path.exists():
        pytest.skip("recorded ComfyUI transcripts not present on this machine")
    return json.loads(path.read_text())


SIMPLE = json.loads((HERE / "workflows" / "simple.json").read_text())


@pytest.mark.parametrize("case", ["unknown_node", "missing_input", "value_out_of_range", "no_output_node"])
def test_recorded_refusals_are_reproduced_exactly(case):
    recorded = transcripts()[case]
    error, node_errors = validate_prompt(recorded["request"]["prompt"], full_object_info())
    assert recorded["response"]["status"] == 400
    assert canonical({"error": error, "node_errors": node_errors}) == canonical(recorded["response"]["body"])


def canonical(body):
    """ComfyUI walks a node's inputs as a Python set: the order of one node's errors is arbitrary."""
    body = json.loads(json.dumps(body))
    for node in body["node_errors"].values():
        node["errors"].sort(key=lambda e: (e["type"], e["details"]))
        node["dependent_outputs"].sort()
    return body


@pytest.mark.parametrize("name", ["simple", "multi_output", "ws_images", "slow", "runtime_error"])
def test_recorded_valid_workflows_pass(name):
    path = SHARED / "workflows" / f"{name}.json"
    if not path.exists():
        pytest.skip("recorded workflows not present")
    assert validate_prompt(json.loads(path.read_text()), full_object_info()) == (None, {})


def test_valid_prompt_against_the_subset():
    assert validate_prompt(SIMPLE, SUBSET) == (None, {})
    assert output_node_ids(SIMPLE, SUBSET) == ["3"]


def test_unknown_node_class():
    error, _ = validate_prompt({"7": {"class_type": "NoSuchNode", "inputs": {}}}, SUBSET)
    assert error == {"type": "invalid_prompt", "message": "Cannot execute because node NoSuchNode does not exist.",
                     "details": "Node ID '#7'", "extra_info": {}}


def test_missing_class_type():
    error, _ = validate_prompt({"1": {"inputs": {}}}, SUBSET)
    assert error["type"] == "invalid_prompt" and "class_type" in error["message"]


def test_no_output_node():
    error, _ = validate_prompt({"1": SIMPLE["1"]}, SUBSET)
    assert error["type"] == "prompt_no_outputs"


def test_out_of_range_value_names_the_node_and_input():
    prompt = json.loads(json.dumps(SIMPLE))
    prompt["1"]["inputs"]["width"] = 0
    error, node_errors = validate_prompt(prompt, SUBSET)
    assert error["type"] == "prompt_outputs_failed_validation"
    [problem] = node_errors["1"]["errors"]
    assert problem["type"] == "value_smaller_than_min" and problem["details"] == "width"
    assert node_errors["1"]["dependent_outputs"] == ["3"] and node_errors["1"]["class_type"] == "EmptyImage"


def test_wrong_link_type_is_a_return_type_mismatch():
    prompt = {
        "1": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 8}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    _, node_errors = validate_prompt(prompt, SUBSET)
    assert node_errors["2"]["errors"][0]["type"] == "return_type_mismatch"


def test_text_in_a_number_field():
    prompt = json.loads(json.dumps(SIMPLE))
    prompt["1"]["inputs"]["height"] = "tall"
    _, node_errors = validate_prompt(prompt, SUBSET)
    assert node_errors["1"]["errors"][0]["type"] == "invalid_input_type"


def test_without_a_catalog_only_structure_is_checked():
    assert validate_prompt({"1": {"class_type": "Anything", "inputs": {}}}, None) == (None, {})
    error, _ = validate_prompt({"1": {"class_type": "A", "inputs": {"x": ["9", 0]}}}, None)
    assert error["type"] == "invalid_prompt"
    assert validate_prompt("not a prompt", None)[0]["type"] == "invalid_prompt"


def test_input_files_of_load_image_nodes():
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "pets/dog.png [input]"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "gw_00001_.png [output]"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    assert input_files(prompt, SUBSET) == [
        {"filename": "cat.png", "subfolder": "", "type": "input"},
        {"filename": "dog.png", "subfolder": "pets", "type": "input"},
        {"filename": "gw_00001_.png", "subfolder": "", "type": "output"},
    ]
    assert validate_prompt(prompt, SUBSET) == (None, {}), "upload inputs are checked against the workspace instead"


def test_input_files_are_found_before_any_catalog_exists():
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    assert input_files(prompt, None) == [{"filename": "cat.png", "subfolder": "", "type": "input"}]
