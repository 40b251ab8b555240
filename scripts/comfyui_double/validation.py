"""ComfyUI's prompt validation (execution.validate_prompt / validate_inputs), against object_info.

Pure functions. Same error types, messages, details and node_errors shape as ComfyUI 0.3.64,
quirks included; the one deliberate difference: a node's inputs are checked in declaration
order, where ComfyUI walks a set (so the order of one node's errors varies between its runs).
"""

import re
import traceback

CONVERSIONS = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def error_body(kind, message, details="", extra=None) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


def full_type_name(cls) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def types_match(received, expected) -> bool:
    """validate_node_input, non-strict: equal, "*", a V3 MatchType (left to the frontend), or
    comma-separated types that overlap."""
    if received == expected or "COMFY_MATCHTYPE_V3" in (received, expected):
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got, want = {t.strip() for t in received.split(",")}, {t.strip() for t in expected.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def flatten_v3(sections: dict, inputs: dict, prefix: str = "") -> dict:
    """{"required": {...}, "optional": {...}} with ComfyUI 0.8's V3 dynamic inputs expanded into
    the dotted names the prompt uses: a DynamicCombo brings its chosen option's inputs (nothing,
    itself included, for no value or an unknown key); an Autogrow brings its template under each
    name given, the first `min` required."""
    out = {"required": {}, "optional": {}}
    for category in ("required", "optional"):
        for name, config in (sections.get(category) or {}).items():
            full = prefix + name
            kind, extra = config[0], (config[1] if len(config) > 1 else {})
            if kind == "COMFY_DYNAMICCOMBO_V3":
                option = next(
                    (o for o in extra.get("options", []) if full in inputs and o["key"] == inputs[full]), None
                )
                if option:
                    nested = flatten_v3(option["inputs"], inputs, full + ".")
                    for key in out:
                        out[key].update(nested[key])
                    out[category][full] = config
            elif kind == "COMFY_AUTOGROW_V3":
                template = extra["template"]
                names = template.get("names") or [f"{template['prefix']}{i}" for i in range(template["max"])]
                entry = [v for section in template["input"].values() for v in section.values()][0]
                for i, grown in enumerate(names):
                    if f"{full}.{grown}" in inputs:
                        out["required" if i < template.get("min", 0) else "optional"][f"{full}.{grown}"] = entry
            else:
                out[category][full] = config
    return out


def version_tuple(text: str) -> tuple[int, int, int]:
    parts = [int(re.match(r"\d*", piece).group() or 0) for piece in (text or "0").lstrip("v").split(".")[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def _missing_class(prompt, node_id, version):
    """execution.validate_prompt's first check: 0.12 and later name the missing node (ComfyUI
    pull request 12194) so that the UI can offer its pack; earlier releases say invalid_prompt."""
    node = prompt[node_id]
    if version_tuple(version) < (0, 12, 0):
        if not isinstance(node, dict) or "class_type" not in node:
            return error_body(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        return error_body(
            "invalid_prompt",
            f"Cannot execute because node {node['class_type']} does not exist.",
            f"Node ID '#{node_id}'",
        )
    if not isinstance(node, dict) or "class_type" not in node:
        title = (node.get("_meta") or {}).get("title") if isinstance(node, dict) else None
        return error_body(
            "missing_node_type",
            f"Node '{title or f'ID #{node_id}'}' has no class_type. The workflow "
            "may be corrupted or a custom node is missing.",
            f"Node ID '#{node_id}'",
            {"node_id": node_id, "class_type": None, "node_title": title},
        )
    title = (node.get("_meta") or {}).get("title", node["class_type"])
    return error_body(
        "missing_node_type",
        f"Node '{title}' not found. The custom node may not be installed.",
        f"Node ID '#{node_id}'",
        {"node_id": node_id, "class_type": node["class_type"], "node_title": title},
    )


def validate_prompt(prompt, object_info, custom_checks=None, partial_targets=None, version="0.3.64"):
    """(valid, error, outputs to execute, node_errors).

    `custom_checks` {class_type: {input: check(value) -> True or a message}} stands for nodes'
    VALIDATE_INPUTS (LoadImage's "Invalid image file"). Validation converts widget values in
    place (a "256" for an INT becomes 256), as ComfyUI does to the prompt it queues.

    Unlike API_NOTES' reading ("one valid and one invalid output still fails"), a prompt with at
    least one valid output is accepted with the bad nodes in node_errors, and only the good outputs
    run: that is what validate_prompt does, and the recorded case had no valid output at all."""
    outputs = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return False, _missing_class(prompt, node_id, version), [], {}
        info = object_info.get(node["class_type"])
        if info is None:
            return False, _missing_class(prompt, node_id, version), [], {}
        if info.get("output_node") and (partial_targets is None or node_id in partial_targets):
            outputs.append(node_id)
    if not outputs:
        return False, error_body("prompt_no_outputs", "Prompt has no outputs"), [], {}

    good, failed, node_errors, validated = [], [], {}, {}
    for output in outputs:
        try:
            valid, reasons = _validate_node(prompt, output, object_info, custom_checks or {}, validated)
        except Exception as exc:  # e.g. a link to a node that is not in the prompt
            valid, reasons = (
                False,
                [
                    error_body(
                        "exception_during_validation",
                        "Exception when validating node",
                        str(exc),
                        {
                            "exception_type": full_type_name(type(exc)),
                            "traceback": traceback.format_tb(exc.__traceback__),
                        },
                    )
                ],
            )
            validated[output] = (False, reasons)
        if valid:
            good.append(output)
            continue
        failed.append((output, reasons))
        # ComfyUI's quirk, kept: every failing node validated *so far* lists this output as
        # dependent, whether or not it feeds it.
        for node_id, (ok, node_reasons) in validated.items():
            if not ok and node_reasons:
                entry = node_errors.setdefault(
                    node_id,
                    {"errors": node_reasons, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]},
                )
                entry["dependent_outputs"].append(output)
    if not good:
        # The details list only the outputs' own errors: "" when the trouble is upstream.
        details = "\n".join(f"{e['message']}: {e['details']}" for _, reasons in failed for e in reasons)
        return (
            False,
            error_body("prompt_outputs_failed_validation", "Prompt outputs failed validation", details),
            [],
            node_errors,
        )
    return True, None, good, node_errors


def _validate_node(prompt, node_id, object_info, custom_checks, validated):
    """validate_inputs for one node and, through its links, its ancestors: (valid, errors)."""
    if node_id in validated:
        return validated[node_id]
    node = prompt[node_id]
    inputs = node["inputs"]
    custom = custom_checks.get(node["class_type"], {})
    errors, valid = [], True
    sections = flatten_v3(object_info[node["class_type"]]["input"], inputs)
    for category in ("required", "optional"):
        for name, config in sections[category].items():
            input_type, extra = config[0], (config[1] if len(config) > 1 else {})
            info = [input_type, extra]
            if name not in inputs:
                if category == "required":
                    errors.append(
                        error_body(
                            "required_input_missing",
                            "Required input is missing",
                            name.rsplit(".", 1)[-1],
                            {"input_name": name},
                        )
                    )
                continue
            value = inputs[name]
            if isinstance(value, list):
                error, ok = _check_link(prompt, name, value, input_type, info, object_info, custom_checks, validated)
                errors += [error] if error else []
                valid = valid and ok
                continue
            if isinstance(value, dict) and "__value__" in value:  # a list-valued widget, wrapped
                value = inputs[name] = value["__value__"]
            convert = isinstance(input_type, str) and CONVERSIONS.get(input_type)
            try:
                value = inputs[name] = convert(value) if convert else value
            except (TypeError, ValueError) as exc:
                errors.append(
                    error_body(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {input_type} value",
                        f"{name}, {value}, {exc}",
                        {
                            "input_name": name,
                            "input_config": info,
                            "received_value": value,
                            "exception_message": str(exc),
                        },
                    )
                )
                continue
            if name in custom:
                continue  # a node's own VALIDATE_INPUTS replaces the generic checks for that input
            seen = {"input_name": name, "input_config": info, "received_value": value}
            if "min" in extra and value < extra["min"]:
                errors.append(
                    error_body(
                        "value_smaller_than_min", f"Value {value} smaller than min of {extra['min']}", name, seen
                    )
                )
            elif "max" in extra and value > extra["max"]:
                errors.append(
                    error_body("value_bigger_than_max", f"Value {value} bigger than max of {extra['max']}", name, seen)
                )
            elif (
                choices := input_type
                if isinstance(input_type, list)
                else extra.get("options")
                if input_type == "COMBO"
                else None
            ) is not None and value not in choices:
                long = len(choices) > 20  # ComfyUI does not echo long lists (all model files)
                listed = f"(list of length {len(choices)})" if long else str(choices)
                errors.append(
                    error_body(
                        "value_not_in_list",
                        "Value not in list",
                        f"{name}: '{value}' not in {listed}",
                        {**seen, "input_config": None if long else info},
                    )
                )
    for name, check in custom.items():
        result = check(inputs.get(name))
        if result is not True:
            errors.append(
                error_body(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    f"{name} - {result}",
                    {"input_name": name},
                )
            )
    validated[node_id] = (not errors and valid, errors)
    return validated[node_id]


def _check_link(prompt, name, value, input_type, info, object_info, custom_checks, validated):
    """(error or None, whether the linked node validated)."""
    if len(value) != 2:
        return error_body(
            "bad_linked_input",
            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
            name,
            {"input_name": name, "input_config": info, "received_value": value},
        ), True
    received = object_info[prompt[value[0]]["class_type"]]["output"][value[1]]
    if not types_match(received, input_type):
        return error_body(
            "return_type_mismatch",
            "Return type mismatch between linked nodes",
            f"{name}, received_type({received}) mismatch input_type({input_type})",
            {"input_name": name, "input_config": info, "received_type": received, "linked_node": value},
        ), True
    try:
        return None, _validate_node(prompt, value[0], object_info, custom_checks, validated)[0]
    except Exception as exc:
        validated[value[0]] = (
            False,
            [
                error_body(
                    "exception_during_inner_validation",
                    "Exception when validating inner node",
                    str(exc),
                    {
                        "input_name": name,
                        "input_config": info,
                        "exception_message": str(exc),
                        "exception_type": full_type_name(type(exc)),
                        "linked_node": value,
                    },
                )
            ],
        )
        return None, False
