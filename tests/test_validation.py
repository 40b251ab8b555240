"""frontend_bridge.validation answers like ComfyUI 0.3.64's validate_prompt (recorded bodies).

Pure tests: no database, no Redis. The recorded references (ComfyUI 0.3.64, 0.8.0 and 0.28.0)
are kept in tests/recorded/ (COMFYUI_REFERENCE names another 0.3.64 folder); the rest run
against the catalog subset embedded below.
Run: .venv/bin/python -m pytest -p no:django tests/test_validation.py -q
"""

import ast
import copy
import gzip
import json
import os
import random
import sys
from pathlib import Path

import pytest

from frontend_bridge import validation
from frontend_bridge.validation import input_files, output_node_ids, parse_annotated_name, validate_prompt

# What real ComfyUI servers answered, kept with the tests (copies of the project's shared
# recordings) so that every run, CI's included, replays them: 0.3.64 at the top, then 0.8.0 and
# 0.28.0. COMFYUI_REFERENCE names another folder of the same shape.
RECORDED = Path(__file__).resolve().parent / "recorded"
REFERENCE = Path(os.environ.get("COMFYUI_REFERENCE") or RECORDED / "v0.3.64")
V080 = RECORDED / "v0.8.0"


@pytest.fixture(autouse=True)
def own_data_dir():
    """Replaces conftest's Django/Redis fixtures: these tests touch neither."""


@pytest.fixture(autouse=True)
def clean_redis():
    """Replaces conftest's Django/Redis fixtures: these tests touch neither."""


# Entries of the recorded ComfyUI 0.3.64 object_info (input, output, output_node; tooltips left
# out), checked against the full catalog by test_embedded_subset_matches_the_recorded_catalog.
SUBSET = {
    "EmptyImage": {
        "input": {
            "required": {
                "width": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "height": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}],
                "color": ["INT", {"default": 0, "min": 0, "max": 16777215, "step": 1, "display": "color"}],
            },
        },
        "output": ["IMAGE"],
        "output_node": False,
    },
    "ImageInvert": {
        "input": {
            "required": {
                "image": ["IMAGE"],
            },
        },
        "output": ["IMAGE"],
        "output_node": False,
    },
    "ImageBlur": {
        "input": {
            "required": {
                "image": ["IMAGE", {}],
                "blur_radius": ["INT", {"default": 1, "min": 1, "max": 31, "step": 1}],
                "sigma": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}],
            },
        },
        "output": ["IMAGE"],
        "output_node": False,
    },
    "ImageToMask": {
        "input": {
            "required": {
                "image": ["IMAGE"],
                "channel": [["red", "green", "blue", "alpha"]],
            },
        },
        "output": ["MASK"],
        "output_node": False,
    },
    "SolidMask": {
        "input": {
            "required": {
                "value": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
                "width": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "height": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
            },
        },
        "output": ["MASK"],
        "output_node": False,
    },
    "GetImageSize": {
        "input": {
            "required": {
                "image": ["IMAGE"],
            },
            "hidden": {
                "unique_id": "UNIQUE_ID",
            },
        },
        "output": ["INT", "INT", "INT"],
        "output_node": False,
    },
    "ImageCompositeMasked": {
        "input": {
            "required": {
                "destination": ["IMAGE"],
                "source": ["IMAGE"],
                "x": ["INT", {"default": 0, "min": 0, "max": 16384, "step": 1}],
                "y": ["INT", {"default": 0, "min": 0, "max": 16384, "step": 1}],
                "resize_source": ["BOOLEAN", {"default": False}],
            },
            "optional": {
                "mask": ["MASK"],
            },
        },
        "output": ["IMAGE"],
        "output_node": False,
    },
    "LatentCut": {
        "input": {
            "required": {
                "samples": ["LATENT", {}],
                "dim": ["COMBO", {"multiselect": False, "options": ["x", "y", "t"]}],
                "index": ["INT", {"default": 0, "min": -16384, "max": 16384, "step": 1}],
                "amount": ["INT", {"default": 1, "min": 1, "max": 16384, "step": 1}],
            },
        },
        "output": ["LATENT"],
        "output_node": False,
    },
    "KSampler": {
        "input": {
            "required": {
                "model": ["MODEL", {}],
                "seed": [
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 18446744073709551615,
                        "control_after_generate": True,
                    },
                ],
                "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
                "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
                "sampler_name": [
                    [
                        "euler",
                        "euler_cfg_pp",
                        "euler_ancestral",
                        "euler_ancestral_cfg_pp",
                        "heun",
                        "heunpp2",
                        "dpm_2",
                        "dpm_2_ancestral",
                        "lms",
                        "dpm_fast",
                        "dpm_adaptive",
                        "dpmpp_2s_ancestral",
                        "dpmpp_2s_ancestral_cfg_pp",
                        "dpmpp_sde",
                        "dpmpp_sde_gpu",
                        "dpmpp_2m",
                        "dpmpp_2m_cfg_pp",
                        "dpmpp_2m_sde",
                        "dpmpp_2m_sde_gpu",
                        "dpmpp_2m_sde_heun",
                        "dpmpp_2m_sde_heun_gpu",
                        "dpmpp_3m_sde",
                        "dpmpp_3m_sde_gpu",
                        "ddpm",
                        "lcm",
                        "ipndm",
                        "ipndm_v",
                        "deis",
                        "res_multistep",
                        "res_multistep_cfg_pp",
                        "res_multistep_ancestral",
                        "res_multistep_ancestral_cfg_pp",
                        "gradient_estimation",
                        "gradient_estimation_cfg_pp",
                        "er_sde",
                        "seeds_2",
                        "seeds_3",
                        "sa_solver",
                        "sa_solver_pece",
                        "ddim",
                        "uni_pc",
                        "uni_pc_bh2",
                    ],
                    {},
                ],
                "scheduler": [
                    [
                        "simple",
                        "sgm_uniform",
                        "karras",
                        "exponential",
                        "ddim_uniform",
                        "beta",
                        "normal",
                        "linear_quadratic",
                        "kl_optimal",
                    ],
                    {},
                ],
                "positive": ["CONDITIONING", {}],
                "negative": ["CONDITIONING", {}],
                "latent_image": ["LATENT", {}],
                "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
            },
        },
        "output": ["LATENT"],
        "output_node": False,
    },
    "SaveImage": {
        "input": {
            "required": {
                "images": ["IMAGE", {}],
                "filename_prefix": ["STRING", {"default": "ComfyUI"}],
            },
            "hidden": {
                "prompt": "PROMPT",
                "extra_pnginfo": "EXTRA_PNGINFO",
            },
        },
        "output": [],
        "output_node": True,
    },
    "PreviewImage": {
        "input": {
            "required": {
                "images": ["IMAGE"],
            },
            "hidden": {
                "prompt": "PROMPT",
                "extra_pnginfo": "EXTRA_PNGINFO",
            },
        },
        "output": [],
        "output_node": True,
    },
    "PreviewAny": {
        "input": {
            "required": {
                "source": ["*", {}],
            },
        },
        "output": [],
        "output_node": True,
    },
    "LoadImage": {
        "input": {
            "required": {
                "image": [["example.png"], {"image_upload": True}],
            },
        },
        "output": ["IMAGE", "MASK"],
        "output_node": False,
    },
    "LoadImageOutput": {
        "input": {
            "required": {
                "image": [
                    "COMBO",
                    {
                        "image_upload": True,
                        "image_folder": "output",
                        "remote": {
                            "route": "/internal/files/output",
                            "refresh_button": True,
                            "control_after_refresh": "first",
                        },
                    },
                ],
            },
        },
        "output": ["IMAGE", "MASK"],
        "output_node": False,
    },
    "LoadVideo": {
        "input": {
            "required": {
                "file": ["COMBO", {"multiselect": False, "options": [], "video_upload": True}],
            },
        },
        "output": ["VIDEO"],
        "output_node": False,
    },
}

# Test-only classes (not in the recorded catalog) for shapes the subset lacks.
SYNTHETIC = {
    "MultiSink": {  # an output node with a comma-separated input type and optional widgets
        "input": {
            "required": {"data": ["IMAGE,MASK"]},
            "optional": {
                "label": ["STRING", {"default": ""}],
                "strength": ["FLOAT", {"min": 0.0, "max": 1.0}],
                "enabled": ["BOOLEAN", {"default": True}],
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        },
        "output": [],
        "output_node": True,
    },
    "AnySource": {"input": {"required": {}}, "output": ["*"], "output_node": False},
    "TextSource": {"input": {"required": {}}, "output": ["STRING"], "output_node": False},
    "LegacyFileLoader": {
        "input": {"required": {"file": [["a.bin"], {"upload": True}]}},
        "output": ["FILE"],
        "output_node": False,
    },
}
CATALOG = {**SUBSET, **SYNTHETIC}

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 256, "batch_size": 1, "color": 16711680}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw_simple"}},
}


@pytest.fixture(autouse=True)
def simple_is_left_alone():
    """Tests share SIMPLE and CATALOG: one that changed them would mislead the next."""
    before = copy.deepcopy((SIMPLE, CATALOG))
    yield
    assert (SIMPLE, CATALOG) == before


FAILED = {
    "type": "prompt_outputs_failed_validation",
    "message": "Prompt outputs failed validation",
    "details": "",
    "extra_info": {},
}


def simple(**changes):
    """SIMPLE with some inputs of node 1 (EmptyImage) replaced; None removes the input."""
    prompt = copy.deepcopy(SIMPLE)
    for name, value in changes.items():
        if value is None:
            del prompt["1"]["inputs"][name]
        else:
            prompt["1"]["inputs"][name] = value
    return prompt


def errors_of(prompt, node_id, catalog=CATALOG):
    error, node_errors = validate_prompt(prompt, catalog)
    assert error is not None and error["type"] == "prompt_outputs_failed_validation", error
    return node_errors[node_id]["errors"]


def full_object_info():
    return json.loads(gzip.decompress((REFERENCE / "object_info.json.gz").read_bytes()))


def reference_json(relative):
    return json.loads((REFERENCE / relative).read_text())


def canonical(body):
    """ComfyUI walks a node's inputs as a Python set, so the order of one node's errors is
    arbitrary (the recording has color, height, batch_size); everything else must be equal."""
    body = json.loads(json.dumps(body))
    for node in body["node_errors"].values():
        node["errors"].sort(key=lambda e: (e["type"], e["details"]))
    return body


# --- the recorded ComfyUI answers ---------------------------------------------------------


@pytest.mark.parametrize("case", ["unknown_node", "missing_input", "value_out_of_range", "no_output_node"])
def test_recorded_refusals_are_reproduced_exactly(case):
    recorded = reference_json("transcripts.json")[case]
    assert recorded["response"]["status"] == 400
    error, node_errors = validate_prompt(recorded["request"]["prompt"], full_object_info())
    assert canonical({"error": error, "node_errors": node_errors}) == canonical(recorded["response"]["body"])


def test_recorded_refusal_of_two_outputs_lists_an_output_under_every_failed_node():
    """runs/invalid_missing_input.json: node 2 is listed with outputs 3 and 4, though output 4
    does not depend on it: ComfyUI appends each failing output to every node failed so far."""
    run = reference_json("runs/invalid_missing_input.json")
    prompt = reference_json("workflows/invalid_missing_input.json")
    error, node_errors = validate_prompt(prompt, full_object_info())
    assert run["post_prompt"]["status"] == 400
    assert canonical({"error": error, "node_errors": node_errors}) == canonical(run["post_prompt"]["response"])


@pytest.mark.parametrize("name", ["simple", "multi_output", "ws_images", "slow", "runtime_error"])
def test_recorded_valid_workflows_pass(name):
    prompt = reference_json(f"workflows/{name}.json")
    assert validate_prompt(prompt, full_object_info()) == (None, {})


def test_recorded_valid_prompt_of_the_transcripts_passes():
    recorded = reference_json("transcripts.json")["model_free_ok"]
    assert recorded["response"]["status"] == 200
    assert validate_prompt(recorded["request"]["prompt"], full_object_info()) == (None, {})


V0280 = RECORDED / "v0.28.0"
# Each release tried: where its recordings are, and its catalog (the double carries 0.28.0's too).
RELEASES = {
    "0.8.0": (V080, [V080 / "object_info.json.gz"]),
    "0.28.0": (
        V0280,
        [
            V0280 / "object_info.json.gz",
            Path(__file__).parent.parent / "scripts" / "comfyui_double" / "object_info_0.28.0.json.gz",
        ],
    ),
}


def answers_of(release):
    return json.loads((RELEASES[release][0] / "validation_answers.json").read_text())


def catalog_of(release):
    path = next(p for p in RELEASES[release][1] if p.exists())
    return json.loads(gzip.decompress(path.read_bytes()))


@pytest.mark.parametrize(
    "release, name",
    [(release, name) for release in RELEASES for name in sorted(answers_of(release))],
)
def test_every_recorded_answer_is_reproduced_with_its_releases_catalog(release, name):
    """POST /prompt of a real ComfyUI, no model files and no input files: 200 with the same
    node_errors where it accepted (valid outputs only run), 400 with the same body where not.
    Each release answers as it did (P15, an unknown class, is missing_node_type in 0.28.0 where
    0.8.0 said invalid_prompt)."""
    case = answers_of(release)[name]
    recorded = case[f"comfyui_{release}"]
    error, node_errors = validate_prompt(
        case["prompt"], catalog_of(release), file_exists=lambda item: False, version=release
    )
    if recorded["status"] == 200:
        assert error is None
        assert canonical({"node_errors": node_errors}) == canonical({"node_errors": recorded["body"]["node_errors"]})
    else:
        assert recorded["status"] == 400
        assert canonical({"error": error, "node_errors": node_errors}) == canonical(recorded["body"])


@pytest.mark.parametrize("release", RELEASES)
def test_the_recordings_of_each_release_are_all_there(release):
    assert len(answers_of(release)) == 17


@pytest.mark.parametrize(
    "version, kind",
    [
        ("0.8.0", "invalid_prompt"),
        ("0.11.9", "invalid_prompt"),
        ("0.12.0", "missing_node_type"),
        ("0.38.1", "missing_node_type"),
    ],
)
def test_an_unknown_class_is_answered_as_the_gpu_hosts_release_answers(version, kind):
    prompt = {"7": {"class_type": "NoSuchNode", "inputs": {}, "_meta": {"title": "My node"}}}
    error, _ = validate_prompt(prompt, CATALOG, version=version)
    assert error["type"] == kind
    if kind == "missing_node_type":
        assert error["message"] == "Node 'My node' not found. The custom node may not be installed."
        assert error["extra_info"] == {"node_id": "7", "class_type": "NoSuchNode", "node_title": "My node"}
    no_class = validate_prompt({"3": {"inputs": {}}}, CATALOG, version=version)[0]
    assert no_class["type"] == kind and no_class["details"] == "Node ID '#3'"


def test_embedded_subset_matches_the_recorded_catalog():
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "tooltip"}
        return [strip(v) for v in x] if isinstance(x, list) else x

    real = full_object_info()
    for name, entry in SUBSET.items():
        assert strip({key: real[name][key] for key in entry}) == entry, name


def test_the_same_refusal_of_two_outputs_against_the_subset():
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 99999, "height": 64, "batch_size": 1}},
        "2": {"class_type": "ImageInvert", "inputs": {}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw_invalid"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "gw_invalid_ok"}},
    }
    width = ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}]
    assert canonical(dict(zip(("error", "node_errors"), validate_prompt(prompt, CATALOG), strict=True))) == canonical(
        {
            "error": FAILED,
            "node_errors": {
                "2": {
                    "errors": [
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": "image",
                            "extra_info": {"input_name": "image"},
                        }
                    ],
                    "dependent_outputs": ["3", "4"],
                    "class_type": "ImageInvert",
                },
                "1": {
                    "errors": [
                        {
                            "type": "value_bigger_than_max",
                            "message": "Value 99999 bigger than max of 16384",
                            "details": "width",
                            "extra_info": {"input_name": "width", "input_config": width, "received_value": 99999},
                        },
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": "color",
                            "extra_info": {"input_name": "color"},
                        },
                    ],
                    "dependent_outputs": ["4"],
                    "class_type": "EmptyImage",
                },
            },
        }
    )


# --- prompt-level refusals ------------------------------------------------------------------


def test_valid_prompt():
    assert validate_prompt(SIMPLE, CATALOG) == (None, {})


@pytest.mark.parametrize("prompt", [None, [], "prompt", 3, [SIMPLE]])
def test_prompt_that_is_not_an_object(prompt):
    error, node_errors = validate_prompt(prompt, CATALOG)
    assert error["type"] == "invalid_prompt" and set(error) == {"type", "message", "details", "extra_info"}
    assert node_errors == {}


@pytest.mark.parametrize("node", [{"inputs": {}}, "EmptyImage", None, ["EmptyImage"]])
def test_node_without_class_type(node):
    prompt = {**SIMPLE, "7": node}
    assert validate_prompt(prompt, CATALOG) == (
        {
            "type": "invalid_prompt",
            "message": "Cannot execute because a node is missing the class_type property.",
            "details": "Node ID '#7'",
            "extra_info": {},
        },
        {},
    )


def test_unknown_class_names_the_first_such_node():
    prompt = {"5": {"class_type": "NoSuchNode", "inputs": {}}, **SIMPLE, "7": {"class_type": "Other", "inputs": {}}}
    assert validate_prompt(prompt, CATALOG) == (
        {
            "type": "invalid_prompt",
            "message": "Cannot execute because node NoSuchNode does not exist.",
            "details": "Node ID '#5'",
            "extra_info": {},
        },
        {},
    )


def test_unknown_class_is_found_even_in_a_node_no_output_uses():
    prompt = {**SIMPLE, "9": {"class_type": "Missing", "inputs": {}}}
    assert validate_prompt(prompt, CATALOG)[0]["message"] == "Cannot execute because node Missing does not exist."


@pytest.mark.parametrize("prompt", [{}, {"1": SIMPLE["1"], "2": SIMPLE["2"]}])
def test_no_output_node(prompt):
    assert validate_prompt(prompt, CATALOG) == (
        {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}},
        {},
    )


def test_partial_execution_targets_narrow_the_outputs():
    prompt = {
        **SIMPLE,
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    }  # bad: no filename_prefix
    assert validate_prompt(prompt, CATALOG, ["3", "4"]) == (None, {})
    assert validate_prompt(prompt, CATALOG, ["5"])[0]["type"] == "prompt_outputs_failed_validation"
    # ComfyUI tests `id in targets`: ids of other types, or non-outputs, select nothing.
    for targets in ([3], ["1"], []):
        assert validate_prompt(prompt, CATALOG, targets)[0]["type"] == "prompt_no_outputs"
    assert output_node_ids(prompt, CATALOG, ["4", "1"]) == ["4"]


def test_inputs_that_are_not_an_object_are_refused():
    prompt = copy.deepcopy(SIMPLE)
    prompt["2"]["inputs"] = [["1", 0]]
    error, node_errors = validate_prompt(prompt, CATALOG)
    assert error["type"] == "invalid_prompt" and error["details"] == "Node ID '#2'" and node_errors == {}
    del prompt["2"]["inputs"]  # no key at all: ComfyUI's own KeyError, on the node (SEEN_ON_0280)
    error, node_errors = validate_prompt(prompt, CATALOG)
    assert (
        error["type"] == "prompt_outputs_failed_validation" and node_errors["2"]["errors"][0]["details"] == "'inputs'"
    )


# --- per-node errors ----------------------------------------------------------------------------


def test_required_input_missing():
    assert errors_of(simple(height=None), "1") == [
        {
            "type": "required_input_missing",
            "message": "Required input is missing",
            "details": "height",
            "extra_info": {"input_name": "height"},
        }
    ]


def test_missing_optional_and_hidden_inputs_are_fine():
    prompt = {
        "1": SIMPLE["1"],
        "2": {"class_type": "MultiSink", "inputs": {"data": ["1", 0]}},
        "3": {
            "class_type": "ImageCompositeMasked",
            "inputs": {"destination": ["1", 0], "source": ["1", 0], "x": 0, "y": 0, "resize_source": False},
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }
    assert validate_prompt(prompt, CATALOG) == (None, {})


def test_optional_inputs_are_validated_when_given():
    prompt = {"1": SIMPLE["1"], "2": {"class_type": "MultiSink", "inputs": {"data": ["1", 0], "strength": 2}}}
    assert errors_of(prompt, "2") == [
        {
            "type": "value_bigger_than_max",
            "message": "Value 2.0 bigger than max of 1.0",
            "details": "strength",
            "extra_info": {
                "input_name": "strength",
                "input_config": ["FLOAT", {"min": 0.0, "max": 1.0}],
                "received_value": 2.0,
            },
        }
    ]


def test_undeclared_inputs_are_ignored():
    assert validate_prompt(simple(extra="anything", seed=["9", 0]), CATALOG) == (None, {})


def test_bad_linked_input():
    prompt = copy.deepcopy(SIMPLE)
    prompt["2"]["inputs"]["image"] = ["1", 0, 0]
    assert errors_of(prompt, "2") == [
        {
            "type": "bad_linked_input",
            "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
            "details": "image",
            "extra_info": {"input_name": "image", "input_config": ["IMAGE", {}], "received_value": ["1", 0, 0]},
        }
    ]


def test_link_to_a_node_that_is_not_in_the_prompt():
    """ComfyUI raises KeyError reading the link: the node holding it is reported by its caller."""
    prompt = copy.deepcopy(SIMPLE)
    prompt["2"]["inputs"]["image"] = ["99", 0]
    error, node_errors = validate_prompt(prompt, CATALOG)
    assert error == {**FAILED}
    assert node_errors == {
        "2": {
            "errors": [
                {
                    "type": "exception_during_inner_validation",
                    "message": "Exception when validating inner node",
                    "details": "'99'",
                    "extra_info": {
                        "input_name": "images",
                        "input_config": ["IMAGE", {}],
                        "exception_message": "'99'",
                        "exception_type": "KeyError",
                        "traceback": [],
                        "linked_node": ["2", 0],
                    },
                }
            ],
            "dependent_outputs": ["3"],
            "class_type": "ImageInvert",
        }
    }


def test_output_linking_to_a_missing_node_or_slot():
    prompt = copy.deepcopy(SIMPLE)
    prompt["3"]["inputs"]["images"] = ["99", 0]
    error, node_errors = validate_prompt(prompt, CATALOG)
    assert error == {**FAILED, "details": "Exception when validating node: '99'"}
    assert node_errors == {
        "3": {
            "errors": [
                {
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": "'99'",
                    "extra_info": {"exception_type": "KeyError", "traceback": []},
                }
            ],
            "dependent_outputs": ["3"],
            "class_type": "SaveImage",
        }
    }

    prompt["3"]["inputs"]["images"] = ["2", 1]  # ImageInvert has one output
    assert validate_prompt(prompt, CATALOG)[1]["3"]["errors"][0]["details"] == "tuple index out of range"
    prompt["3"]["inputs"]["images"] = ["2", "0"]
    assert validate_prompt(prompt, CATALOG)[1]["3"]["errors"][0]["extra_info"]["exception_type"] == "TypeError"


def test_return_type_mismatch():
    prompt = {
        "1": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 8}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    assert errors_of(prompt, "2") == [
        {
            "type": "return_type_mismatch",
            "message": "Return type mismatch between linked nodes",
            "details": "images, received_type(MASK) mismatch input_type(IMAGE)",
            "extra_info": {
                "input_name": "images",
                "input_config": ["IMAGE", {}],
                "received_type": "MASK",
                "linked_node": ["1", 0],
            },
        }
    ]


def test_link_types_that_match():
    prompt = {
        "1": SIMPLE["1"],
        "2": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 8}},
        "3": {"class_type": "MultiSink", "inputs": {"data": ["2", 0]}},  # MASK into "IMAGE,MASK"
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},  # anything into "*"
        "5": {"class_type": "AnySource", "inputs": {}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "x"}},  # "*" into IMAGE
        "7": {"class_type": "GetImageSize", "inputs": {"image": ["1", 0]}},
        "8": {
            "class_type": "EmptyImage",
            "inputs": {"width": ["7", 0], "height": ["7", 1], "batch_size": 1, "color": 0},
        },
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},  # INT output into an INT widget
    }
    assert validate_prompt(prompt, CATALOG) == (None, {})


def test_a_link_into_a_widget_must_carry_its_type():
    prompt = {**SIMPLE, "4": {"class_type": "TextSource", "inputs": {}}}
    prompt["1"] = {**SIMPLE["1"], "inputs": {**SIMPLE["1"]["inputs"], "width": ["4", 0]}}
    [problem] = errors_of(prompt, "1")
    assert problem["type"] == "return_type_mismatch"
    assert problem["details"] == "width, received_type(STRING) mismatch input_type(INT)"


def test_invalid_input_type():
    assert errors_of(simple(height="tall"), "1") == [
        {
            "type": "invalid_input_type",
            "message": "Failed to convert an input value to a INT value",
            "details": "height, tall, invalid literal for int() with base 10: 'tall'",
            "extra_info": {
                "input_name": "height",
                "input_config": SUBSET["EmptyImage"]["input"]["required"]["height"],
                "received_value": "tall",
                "exception_message": "invalid literal for int() with base 10: 'tall'",
            },
        }
    ]
    [problem] = errors_of(
        {"1": {"class_type": "MultiSink", "inputs": {"data": ["2", 0], "strength": "strong"}}, "2": SIMPLE["1"]}, "1"
    )
    assert problem["message"] == "Failed to convert an input value to a FLOAT value"
    assert problem["details"] == "strength, strong, could not convert string to float: 'strong'"


def test_values_are_converted_like_comfyui_before_range_checks():
    # "64" and 64.7 are INT 64 to ComfyUI; the converted value is what the messages show.
    assert validate_prompt(simple(width="64", height=64.7), CATALOG) == (None, {})
    assert errors_of(simple(width="0"), "1") == [
        {
            "type": "value_smaller_than_min",
            "message": "Value 0 smaller than min of 1",
            "details": "width",
            "extra_info": {
                "input_name": "width",
                "input_config": SUBSET["EmptyImage"]["input"]["required"]["width"],
                "received_value": 0,
            },
        }
    ]
    prompt = {
        "1": SIMPLE["1"],
        "2": {"class_type": "MultiSink", "inputs": {"data": ["1", 0], "label": 5, "enabled": "no", "strength": "0.5"}},
    }
    assert validate_prompt(prompt, CATALOG) == (None, {})  # STRING and BOOLEAN accept anything


def test_value_bigger_than_max_matches_the_recorded_error():
    assert errors_of(simple(width=999999), "1") == [
        {
            "type": "value_bigger_than_max",
            "message": "Value 999999 bigger than max of 16384",
            "details": "width",
            "extra_info": {
                "input_name": "width",
                "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "received_value": 999999,
            },
        }
    ]


def test_widget_value_wrapped_in_dunder_value():
    assert validate_prompt(simple(width={"__value__": 64}), CATALOG) == (None, {})
    assert errors_of(simple(width={"__value__": 0}), "1")[0]["type"] == "value_smaller_than_min"


def test_value_not_in_a_short_list():
    prompt = {
        "1": SIMPLE["1"],
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "purple"}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    assert errors_of(prompt, "2") == [
        {
            "type": "value_not_in_list",
            "message": "Value not in list",
            "details": "channel: 'purple' not in ['red', 'green', 'blue', 'alpha']",
            "extra_info": {
                "input_name": "channel",
                "input_config": [["red", "green", "blue", "alpha"], {}],
                "received_value": "purple",
            },
        }
    ]


def test_value_not_in_a_long_list_is_summarised():
    prompt = {
        "1": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": 20,
                "cfg": 7.0,
                "sampler_name": "nope",
                "scheduler": "karras",
                "denoise": 1.0,
                "model": ["9", 0],
                "positive": ["9", 1],
                "negative": ["9", 1],
                "latent_image": ["9", 2],
            },
        },
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        "9": {"class_type": "AnySource", "inputs": {}},
    }
    error, node_errors = validate_prompt(prompt, CATALOG)
    # AnySource has one output: slots 1 and 2 raise first, as in ComfyUI; fix them and look again.
    assert node_errors["1"]["errors"][0]["type"] == "exception_during_inner_validation"
    for name in ("positive", "negative", "latent_image"):
        prompt["1"]["inputs"][name] = ["9", 0]
    assert errors_of(prompt, "1") == [
        {
            "type": "value_not_in_list",
            "message": "Value not in list",
            "details": "sampler_name: 'nope' not in (list of length 42)",
            "extra_info": {"input_name": "sampler_name", "input_config": None, "received_value": "nope"},
        }
    ]


def test_new_style_combo_is_checked_against_its_options():
    prompt = {
        "1": {"class_type": "AnySource", "inputs": {}},
        "2": {"class_type": "LatentCut", "inputs": {"samples": ["1", 0], "dim": "z", "index": 0, "amount": 1}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    assert errors_of(prompt, "2") == [
        {
            "type": "value_not_in_list",
            "message": "Value not in list",
            "details": "dim: 'z' not in ['x', 'y', 't']",
            "extra_info": {
                "input_name": "dim",
                "input_config": ["COMBO", {"multiselect": False, "options": ["x", "y", "t"]}],
                "received_value": "z",
            },
        }
    ]
    prompt["2"]["inputs"]["dim"] = "t"
    assert validate_prompt(prompt, CATALOG) == (None, {})


def test_upload_inputs_are_not_checked_against_the_catalog_list():
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "my_cat.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
        "3": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
        "5": {"class_type": "LoadImageOutput", "inputs": {"image": "gw_00001_.png [output]"}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }
    assert validate_prompt(prompt, CATALOG) == (None, {})


def test_errors_of_one_node_are_all_listed():
    errors = errors_of(simple(width=0, height="x", color=None), "1")
    assert sorted(e["type"] for e in errors) == [
        "invalid_input_type",
        "required_input_missing",
        "value_smaller_than_min",
    ]


def test_dependent_outputs_and_overall_details():
    prompt = {
        **simple(width=0),
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    }
    error, node_errors = validate_prompt(prompt, CATALOG)
    # The details list each failing output's own errors (none for 3 and 4: their input failed).
    assert error == {**FAILED, "details": "Required input is missing: filename_prefix"}
    assert node_errors["1"]["dependent_outputs"] == ["3", "4", "5"]
    assert node_errors["5"] == {
        "errors": [
            {
                "type": "required_input_missing",
                "message": "Required input is missing",
                "details": "filename_prefix",
                "extra_info": {"input_name": "filename_prefix"},
            }
        ],
        "dependent_outputs": ["5"],
        "class_type": "SaveImage",
    }
    assert set(node_errors) == {"1", "5"}, "nodes failing only because of their inputs carry no entry"


def test_one_bad_output_leaves_the_prompt_valid_and_reports_the_bad_node():
    """ComfyUI's rule (0.8.0's P16): valid while one output is; the bad nodes still come back,
    and only the good outputs run."""
    prompt = {
        **copy.deepcopy(SIMPLE),
        "4": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }
    error, node_errors = validate_prompt(prompt, CATALOG)
    assert error is None and list(node_errors) == ["4"] and node_errors["4"]["dependent_outputs"] == ["5"]
    assert validation.valid_outputs(prompt, CATALOG, node_errors) == ["3"]
    assert validate_prompt(prompt, CATALOG, require_all_outputs=True) == (FAILED, node_errors)
    del prompt["3"]["inputs"]["filename_prefix"]
    assert validate_prompt(prompt, CATALOG)[0]["type"] == "prompt_outputs_failed_validation"


def test_nodes_no_output_depends_on_are_not_validated():
    prompt = {
        **SIMPLE,
        "8": {"class_type": "ImageInvert", "inputs": {"image": ["99", 0]}},
        "9": {"class_type": "EmptyImage", "inputs": {"width": -5}},
    }
    assert validate_prompt(prompt, CATALOG) == (None, {})


def test_a_cycle_fails_without_raising():
    prompt = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    error, node_errors = validate_prompt(prompt, CATALOG)
    assert error == FAILED
    # ComfyUI recurses to Python's limit and typically names no node; we name the loop.
    [problem] = node_errors["2"]["errors"]
    assert problem["type"] == "exception_during_inner_validation"
    assert problem["extra_info"]["exception_type"] == "RecursionError" and "depends on itself" in problem["details"]


def test_a_long_chain_validates():
    prompt = {"0": SIMPLE["1"]}
    for i in range(1, 200):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    prompt["out"] = {"class_type": "PreviewImage", "inputs": {"images": ["199", 0]}}
    assert validate_prompt(prompt, CATALOG) == (None, {})


def test_arbitrary_json_never_raises():
    """Participants send anything: every mutation of valid prompts gets an answer, not a crash."""
    rng = random.Random(64)
    junk = [
        None,
        True,
        0,
        -1,
        1.5,
        float("inf"),
        "",
        "x",
        "1",
        [],
        ["1"],
        ["1", 0],
        ["1", 0, 0],
        ["9", 0],
        [1, 0],
        ["1", "0"],
        ["1", -1],
        ["1", 7],
        [["1"], 0],
        {},
        {"__value__": 3},
        {"__value__": [1]},
        {"a": 1},
        "9" * 5000,
    ]
    bases = [
        SIMPLE,
        {
            "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
            "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "red"}},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
            "4": {"class_type": "MultiSink", "inputs": {"data": ["2", 0], "strength": 0.5}},
        },
    ]
    for _ in range(2000):
        prompt = copy.deepcopy(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            node = prompt[rng.choice(list(prompt))]
            names = list(node["inputs"]) + ["extra"]
            node["inputs"][rng.choice(names)] = copy.deepcopy(rng.choice(junk))
        for catalog in (CATALOG, None):
            error, node_errors = validate_prompt(prompt, catalog, rng.choice([None, ["3"], "3", 3]))
            json.dumps({"error": error, "node_errors": node_errors})
            assert error is None or set(error) == {"type", "message", "details", "extra_info"}
            input_files(prompt, catalog)


def test_arguments_are_not_modified_and_answers_are_detached():
    prompt = simple(width="0", height={"__value__": "8"})
    catalog = copy.deepcopy(CATALOG)
    before_prompt, before_catalog = copy.deepcopy(prompt), copy.deepcopy(catalog)
    _, node_errors = validate_prompt(prompt, catalog)
    assert prompt == before_prompt and catalog == before_catalog
    node_errors["1"]["errors"][0]["extra_info"]["input_config"][1]["min"] = 999
    assert catalog == before_catalog


@pytest.mark.parametrize("module", ["validation.py", "releases.py"])
def test_the_module_uses_the_standard_library_only(module):
    """The validator and the release facts it answers by are pure: no Django, no database."""
    tree = ast.parse((Path(validation.__file__).parent / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module is None and [a.name for a in node.names] == ["releases"]:
                continue  # the one sibling it may use, itself pure (checked here too)
            assert node.level == 0, "no imports from the project"
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported


# --- without a catalog ------------------------------------------------------------------------


def test_without_a_catalog_any_class_passes():
    assert validate_prompt(
        {"1": {"class_type": "Anything", "inputs": {"x": 5, "y": ["2", 0]}}, "2": {"class_type": "Else", "inputs": {}}},
        None,
    ) == (None, {})
    assert validate_prompt(SIMPLE, None) == (None, {})
    assert output_node_ids(SIMPLE, None) == []


@pytest.mark.parametrize(
    "prompt, words",
    [
        ("not a prompt", "not an object of nodes"),
        ({"1": {"inputs": {}}}, "missing the class_type property"),
        ({"1": {"class_type": "", "inputs": {}}}, "does not exist"),
        ({"1": {"class_type": "A"}}, "are not an object"),
        ({"1": {"class_type": "A", "inputs": {"x": ["9", 0]}}}, "links to node #9, which is not in the prompt"),
        ({"1": {"class_type": "A", "inputs": {"x": ["1", 0, 1]}}}, "is a bad link"),
        ({"1": {"class_type": "A", "inputs": {"x": ["1", "0"]}}}, "is a bad link"),
    ],
)
def test_without_a_catalog_the_structure_is_checked(prompt, words):
    error, node_errors = validate_prompt(prompt, None)
    assert error["type"] == "invalid_prompt" and words in error["message"] and node_errors == {}
    if isinstance(prompt, dict):
        assert error["details"] == "Node ID '#1'"


def test_without_a_catalog_an_empty_prompt_has_no_outputs():
    assert validate_prompt({}, None)[0]["type"] == "prompt_no_outputs"


# --- output_node_ids and input_files ---------------------------------------------------------------


def test_output_node_ids():
    prompt = {
        **SIMPLE,
        "0": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "9": {"class_type": "Unknown", "inputs": {}},
    }
    assert output_node_ids(prompt, CATALOG) == ["3", "0"]
    assert output_node_ids("x", CATALOG) == [] and output_node_ids(prompt, {}) == []


@pytest.mark.parametrize(
    "value, expected",
    [
        ("a.png", {"filename": "a.png", "subfolder": "", "type": "input"}),
        ("sub/a.png [input]", {"filename": "a.png", "subfolder": "sub", "type": "input"}),
        ("x [output]", {"filename": "x", "subfolder": "", "type": "output"}),
        ("pasted/deep/t.png [temp]", {"filename": "t.png", "subfolder": "pasted/deep", "type": "temp"}),
        ("a b.png", {"filename": "a b.png", "subfolder": "", "type": "input"}),
        ("x.png[output]", {"filename": "x.pn", "subfolder": "", "type": "output"}),  # ComfyUI cuts one more char
    ],
)
def test_parse_annotated_name(value, expected):
    assert parse_annotated_name(value) == expected


def test_input_files_of_loader_nodes():
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "pets/dog.png [input]"}},
        "3": {"class_type": "LoadImageOutput", "inputs": {"image": "gw_00001_.png [output]"}},
        "4": {"class_type": "LoadImageOutput", "inputs": {"image": "plain.png"}},
        "5": {"class_type": "LoadVideo", "inputs": {"file": "clips/a.mp4"}},
        "6": {"class_type": "LegacyFileLoader", "inputs": {"file": "data.bin"}},
        "7": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},  # duplicate
        "8": {"class_type": "LoadImage", "inputs": {"image": ["9", 0]}},  # linked: no file
        "9": {"class_type": "AnySource", "inputs": {}},
        "10": {"class_type": "LoadImage", "inputs": {"image": {"__value__": "wrapped.png"}}},
        "20": {"class_type": "MultiSink", "inputs": {"data": ["1", 0]}},
        "21": {"class_type": "MultiSink", "inputs": {"data": ["2", 0]}},
        "22": {"class_type": "MultiSink", "inputs": {"data": ["3", 0]}},
        "23": {"class_type": "MultiSink", "inputs": {"data": ["4", 0]}},
        "24": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
        "25": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}},
        "26": {"class_type": "MultiSink", "inputs": {"data": ["7", 0]}},
        "27": {"class_type": "MultiSink", "inputs": {"data": ["8", 0]}},
        "28": {"class_type": "MultiSink", "inputs": {"data": ["10", 0]}},
    }
    assert input_files(prompt, CATALOG) == [
        {"filename": "cat.png", "subfolder": "", "type": "input"},
        {"filename": "dog.png", "subfolder": "pets", "type": "input"},
        {"filename": "gw_00001_.png", "subfolder": "", "type": "output"},
        {"filename": "plain.png", "subfolder": "", "type": "output"},  # LoadImageOutput's image_folder
        {"filename": "a.mp4", "subfolder": "clips", "type": "input"},
        {"filename": "data.bin", "subfolder": "", "type": "input"},
        {"filename": "wrapped.png", "subfolder": "", "type": "input"},
    ]
    assert validate_prompt(prompt, CATALOG) == (None, {}), "upload inputs are checked against the workspace instead"


def test_input_files_skip_loaders_no_output_uses():
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "used.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "targeted.png"}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }
    assert [f["filename"] for f in input_files(prompt, CATALOG)] == ["used.png", "targeted.png"]
    assert [f["filename"] for f in input_files(prompt, CATALOG, ["5"])] == ["targeted.png"]


def test_input_files_without_a_catalog_use_the_core_loaders():
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
        "3": {"class_type": "LoadImageMask", "inputs": {"image": "m/mask.png [input]", "channel": "alpha"}},
        "4": {"class_type": "LoadImageOutput", "inputs": {"image": "o.png"}},
        "5": {"class_type": "LoadVideo", "inputs": {"file": "v.mp4"}},
        "6": {"class_type": "LoadAudio", "inputs": {"audio": "s.wav"}},
    }
    assert input_files(prompt, None) == [
        {"filename": "cat.png", "subfolder": "", "type": "input"},
        {"filename": "mask.png", "subfolder": "m", "type": "input"},
        {"filename": "o.png", "subfolder": "", "type": "output"},
        {"filename": "v.mp4", "subfolder": "", "type": "input"},
        {"filename": "s.wav", "subfolder": "", "type": "input"},
    ]


def test_input_files_return_an_empty_name_so_the_caller_refuses_it():
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": ""}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    assert input_files(prompt, CATALOG) == [{"filename": "", "subfolder": "", "type": "input"}]


def test_input_files_of_malformed_prompts():
    assert input_files("x", CATALOG) == [] and input_files(None, None) == []
    assert input_files({"1": "LoadImage", "2": {"class_type": "LoadImage"}}, None) == []


def test_input_files_of_the_recorded_catalog():
    catalog = full_object_info()
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in/a.png [input]"}},
        "2": {"class_type": "LoadImageMask", "inputs": {"image": "b.png", "channel": "alpha"}},
        "3": {
            "class_type": "ImageCompositeMasked",
            "inputs": {
                "destination": ["1", 0],
                "source": ["1", 0],
                "x": 0,
                "y": 0,
                "resize_source": False,
                "mask": ["2", 0],
            },
        },
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }
    assert input_files(prompt, catalog) == [
        {"filename": "a.png", "subfolder": "in", "type": "input"},
        {"filename": "b.png", "subfolder": "", "type": "input"},
    ]
    assert validate_prompt(prompt, catalog) == (None, {})


def test_a_missing_upload_is_refused_on_its_node_like_the_loader_would():
    """LoadVideo (a new-style COMBO with video_upload) names the participant's missing file on the
    node itself, so the UI outlines it; a file the workspace has passes."""
    catalog = {
        "LoadVideo": {
            "input": {"required": {"file": ["COMBO", {"options": [], "video_upload": True}]}},
            "output": ["VIDEO"],
            "output_node": False,
        },
        "SaveVideo": {"input": {"required": {"video": ["VIDEO", {}]}}, "output": [], "output_node": True},
    }
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "clips/mine.mp4"}},
        "2": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0]}},
    }
    seen = []
    error, node_errors = validate_prompt(prompt, catalog, file_exists=lambda item: seen.append(item) or False)
    assert seen == [{"filename": "mine.mp4", "subfolder": "clips", "type": "input"}]
    assert node_errors["1"]["errors"] == [
        {
            "type": "custom_validation_failed",
            "message": "Custom validation failed for node",
            "details": "file - Invalid video file: clips/mine.mp4",
            "extra_info": {"input_name": "file"},
        }
    ]
    assert error["type"] == "prompt_outputs_failed_validation"
    assert validate_prompt(prompt, catalog, file_exists=lambda item: True) == (None, {})


def test_0280s_painter_with_no_mask_and_load3d_with_none_read_no_file():
    """Painter.mask (0.28) is a text input with an upload widget: empty is no file. Load3D's
    "none" is ComfyUI's own placeholder. Neither is a file the participant must upload."""
    import gzip as gz

    catalog = json.loads(
        gz.decompress(
            (Path(__file__).parent.parent / "scripts" / "comfyui_double" / "object_info_0.28.0.json.gz").read_bytes()
        )
    )
    prompt = {
        "1": {"class_type": "Painter", "inputs": {"mask": "", "width": 512, "height": 512, "bg_color": "#000000"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "Load3D", "inputs": {"model_file": "none", "image": "", "width": 64, "height": 64}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    assert validate_prompt(prompt, catalog, file_exists=lambda item: False, version="0.28.0") == (None, {})
    assert input_files(prompt, catalog) == []
    prompt["1"]["inputs"]["mask"] = "painter/mask.png [input]"
    assert input_files(prompt, catalog) == [{"filename": "mask.png", "subfolder": "painter", "type": "input"}]


# What a real ComfyUI 0.28.0 answered to prompts of our own (posted to it straight, 2026-12-07,
# by the platform's trial against a real 0.28.0; server paths in its traceback left out, as the
# bridge sends none).
PV = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
IMAGE_BLEND = [
    "COMBO",
    {"multiselect": False, "options": ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]},
]
SEEN_ON_0280 = {
    "a loop of links": (
        {
            "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": PV,
        },
        {
            "2": {
                "errors": [
                    {
                        "type": "dependency_cycle",
                        "message": "Dependency cycle detected",
                        "details": "2 (ImageInvert) -> 1 (ImageInvert) -> 2 (ImageInvert)",
                        "extra_info": {"node_id": "2", "cycle_nodes": ["2", "1"]},
                    }
                ],
                "dependent_outputs": ["3"],
                "class_type": "ImageInvert",
            },
            "1": {
                "errors": [
                    {
                        "type": "dependency_cycle",
                        "message": "Dependency cycle detected",
                        "details": "2 (ImageInvert) -> 1 (ImageInvert) -> 2 (ImageInvert)",
                        "extra_info": {"node_id": "1", "cycle_nodes": ["2", "1"]},
                    }
                ],
                "dependent_outputs": ["3"],
                "class_type": "ImageInvert",
            },
        },
    ),
    "a node with no inputs key": (
        {"1": {"class_type": "EmptyImage"}, "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}},
        {
            "1": {
                "errors": [
                    {
                        "type": "exception_during_inner_validation",
                        "message": "Exception when validating inner node",
                        "details": "'inputs'",
                        "extra_info": {
                            "input_name": "images",
                            "input_config": ["IMAGE", {}],
                            "exception_message": "'inputs'",
                            "exception_type": "KeyError",
                            "traceback": [],
                            "linked_node": ["1", 0],
                        },
                    }
                ],
                "dependent_outputs": ["3"],
                "class_type": "EmptyImage",
            }
        },
    ),
    "a COMBO given a number": (
        {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 7}},
            "2": {
                "class_type": "ImageBlend",
                "inputs": {"image1": ["1", 0], "image2": ["1", 0], "blend_factor": 0.5, "blend_mode": 3},
            },
            "3": PV,
        },
        {
            "2": {
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "blend_mode: 3 not in ['normal', 'multiply', 'screen', 'overlay', 'soft_light', "
                        "'difference']",
                        "extra_info": {"input_name": "blend_mode", "input_config": IMAGE_BLEND, "received_value": 3},
                    }
                ],
                "dependent_outputs": ["3"],
                "class_type": "ImageBlend",
            }
        },
    ),
}


@pytest.mark.parametrize("case", sorted(SEEN_ON_0280))
def test_answers_seen_on_a_real_0280_are_reproduced_with_its_catalog(case):
    import gzip as gz

    catalog = json.loads(
        gz.decompress(
            (Path(__file__).parent.parent / "scripts" / "comfyui_double" / "object_info_0.28.0.json.gz").read_bytes()
        )
    )
    prompt, node_errors = SEEN_ON_0280[case]
    error, got = validate_prompt(json.loads(json.dumps(prompt)), catalog, version="0.28.0")
    assert canonical({"error": error, "node_errors": got}) == canonical({"error": FAILED, "node_errors": node_errors})


def test_before_0280_a_loop_of_links_is_still_reported_on_one_node():
    prompt = SEEN_ON_0280["a loop of links"][0]
    _, node_errors = validate_prompt(json.loads(json.dumps(prompt)), CATALOG, version="0.8.0")
    problem = node_errors["2"]["errors"][0]
    assert problem["type"] == "exception_during_inner_validation" and "depends on itself" in problem["details"]
