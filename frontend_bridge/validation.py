"""Prompt validation against the catalog's object_info, the way ComfyUI's validate_prompt
answers (same error types, messages and node_errors shape), so the UI highlights the node.

Pure functions: no Django, no I/O.
"""

UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "upload")
# Core loader nodes and their file input, for when no catalog has been published yet.
KNOWN_UPLOADS = {"LoadImage": "image", "LoadImageMask": "image", "LoadVideo": "file", "LoadAudio": "audio"}


def _error(kind, message, details="", extra=None):
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _input_specs(class_info: dict) -> dict:
    spec = class_info.get("input") or {}
    merged = {}
    for section in ("required", "optional"):
        for name, config in (spec.get(section) or {}).items():
            merged[name] = (section, config)
    return merged


def _combo_options(config):
    """Options of a COMBO input (old style: a list as type; new style: "COMBO" + options)."""
    if not isinstance(config, list) or not config:
        return None
    if isinstance(config[0], list):
        return config[0]
    if config[0] == "COMBO" and len(config) > 1 and isinstance(config[1], dict):
        return config[1].get("options")
    return None


def _is_upload(config) -> bool:
    options = config[1] if isinstance(config, list) and len(config) > 1 and isinstance(config[1], dict) else {}
    return any(options.get(flag) for flag in UPLOAD_FLAGS)


def output_node_ids(prompt, object_info) -> list[str]:
    if not isinstance(prompt, dict) or not object_info:
        return []
    return [
        node_id
        for node_id, node in prompt.items()
        if isinstance(node, dict) and (object_info.get(node.get("class_type")) or {}).get("output_node")
    ]


def _ancestors(prompt, node_id, seen):
    if node_id in seen or node_id not in prompt:
        return
    seen.add(node_id)
    for value in (prompt[node_id].get("inputs") or {}).values():
        if _is_link(value):
            _ancestors(prompt, value[0], seen)


def _check_node(prompt, node_id, node, object_info) -> list[dict]:
    class_info = object_info[node["class_type"]]
    inputs = node.get("inputs") or {}
    errors = []
    for name, (section, config) in _input_specs(class_info).items():
        if name not in inputs:
            if section == "required":
                errors.append(_error("required_input_missing", "Required input is missing", name, {"input_name": name}))
            continue
        value = inputs[name]
        input_type = config[0] if isinstance(config, list) and config else config
        if _is_link(value):
            source = prompt.get(value[0])
            if not isinstance(source, dict) or source.get("class_type") not in object_info:
                errors.append(_error("bad_linked_input", "Bad linked input, must be a length-2 list of [string, integer]",
                                     f"{name}, {value}", {"input_name": name, "input_config": config, "received_value": value}))
                continue
            outputs = object_info[source["class_type"]].get("output") or []
            if value[1] >= len(outputs) or value[1] < 0:
                errors.append(_error("bad_linked_input", "Bad linked input, must be a length-2 list of [string, integer]",
                                     f"{name}, {value}", {"input_name": name, "input_config": config, "received_value": value}))
                continue
            received = outputs[value[1]]
            expected = "COMBO" if isinstance(input_type, list) else input_type
            if not _types_match(received, expected):
                details = f"{name}, received_type({received}) mismatch input_type({expected})"
                errors.append(_error("return_type_mismatch", "Return type mismatch between linked nodes", details,
                                     {"input_name": name, "input_config": config, "received_type": received, "linked_node": value}))
            continue
        options = config[1] if isinstance(config, list) and len(config) > 1 and isinstance(config[1], dict) else {}
        extra = {"input_name": name, "input_config": config, "received_value": value}
        if input_type in ("INT", "FLOAT"):
            try:
                number = int(value) if input_type == "INT" else float(value)
            except (TypeError, ValueError):
                errors.append(_error("invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                                     f"{name}, {value}", extra))
                continue
            if "min" in options and number < options["min"]:
                errors.append(_error("value_smaller_than_min", f"Value {number} smaller than min of {options['min']}", name, extra))
            if "max" in options and number > options["max"]:
                errors.append(_error("value_bigger_than_max", f"Value {number} bigger than max of {options['max']}", name, extra))
        elif input_type == "BOOLEAN" and not isinstance(value, (bool, int)):
            errors.append(_error("invalid_input_type", "Failed to convert an input value to a BOOLEAN value", f"{name}, {value}", extra))
        else:
            choices = _combo_options(config)
            # Upload inputs name the participant's own files, which the GPU host's list cannot know.
            if choices is not None and not _is_upload(config) and value not in choices:
                shown = choices if len(choices) <= 20 else [*choices[:20], "..."]
                errors.append(_error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {shown}",
                                     {"input_name": name, "input_config": config, "received_value": value}))
    return errors


def _types_match(received, expected) -> bool:
    if "*" in (received, expected) or received == expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    return bool(set(received.split(",")) & set(expected.split(",")))


def validate_prompt(prompt, object_info, partial_execution_targets=None):
    """(error, node_errors): error None when the prompt may be queued."""
    if not isinstance(prompt, dict) or not prompt:
        return _error("invalid_prompt", "Cannot execute because the prompt is not a non-empty object of nodes."), {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return _error("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                          f"Node ID '#{node_id}'"), {}
        if not isinstance(node.get("inputs", {}), dict):
            return _error("invalid_prompt", "Cannot execute because a node has malformed inputs.", f"Node ID '#{node_id}'"), {}
        if object_info is not None and node["class_type"] not in object_info:
            return _error("invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.",
                          f"Node ID '#{node_id}'"), {}
        for value in node.get("inputs", {}).values():
            if _is_link(value) and value[0] not in prompt:
                return _error("invalid_prompt", "Cannot execute because a node links to a node that is not in the prompt.",
                              f"Node ID '#{node_id}'"), {}
    if object_info is None:
        return None, {}

    outputs = output_node_ids(prompt, object_info)
    if partial_execution_targets:
        outputs = [o for o in outputs if o in {str(t) for t in partial_execution_targets}]
    if not outputs:
        return _error("prompt_no_outputs", "Prompt has no outputs"), {}

    node_errors = {}
    for output in outputs:
        needed = set()
        _ancestors(prompt, output, needed)
        for node_id in sorted(needed):
            if node_id not in node_errors:
                errors = _check_node(prompt, node_id, prompt[node_id], object_info)
                node_errors[node_id] = {"errors": errors, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]}
            node_errors[node_id]["dependent_outputs"].append(output)
    node_errors = {k: v for k, v in node_errors.items() if v["errors"]}
    if node_errors:
        return _error("prompt_outputs_failed_validation", "Prompt outputs failed validation"), node_errors
    return None, {}


def input_files(prompt, object_info) -> list[dict]:
    """Workspace files the prompt reads (LoadImage-style upload inputs), as view triples."""
    if not isinstance(prompt, dict):
        return []
    found = []
    for node in prompt.values():
        if not isinstance(node, dict):
            continue
        if object_info:
            class_info = object_info.get(node.get("class_type")) or {}
            names = [name for name, (_, config) in _input_specs(class_info).items() if _is_upload(config)]
        else:
            names = [KNOWN_UPLOADS[node.get("class_type")]] if node.get("class_type") in KNOWN_UPLOADS else []
        for name in names:
            value = (node.get("inputs") or {}).get(name)
            if not isinstance(value, str) or not value:
                continue
            folder_type = "input"
            for kind in ("input", "output", "temp"):
                if value.endswith(f" [{kind}]"):
                    value, folder_type = value[: -len(kind) - 3], kind
            subfolder, _, filename = value.replace("\\", "/").rpartition("/")
            item = {"filename": filename, "subfolder": subfolder, "type": folder_type}
            if item not in found:
                found.append(item)
    return found
