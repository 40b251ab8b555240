"""A workspace's own models in its loaders: merged into that workspace's object_info only, and
the only participant model names its prompts may use.

The loaders that list a model folder are the known ones (LoraLoader and friends) plus any input
whose options are exactly that folder's files on the GPU host (a custom loader); the names are
added there as `ws-<slug>/<name>`, the folder each GPU worker places them in.
"""

import copy

from accounts.models import WorkspaceModel

KNOWN_LOADERS = {
    "loras": {"LoraLoader": ("lora_name",), "LoraLoaderModelOnly": ("lora_name",)},
    "checkpoints": {"CheckpointLoaderSimple": ("ckpt_name",), "ImageOnlyCheckpointLoader": ("ckpt_name",)},
    "vae": {"VAELoader": ("vae_name",)},
    "embeddings": {},
    "upscale_models": {"UpscaleModelLoader": ("model_name",)},
    "controlnet": {"ControlNetLoader": ("control_net_name",)},
}


def _options(spec):
    if isinstance(spec, list) and spec:
        if isinstance(spec[0], list):
            return spec[0]
        if (
            spec[0] == "COMBO"
            and len(spec) > 1
            and isinstance(spec[1], dict)
            and isinstance(spec[1].get("options"), list)
        ):
            return spec[1]["options"]
    return None


def loader_inputs(object_info: dict, model_files: dict, folder: str) -> list[tuple[str, str, str]]:
    """(class, section, input) of every input that lists `folder`'s models."""
    known = KNOWN_LOADERS.get(folder, {})
    listed = model_files.get(folder) or []
    found = []
    for class_type, info in object_info.items():
        for section_name, section in ((info or {}).get("input") or {}).items():
            if not isinstance(section, dict):
                continue
            for name, spec in section.items():
                options = _options(spec)
                if options is None:
                    continue
                if name in known.get(class_type, ()) or (listed and options == listed):
                    found.append((class_type, section_name, name))
    return found


def own_models(workspace) -> list[WorkspaceModel]:
    return list(WorkspaceModel.objects.filter(workspace=workspace).select_related("workspace"))


def with_own_models(object_info: dict | None, model_files: dict, models: list[WorkspaceModel]) -> dict | None:
    """object_info with `models` added to their loaders (the changed classes copied, the rest shared)."""
    if not object_info or not models:
        return object_info
    patched = dict(object_info)
    for folder in {m.folder for m in models}:
        names = [m.comfy_name for m in models if m.folder == folder]
        for class_type, section, name in loader_inputs(object_info, model_files, folder):
            if patched[class_type] is object_info[class_type]:
                patched[class_type] = copy.deepcopy(object_info[class_type])
            options = _options(patched[class_type]["input"][section][name])
            options.extend(n for n in names if n not in options)
    return patched


def models_used(prompt: dict, models: list[WorkspaceModel]) -> list[WorkspaceModel]:
    """The workspace's models a (validated) prompt names in any input: what its job carries."""
    by_name = {m.comfy_name: m for m in models}
    used = {}
    for node in (prompt or {}).values():
        for value in ((node or {}).get("inputs") or {}).values() if isinstance(node, dict) else ():
            if isinstance(value, str) and value in by_name:
                used[value] = by_name[value]
    return list(used.values())
