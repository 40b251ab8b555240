"""Workshop workflows: the instructor's templates, shown in every workspace's Workflows sidebar.

They appear as `workflows/workshop/<name>.json` in each workspace's userdata. The originals are
read-only; when a participant saves one, their copy lives in their own userdata and wins.
Sources, later ones winning: the model-free "hello" workflow shipped here, the official
templates named in WORKSHOP_TEMPLATES (from the comfyui-workflow-templates package), and the
operator's own files in <WORKSHOP_DATA_DIR>/workflows/.
"""
from pathlib import Path

from django.conf import settings

FOLDER = "workflows/workshop/"
SHIPPED = Path(__file__).parent / "workflows"


def _package_templates() -> Path | None:
    try:
        import comfyui_workflow_templates
    except ImportError:
        return None
    return Path(comfyui_workflow_templates.__file__).parent / "templates"


def sources() -> dict[str, Path]:
    """name.json -> file, for every workshop workflow."""
    found: dict[str, Path] = {p.name: p for p in sorted(SHIPPED.glob("*.json"))}
    templates = _package_templates()
    if templates:
        for name in settings.WORKSHOP_TEMPLATES:
            path = templates / f"{name}.json"
            if path.is_file():
                found[path.name] = path
    own = Path(settings.WORKSHOP_DATA_DIR) / "workflows"
    if own.is_dir():
        found.update({p.name: p for p in sorted(own.glob("*.json"))})
    return found


def original(userdata_path: str) -> Path | None:
    """The read-only original behind `workflows/workshop/<name>.json`, if there is one."""
    if not userdata_path.startswith(FOLDER):
        return None
    return sources().get(userdata_path.removeprefix(FOLDER))
