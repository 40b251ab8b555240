"""Validate an API-format ComfyUI prompt against a catalog's ``object_info``, answering the way
ComfyUI's ``execution.validate_prompt`` does (0.3.64 and 0.8.0 recorded, answer for answer): same
error types, messages, details, ``extra_info`` and ``node_errors`` shape, so the ComfyUI web UI
marks the right nodes.

Pure functions: standard library only, no Django, no I/O, the arguments are never modified.

How ComfyUI validates (and so how this module does):

1. Every node, in prompt order, must have a ``class_type`` that the server knows; the first one
   that does not fails the prompt with ``invalid_prompt`` (no ``node_errors``).
2. The output nodes (classes with ``output_node`` true, narrowed to ``partial_execution_targets``
   when given) are collected; none gives ``prompt_no_outputs``.
3. Each output is validated recursively through its links. Only nodes an output depends on are
   validated at all. A node's inputs are first *finalised*: V3 dynamic inputs (DynamicCombo,
   Autogrow, DynamicSlot) become the flattened, dotted inputs the prompt carries
   (``resize_type.width``, ``images.image0``). Per input: ``required_input_missing``;
   ``bad_linked_input`` (a list that is not of length 2); ``return_type_mismatch`` (the linked
   output's type does not overlap the input type); ``invalid_input_type`` (INT/FLOAT conversion
   failed); ``value_smaller_than_min`` / ``value_bigger_than_max``; ``value_not_in_list`` (old-style
   list combos and ``["COMBO", {"options": [...]}]`` alike); then the loaders' own
   ``custom_validation_failed`` when their file is missing. A link to a node that is not in the
   prompt, or to a slot the class does not have, raises inside ComfyUI and is reported as
   ``exception_during_inner_validation`` on the node holding the link (or
   ``exception_during_validation`` when that node is the output itself).
4. ``node_errors`` lists every node with errors of its own, with ``dependent_outputs``; like
   ComfyUI, each failing output is appended to *every* node that has failed so far (ComfyUI's
   recorded answer lists an output under a node it does not depend on), outputs taken in prompt
   order. The prompt fails only when no output is valid; otherwise the valid outputs run and
   ``node_errors`` still comes back.

Deliberate differences from ComfyUI: upload inputs (``image_upload`` etc.) are checked against
the participant's workspace (``file_exists``), never the catalog's list, which is the GPU host's
input folder; a node whose ``inputs`` is not an object is refused up front; a cycle of links is
reported on a node of the loop before 0.28 (ComfyUI ran into Python's recursion limit); exception records
carry an empty traceback. Rules a newer ComfyUI may add are not known here: such a prompt passes,
and ComfyUI's own refusal reaches the participant when the GPU worker submits it.
"""

import copy

from . import releases

# A widget option that marks an input as naming a file of the input folder (LoadImage's
# ``image_upload``, LoadVideo's ``video_upload``, LoadAudio's ``audio_upload``, Load3D's
# ``file_upload``; older packs use ``upload`` or ``3d``).
UPLOAD_SUFFIX = "_upload"
# Core loader classes and their file input, for prompts checked before any catalog exists.
KNOWN_UPLOADS = {
    "LoadImage": ("image", "input"),
    "LoadImageMask": ("image", "input"),
    "LoadImageOutput": ("image", "output"),
    "LoadVideo": ("file", "input"),
    "LoadAudio": ("audio", "input"),
    "Load3D": ("model_file", "input"),
    "Load3DAnimation": ("model_file", "input"),
}
# Types that link to anything: "*" is how ComfyUI's AnyType (a str whose != is always False)
# shows in object_info; COMFY_MATCHTYPE_V3 is left to the frontend by ComfyUI's validation.
WILDCARD_TYPES = ("*", "COMFY_MATCHTYPE_V3")
# V3 inputs whose one entry in object_info stands for a set of flattened, dotted inputs
# (``resize_type.width``, ``images.image0``); see _finalized_inputs.
DYNAMIC_COMBO, AUTOGROW, DYNAMIC_SLOT = "COMFY_DYNAMICCOMBO_V3", "COMFY_AUTOGROW_V3", "COMFY_DYNAMICSLOT_V3"
# What a loader's own check says of a file that is not there, by its upload flag (ComfyUI's
# LoadImage, LoadVideo and LoadAudio VALIDATE_INPUTS).
MISSING_FILE = {
    "image_upload": "Invalid image file: {}",
    "video_upload": "Invalid video file: {}",
    "audio_upload": "Invalid audio file: {}",
}
FOLDER_TYPES = ("output", "input", "temp")  # the order ComfyUI tests the " [type]" annotations in
LIST_INFO_LIMIT = 20  # longer option lists are summarised, as ComfyUI does


def _error(kind, message, details="", extra_info=None):
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info or {}}


def _invalid_prompt(message, node_id=None):
    return _error("invalid_prompt", message, "" if node_id is None else f"Node ID '#{node_id}'")


def _class_info(object_info, class_type):
    if not isinstance(class_type, str) or not isinstance(object_info, dict):
        return None
    info = object_info.get(class_type)
    return info if isinstance(info, dict) else None


def _sections(class_info):
    sections = class_info.get("input") if isinstance(class_info, dict) else None
    return sections if isinstance(sections, dict) else {}


def _declared_inputs(class_info):
    """Names of the required and optional inputs (hidden ones are never validated)."""
    names = []
    for section in ("required", "optional"):
        entries = _sections(class_info).get(section)
        for name in entries if isinstance(entries, dict) else ():
            if name not in names:
                names.append(name)
    return names


def _input_spec(class_info, name):
    """(input type, section, options) of one input; a section earlier in required, optional,
    hidden wins. The type is a string, or a list of choices for an old-style COMBO."""
    for section in ("required", "optional", "hidden"):
        entries = _sections(class_info).get(section)
        if isinstance(entries, dict) and name in entries:
            input_type, options = _spec_parts(entries[name])
            return input_type, section, options
    return None, None, None


def _finalized_inputs(class_info, inputs):
    """``{"required": {name: spec}, "optional": {...}}`` of one node, its V3 dynamic inputs
    expanded against the values the prompt gives, as ComfyUI 0.8's
    ``_io.get_finalized_class_inputs`` does:

    - a DynamicCombo whose value names one of its options brings that option's inputs, named
      ``<combo>.<input>``; with no value or an unknown key it brings nothing, itself included;
    - an Autogrow brings the template input under each of its names the prompt uses, the
      first ``min`` of them required, the others optional;
    - a DynamicSlot given a value brings its own inputs.
    """
    out: dict[str, dict] = {"required": {}, "optional": {}}
    sections = {k: v for k, v in _sections(class_info).items() if k != "hidden" and isinstance(v, dict)}
    _expand(out, inputs, sections, [])
    return out


def _expand(out, live, sections, prefix):
    for section, entries in sections.items():
        if section not in out or not isinstance(entries, dict):
            continue
        for name, spec in entries.items():
            kind, options = _spec_parts(spec)
            path = prefix + [name]
            full = ".".join(path)
            if kind == DYNAMIC_COMBO:
                if full not in live:
                    continue
                chosen = next(
                    (o for o in options.get("options") or [] if isinstance(o, dict) and o.get("key") == live[full]),
                    None,
                )
                if chosen is not None:
                    _expand(out, live, chosen.get("inputs") or {}, path)
                    out[section][full] = spec
            elif kind == AUTOGROW:
                _expand(out, live, _autogrow_entries(options.get("template") or {}, live, path), path)
            elif kind == DYNAMIC_SLOT:
                if full in live:
                    _expand(out, live, options.get("inputs") or {}, path)
                    out[section][full] = spec
            else:
                out[section][full] = spec


def _autogrow_entries(template, live, path):
    if not isinstance(template, dict):
        return {}
    if "names" in template:
        names = list(template.get("names") or [])
    elif "prefix" in template:
        names = [f"{template['prefix']}{i}" for i in range(int(template.get("max") or 0))]
    else:
        return {}
    entry = None
    for section in (template.get("input") or {}).values():
        if isinstance(section, dict) and section:
            entry = next(iter(section.values()))
    minimum = template.get("min") or 0
    found: dict[str, dict] = {}
    for i, name in enumerate(names):
        if ".".join(path + [name]) in live and entry is not None:
            found.setdefault("required" if i < minimum else "optional", {})[name] = entry
    return found


def _spec_parts(spec):
    """(input type, options) of one catalog entry; a bare type (not a real catalog's shape) has
    no options."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return spec, {}
    return spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _combo_choices(input_type, options):
    if isinstance(input_type, list):
        return input_type
    if input_type == "COMBO" and isinstance(options, dict) and isinstance(options.get("options"), list):
        return options["options"]
    return None


def is_upload(options) -> bool:
    return isinstance(options, dict) and any(
        value
        for key, value in options.items()
        if isinstance(key, str) and (key in ("upload", "3d") or key.endswith(UPLOAD_SUFFIX))
    )


def upload_specs(value):
    """Every catalog entry ``[type, options]`` flagged as an upload under ``value`` (a class's
    ``input`` sections), V3 dynamic options included; the lists themselves, not copies."""
    if isinstance(value, dict):
        for child in value.values():
            yield from upload_specs(child)
    elif isinstance(value, list):
        if len(value) > 1 and isinstance(value[1], dict) and is_upload(value[1]):
            yield value
        else:
            for child in value:
                yield from upload_specs(child)


# Values ComfyUI itself puts first in an upload input's file list, by node class and input:
# Load3D's and Load3DAdvanced's "none" (comfy_extras/nodes_load_3d.py, 0.28). Named one by one:
# any other entry of the GPU host's list may be a participant's file or folder.
PLACEHOLDERS = {("Load3D", "model_file"): ("none",), ("Load3DAdvanced", "model_file"): ("none",)}


def placeholders(class_type, input_name, options) -> list[str]:
    """ComfyUI's own leading placeholders of this input's file list, which stay when it is replaced."""
    known = PLACEHOLDERS.get((class_type, input_name), ())
    found: list[str] = []
    for value in options if isinstance(options, list) else []:
        if value not in known:
            break
        found.append(value)
    return found


def names_a_file(value: str, class_type, input_name, input_type, options: dict) -> bool:
    """Does an upload input's value name a file? Not ComfyUI's own "no file" choice (Load3D's
    "none"), nor an empty text input with an upload widget (Painter's mask, 0.28)."""
    if value in placeholders(class_type, input_name, options.get("options")):
        return False
    return not (input_type == "STRING" and not value.strip())


def upload_classes(object_info) -> set[str]:
    """Classes with an input flagged as an upload anywhere in their inputs."""
    return {
        name
        for name, info in (object_info or {}).items()
        if isinstance(info, dict) and next(upload_specs(info.get("input")), None) is not None
    }


def types_compatible(received_type, input_type) -> bool:
    """May an output of ``received_type`` feed an input of ``input_type``? Comma-separated types
    match when they share one type; "*" matches anything; identical lists (COMBO) match."""
    if received_type == input_type:
        return True
    if received_type in WILDCARD_TYPES or input_type in WILDCARD_TYPES:
        return True
    if isinstance(received_type, list) and input_type == "COMBO":
        return True  # custom nodes that output a list of options as their type
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {part.strip() for part in received_type.split(",")}
    accepted = {part.strip() for part in input_type.split(",")}
    return bool(received & accepted)


def _in_targets(node_id, targets) -> bool:
    if targets is None:
        return True
    try:
        return node_id in targets
    except TypeError:
        return False


def output_node_ids(prompt, object_info, partial_execution_targets=None) -> list[str]:
    """Ids of the nodes whose class is an output node (``output_node`` true), in prompt order,
    narrowed to ``partial_execution_targets`` when given (by ``in``, as ComfyUI tests it)."""
    if not isinstance(prompt, dict) or not object_info:
        return []
    found = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            continue
        info = _class_info(object_info, node.get("class_type"))
        if info is not None and info.get("output_node") is True and _in_targets(node_id, partial_execution_targets):
            found.append(node_id)
    return found


class _Validator:
    """ComfyUI's recursive per-node validation, memoised in ``validated`` like its namesake:
    node id -> (valid, errors of that node, node id). Exceptions raised while reading a link
    leave the node's validation exactly where ComfyUI's would."""

    def __init__(self, prompt, object_info, file_exists=None, version="0.8.0"):
        self.prompt = prompt
        self.object_info = object_info
        self.file_exists = file_exists
        self.validated = {}
        self.visiting: list = []
        self.cycles_named = releases.version_tuple(version) >= releases.DEPENDENCY_CYCLE_SINCE
        self.repr_values = releases.version_tuple(version) >= releases.REPR_NOT_IN_LIST_SINCE

    def node(self, node_id):
        if node_id in self.validated:
            return self.validated[node_id]
        if node_id in self.visiting:
            if not self.cycles_named:
                # Earlier releases recurse until Python's limit and report nothing useful.
                raise RecursionError(f"maximum recursion depth exceeded: node {node_id} depends on itself")
            self._cycle(node_id)
            return self.validated[node_id]
        self.visiting.append(node_id)
        try:
            result = self._check(node_id)
        finally:
            self.visiting.pop()
        # A cycle found below may have put an error on this node already: join them, as ComfyUI does.
        before = self.validated.get(node_id, (True, [], node_id))
        result = (before[0] and result[0] is True, before[1] + [e for e in result[1] if e not in before[1]], node_id)
        self.validated[node_id] = result
        return result

    def _cycle(self, node_id):
        """ComfyUI 0.28's answer to a loop of links: the same error on every node of the loop."""
        path = self.visiting[self.visiting.index(node_id) :] + [node_id]
        nodes = list(dict.fromkeys(path))
        details = " -> ".join(f"{n} ({self.prompt[n]['class_type']})" for n in path)
        for n in nodes:
            self.validated[n] = (
                False,
                [
                    _error(
                        "dependency_cycle", "Dependency cycle detected", details, {"node_id": n, "cycle_nodes": nodes}
                    )
                ],
                n,
            )

    def _check(self, node_id):
        node = self.prompt[node_id]
        inputs = node["inputs"]
        class_info = self.object_info[node["class_type"]]
        errors = []
        valid = True
        uploads = []
        finalized = _finalized_inputs(class_info, inputs)
        for section in ("required", "optional"):
            for name, spec in finalized[section].items():
                if section == "optional" and name in finalized["required"]:
                    continue
                input_type, options = _spec_parts(spec)
                if name not in inputs:
                    if section == "required":
                        # ComfyUI 0.8 names a V3 node's missing input by its last part only.
                        errors.append(
                            _error(
                                "required_input_missing",
                                "Required input is missing",
                                name.split(".")[-1],
                                {"input_name": name},
                            )
                        )
                    continue
                value = inputs[name]
                config = [input_type, options]
                if isinstance(value, list):
                    if not self._link(name, value, input_type, config, errors):
                        valid = False
                    continue
                if is_upload(options):
                    uploads.append((name, value, input_type, options))
                self._widget(name, value, input_type, options, config, errors)
        for name, value, input_type, options in uploads:
            self._upload(node["class_type"], name, value, input_type, options, errors)
        return (False, errors, node_id) if errors or not valid else (True, [], node_id)

    def _upload(self, class_type, name, value, input_type, options, errors):
        """The loader's own check that its file exists, against the participant's workspace."""
        if self.file_exists is None:
            return
        if isinstance(value, dict) and "__value__" in value:
            value = value["__value__"]
        if not isinstance(value, str) or not names_a_file(value, class_type, name, input_type, options):
            return
        folder = options.get("image_folder")
        item = parse_annotated_name(value, folder if folder in FOLDER_TYPES else "input")
        if item["filename"] and self.file_exists(item):
            return
        flag = next((k for k in MISSING_FILE if options.get(k)), None)
        message = (MISSING_FILE[flag] if flag else "Invalid file: {}").format(value)
        errors.append(
            _error(
                "custom_validation_failed",
                "Custom validation failed for node",
                f"{name} - {message}",
                {"input_name": name},
            )
        )

    def _link(self, name, value, input_type, config, errors) -> bool:
        """Check one linked input; False when it or the node it links to is invalid."""
        if len(value) != 2:
            errors.append(
                _error(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    f"{name}",
                    {"input_name": name, "input_config": config, "received_value": value},
                )
            )
            return True  # the error is this node's own; the linked node is not looked at
        source_id, slot = value
        # A missing node or slot raises out of this node's validation, as in ComfyUI.
        source = self.prompt[source_id]
        return_types = tuple(self.object_info[source["class_type"]].get("output") or ())
        received_type = return_types[slot]
        if not types_compatible(received_type, input_type):
            details = f"{name}, received_type({received_type}) mismatch input_type({input_type})"
            errors.append(
                _error(
                    "return_type_mismatch",
                    "Return type mismatch between linked nodes",
                    details,
                    {"input_name": name, "input_config": config, "received_type": received_type, "linked_node": value},
                )
            )
            return True
        try:
            return self.node(source_id)[0] is not False
        except Exception as exc:  # noqa: BLE001 - ComfyUI reports any exception of the inner node
            self.validated[source_id] = (
                False,
                [
                    _error(
                        "exception_during_inner_validation",
                        "Exception when validating inner node",
                        str(exc),
                        {
                            "input_name": name,
                            "input_config": config,
                            "exception_message": str(exc),
                            "exception_type": _type_name(exc),
                            "traceback": [],
                            "linked_node": value,
                        },
                    )
                ],
                source_id,
            )
            return False

    def _widget(self, name, value, input_type, options, config, errors):
        """Check one widget value: conversion, range, then choices."""
        try:
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]  # how the frontend sends a list-valued widget
            if input_type == "INT":
                value = int(value)
            if input_type == "FLOAT":
                value = float(value)
            if input_type == "STRING":
                value = str(value)
            if input_type == "BOOLEAN":
                value = bool(value)
        except Exception as exc:  # noqa: BLE001 - ComfyUI reports any conversion failure
            errors.append(
                _error(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {input_type} value",
                    f"{name}, {value}, {exc}",
                    {
                        "input_name": name,
                        "input_config": config,
                        "received_value": value,
                        "exception_message": str(exc),
                    },
                )
            )
            return
        if is_upload(options):
            # ComfyUI's loaders check their file themselves (VALIDATE_INPUTS), and the catalog's
            # list is the GPU host's input folder, not the participant's: see input_files().
            return
        extra = {"input_name": name, "input_config": config, "received_value": value}
        if "min" in options and value < options["min"]:
            message = "Value {} smaller than min of {}".format(value, options["min"])
            errors.append(_error("value_smaller_than_min", message, f"{name}", extra))
            return
        if "max" in options and value > options["max"]:
            message = "Value {} bigger than max of {}".format(value, options["max"])
            errors.append(_error("value_bigger_than_max", message, f"{name}", extra))
            return
        choices = _combo_choices(input_type, options)
        if choices is not None and value not in choices:
            if len(choices) > LIST_INFO_LIMIT:
                list_info, shown_config = f"(list of length {len(choices)})", None
            else:
                list_info, shown_config = str(choices), config
            shown = repr(value) if self.repr_values else f"'{value}'"
            errors.append(
                _error(
                    "value_not_in_list",
                    "Value not in list",
                    f"{name}: {shown} not in {list_info}",
                    {"input_name": name, "input_config": shown_config, "received_value": value},
                )
            )


def _type_name(exc) -> str:
    klass = type(exc)
    return klass.__qualname__ if klass.__module__ == "builtins" else f"{klass.__module__}.{klass.__qualname__}"


def _class_error(prompt, object_info, version):
    """ComfyUI's first pass: every node has a class_type the server knows (first failure wins),
    answered as the GPU host's release does (releases.MISSING_NODE_TYPE_SINCE)."""
    named = releases.version_tuple(version) >= releases.MISSING_NODE_TYPE_SINCE
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            if not named:
                return _invalid_prompt("Cannot execute because a node is missing the class_type property.", node_id)
            meta = node.get("_meta") if isinstance(node, dict) else None
            title = meta.get("title") if isinstance(meta, dict) else None
            return _error(
                "missing_node_type",
                f"Node '{title or f'ID #{node_id}'}' has no class_type. The workflow "
                "may be corrupted or a custom node is missing.",
                f"Node ID '#{node_id}'",
                {"node_id": node_id, "class_type": None, "node_title": title},
            )
        class_type = node["class_type"]
        if object_info is not None:
            known = _class_info(object_info, class_type) is not None
        else:
            known = isinstance(class_type, str) and class_type != ""
        if known:
            continue
        if not named:
            return _invalid_prompt(f"Cannot execute because node {class_type} does not exist.", node_id)
        meta = node.get("_meta")
        title = meta.get("title", class_type) if isinstance(meta, dict) else class_type
        return _error(
            "missing_node_type",
            f"Node '{title}' not found. The custom node may not be installed.",
            f"Node ID '#{node_id}'",
            {"node_id": node_id, "class_type": class_type, "node_title": title},
        )
    return None


def _shape_error(prompt, check_links):
    """Our own up-front checks: inputs are objects; without a catalog, links are well formed and
    point at nodes of the prompt (with one, links are checked the way ComfyUI does, and a node
    with no inputs key at all fails where ComfyUI's validation reads it: a KeyError)."""
    for node_id, node in prompt.items():
        inputs, class_type = node.get("inputs"), node["class_type"]
        if "inputs" not in node and not check_links:
            continue
        if not isinstance(inputs, dict):
            return _invalid_prompt(
                f"Cannot execute because the inputs of node {class_type} are not an object.", node_id
            )
        if not check_links:
            continue
        for name, value in inputs.items():
            if not isinstance(value, list):
                continue
            if len(value) != 2 or not isinstance(value[1], int) or isinstance(value[1], bool) or value[1] < 0:
                return _invalid_prompt(
                    f"Cannot execute because input {name} of node {class_type} is a bad link: "
                    "it must be a length-2 list of [node_id, slot_index].",
                    node_id,
                )
            if not isinstance(value[0], str) or value[0] not in prompt:
                return _invalid_prompt(
                    f"Cannot execute because input {name} of node {class_type} links to node "
                    f"#{value[0]}, which is not in the prompt.",
                    node_id,
                )
    return None


def _validate_output(validator, output) -> tuple:
    """(valid, reasons) of one output node, as ComfyUI reports any exception while validating it."""
    try:
        valid, reasons, _ = validator.node(output)
    except Exception as exc:  # noqa: BLE001 - ComfyUI reports any exception of the output node
        reasons = [
            _error(
                "exception_during_validation",
                "Exception when validating node",
                str(exc),
                {"exception_type": _type_name(exc), "traceback": []},
            )
        ]
        validator.validated[output] = (False, reasons, output)
        return False, reasons
    return valid, reasons


def validate_prompt(
    prompt, object_info, partial_execution_targets=None, *, require_all_outputs=False, file_exists=None, version="0.8.0"
):
    """Validate ``prompt`` (API format: node id -> {"class_type", "inputs"}) against ``object_info``.

    Returns ``(error, node_errors)``: ``error`` is None when the prompt may be queued, else
    ComfyUI's ``{"type", "message", "details", "extra_info"}``; ``node_errors`` maps node ids to
    ``{"errors": [...], "dependent_outputs": [...], "class_type": ...}``, the body ComfyUI sends
    back as ``{"error": error, "node_errors": node_errors}`` with status 400.

    ``object_info`` None (no catalog published yet): structural checks only.
    ``require_all_outputs`` False (the default) is ComfyUI's own rule: the prompt fails only
    when no output is valid; otherwise ``error`` is None and ``node_errors`` still lists the bad
    nodes, and only the valid outputs run (see ``valid_outputs``). True fails on any bad output.
    ``file_exists(item)`` (item as ``parse_annotated_name`` gives it) stands for the loaders'
    own check of their file: without it, upload inputs are not checked at all.
    ``version``: the GPU host's ComfyUI release, where releases answer differently.
    """
    if not isinstance(prompt, dict):
        return _invalid_prompt("Cannot execute because the prompt is not an object of nodes."), {}
    error = _class_error(prompt, object_info, version) or _shape_error(prompt, check_links=object_info is None)
    if error is not None:
        return error, {}
    if object_info is None:
        if not prompt:
            return _error("prompt_no_outputs", "Prompt has no outputs"), {}
        return None, {}

    outputs = output_node_ids(prompt, object_info, partial_execution_targets)
    if not outputs:
        return _error("prompt_no_outputs", "Prompt has no outputs"), {}

    validator = _Validator(prompt, object_info, file_exists, version)
    good: list = []
    failed: list = []
    node_errors: dict = {}
    for output in outputs:
        valid, reasons = _validate_output(validator, output)
        if valid is True:
            good.append(output)
            continue
        failed.append((output, reasons))
        for node_id, (node_valid, node_reasons, _) in validator.validated.items():
            if node_valid is not True and node_reasons:
                entry = node_errors.setdefault(
                    node_id,
                    {"errors": node_reasons, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]},
                )
                entry["dependent_outputs"].append(output)

    node_errors = copy.deepcopy(node_errors)  # detach from the catalog's option dicts
    if failed and (require_all_outputs or not good):
        details = "\n".join(f"{reason['message']}: {reason['details']}" for _, reasons in failed for reason in reasons)
        return _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details), node_errors
    return None, node_errors


def valid_outputs(prompt, object_info, node_errors, partial_execution_targets=None) -> list[str]:
    """The outputs ComfyUI runs of a prompt it accepted: those no node error depends on."""
    failed = {o for entry in node_errors.values() for o in entry.get("dependent_outputs") or ()}
    return [o for o in output_node_ids(prompt, object_info, partial_execution_targets) if o not in failed]


def _needed_nodes(prompt, outputs):
    """Ids of the outputs and every node they link to, directly or not."""
    needed, stack = set(), list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in needed or not isinstance(prompt.get(node_id), dict):
            continue
        needed.add(node_id)
        inputs = prompt[node_id].get("inputs")
        for value in inputs.values() if isinstance(inputs, dict) else ():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                stack.append(value[0])
    return needed


def parse_annotated_name(value, default_type="input") -> dict:
    """``"sub/x.png [output]"`` -> {"filename": "x.png", "subfolder": "sub", "type": "output"}.
    Like ComfyUI, a name ending in "[output]", "[input]" or "[temp]" loses that tag and the one
    character before it (the space the frontend writes)."""
    folder_type = default_type
    for kind in FOLDER_TYPES:
        if value.endswith(f"[{kind}]"):
            value, folder_type = value[: -(len(kind) + 3)], kind
            break
    subfolder, _, filename = value.rpartition("/")
    return {"filename": filename, "subfolder": subfolder, "type": folder_type}


def _upload_inputs(class_type, class_info):
    """(input name, default folder type) of the inputs of a class that name input files."""
    found = []
    if class_info is not None:
        for name in _declared_inputs(class_info):
            _, _, options = _input_spec(class_info, name)
            if is_upload(options):
                folder = options.get("image_folder")
                found.append((name, folder if folder in FOLDER_TYPES else "input"))
    known = KNOWN_UPLOADS.get(class_type) if isinstance(class_type, str) else None
    if known is not None and known[0] not in [name for name, _ in found]:
        if class_info is None or known[0] in _declared_inputs(class_info):
            found.append(known)
    return found


def input_files(prompt, object_info, partial_execution_targets=None) -> list[dict]:
    """Files the prompt reads from the input folder (LoadImage-style upload inputs), as
    ``{"filename", "subfolder", "type"}`` in prompt order, without duplicates. An empty name is
    returned too (ComfyUI's loader would refuse it), so that the caller's existence check fails.

    With a catalog: inputs whose options carry an upload flag (``image_upload``,
    ``video_upload``, ``audio_upload``, ``file_upload``, ``upload``), of the nodes the outputs
    depend on (a stray LoadImage that ComfyUI would never run is not asked for). Without one:
    the core loader classes' inputs, of every node. Linked inputs are skipped. The names are
    returned as written: the caller must keep them inside the workspace.
    """
    if not isinstance(prompt, dict):
        return []
    if object_info:
        needed = _needed_nodes(prompt, output_node_ids(prompt, object_info, partial_execution_targets))
    else:
        needed = set(prompt)
    found = []
    for node_id, node in prompt.items():
        if node_id not in needed or not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        class_type = node.get("class_type")
        class_info = _class_info(object_info, class_type) if object_info else None
        for name, default_type in _upload_inputs(class_type, class_info):
            value = node["inputs"].get(name)
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]
            if not isinstance(value, str):
                continue
            if class_info is not None:
                input_type, _, options = _input_spec(class_info, name)
                if not names_a_file(value, class_type, name, input_type, options or {}):
                    continue
            item = parse_annotated_name(value, default_type)
            if item not in found:
                found.append(item)
    return found
