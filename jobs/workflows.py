"""Workshop workflows: the instructor's templates, shown in every workspace's Workflows sidebar.

They appear as `workflows/workshop/<name>.json` in each workspace's userdata. The originals are
read-only; when a participant saves one, their copy lives in their own userdata and wins.
Sources, later ones winning: the model-free "hello" workflow shipped here, the official
templates named in WORKSHOP_TEMPLATES (from the comfyui-workflow-templates package), and the
operator's own files in <WORKSHOP_DATA_DIR>/workflows/.
"""

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from django.conf import settings

from accounts.models import Workspace
from workshop.lib import jsonbody
from workshop.lib.files import atomic_write, check_name_lengths

from . import events

FOLDER = "workflows/workshop/"
SHIPPED = Path(__file__).parent / "shipped_workflows"


@lru_cache(maxsize=1)
def official_files() -> dict[str, Path]:
    """Every file of the official workflow templates (Templates dialog): index.json and its
    translations, each template's .json and its thumbnails, by file name.

    comfyui-workflow-templates 0.3 and later ships in bundles (a JSON package and media
    packages, found through the core package's manifest); older releases had one templates/
    folder, still read when present. Empty when the package is not installed.
    """
    found: dict[str, Path] = {}
    try:  # optional: the templates come from PyPI packages that may be missing
        import comfyui_workflow_templates as meta
    except ImportError:
        return found
    legacy = Path(meta.__file__).parent / "templates"
    if legacy.is_dir():
        return {p.name: p for p in legacy.iterdir() if p.is_file()}
    try:
        json_dir = Path(str(resources.files("comfyui_workflow_templates_json") / "templates"))
        found.update({p.name: p for p in json_dir.iterdir() if p.is_file()})
        from comfyui_workflow_templates_core import iter_templates  # optional, as above

        for entry in iter_templates():
            for asset in entry.assets:
                try:
                    found.setdefault(asset.filename, Path(meta.get_asset_path(entry.template_id, asset.filename)))
                except (FileNotFoundError, KeyError):
                    continue  # a media bundle that is not installed: the dialog shows no thumbnail
    except (ImportError, ModuleNotFoundError, FileNotFoundError):
        pass
    return found


def _paid(template: dict) -> bool:
    """A template built on Comfy.org's paid API nodes (its "Partner Nodes"): it needs a
    Comfy.org account and credits, which a workshop's participants do not have."""
    return template.get("openSource") is False or "API" in (template.get("tags") or [])


@lru_cache(maxsize=32)
def template_index(name: str) -> bytes | None:
    """The Templates dialog's index (`index.json` or a translation of it) without the templates
    that need API nodes, whose nodes the catalog leaves out too (Catalog.current_object_info)."""
    path = official_files().get(name)
    if path is None:
        return None
    categories = json.loads(path.read_text())
    if not isinstance(categories, list):
        return path.read_bytes()
    kept = []
    for category in categories:
        if isinstance(category, dict) and isinstance(category.get("templates"), list):
            category = {**category, "templates": [t for t in category["templates"] if not _paid(t)]}
            if not category["templates"]:
                continue
        kept.append(category)
    return json.dumps(kept).encode()


def sources() -> dict[str, Path]:
    """name.json -> file, for every workshop workflow."""
    found: dict[str, Path] = {p.name: p for p in sorted(SHIPPED.glob("*.json"))}
    official = official_files()
    for name in settings.WORKSHOP_TEMPLATES:
        if f"{name}.json" in official:
            found[f"{name}.json"] = official[f"{name}.json"]
    own = Path(settings.WORKSHOP_DATA_DIR) / "workflows"
    if own.is_dir():
        found.update({p.name: p for p in sorted(own.glob("*.json"))})
    return found


def original(userdata_path: str) -> Path | None:
    """The read-only original behind `workflows/workshop/<name>.json`, if there is one."""
    if not userdata_path.startswith(FOLDER):
        return None
    return sources().get(userdata_path.removeprefix(FOLDER))


def required_models(graph) -> list[tuple[str, str]]:
    """(file name, model folder) of every model a workflow names, subgraphs included: the
    `models` lists ComfyUI's templates carry on their loader nodes (what the Templates dialog
    offers to download), in the order first met, without duplicates."""
    found: list[tuple[str, str]] = []

    def walk(value):
        if isinstance(value, dict):
            for model in value.get("models") or [] if isinstance(value.get("models"), list) else []:
                if isinstance(model, dict) and model.get("name"):
                    pair = (str(model["name"]), str(model.get("directory", "")))
                    if pair not in found:
                        found.append(pair)
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    walk(graph)
    return found


def saved_workflows(workspace) -> list[str]:
    """The workflows a workspace saved itself (its userdata), as paths under workflows/."""
    root = workspace.root / "userdata" / "workflows"
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.json")
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    )


def read_saved(workspace, name: str) -> bytes:
    if name not in saved_workflows(workspace):
        raise ValueError("No such saved workflow")
    return (workspace.root / "userdata" / "workflows" / name).read_bytes()


def pushed_workflows() -> list[str]:
    return sorted(sources())


def push_to_everyone(name: str, content: bytes, *, open_now: bool = False) -> dict:
    """The instructor's workflow into every workspace's sidebar (workflows/workshop/<name>): it is
    one of the operator's own workshop workflows from now on. Open workspaces hear of it."""
    stem = re.sub(r"[^\w.\- ]+", "_", Path(name).name).strip(". ") or "workflow"
    if not stem.lower().endswith(".json"):
        stem += ".json"
    check_name_lengths([stem])
    try:
        graph = jsonbody.loads(content)
    except jsonbody.BadJSON as exc:
        raise ValueError(f"Not a workflow: {exc}") from None
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise ValueError("Not a ComfyUI workflow (saved from the UI: it has a list of nodes)")
    folder = Path(settings.WORKSHOP_DATA_DIR) / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / stem
    atomic_write(target, json.dumps(graph))
    path = FOLDER + stem
    events.workflow_pushed(path, stem.removesuffix(".json"), open_now)
    return {"name": stem, "path": path, "count": Workspace.objects.count()}
