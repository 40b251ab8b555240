"""The design's arrows between the parts (DESIGN.md, docs/architecture.md), read from every
import in the tree, those inside functions included."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "jobs", "frontend_bridge", "gpuworker")
PROTOCOL = "gpuworker.protocol"
LIBRARY = "workshop.lib"

# What each part may import of the others (besides itself and third-party packages).
ALLOWED = {
    "workshop": {"workshop", "accounts", "jobs", "frontend_bridge", LIBRARY},
    "frontend_bridge": {"jobs", "accounts", LIBRARY},
    "jobs": {"accounts", PROTOCOL, LIBRARY},
    "accounts": {LIBRARY},
    "gpuworker": set(),
    LIBRARY: set(),
}


def part_of(module: str) -> str | None:
    if module == PROTOCOL or module.startswith(PROTOCOL + "."):
        return PROTOCOL
    if module == LIBRARY or module.startswith(LIBRARY + "."):
        return LIBRARY
    top = module.split(".")[0]
    return top if top in (*APPS, "workshop") else None


def imports_of(source: str, module: str) -> set[str]:
    """Every module named by an import in `source` (relative ones made absolute)."""
    package = module.rsplit(".", 1)[0] if not module.endswith("__init__") else module.removesuffix(".__init__")
    named = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from gpuworker import protocol` is an import of the protocol, not of the package.
            named.update(f"{base}.{alias.name}" for alias in node.names)
    return named


def violations(module: str, source: str) -> list[str]:
    own = part_of(module)
    found = []
    for name in sorted(imports_of(source, module)):
        target = part_of(name)
        if own is None or target is None or target == own:
            continue
        if own == "gpuworker" and target == PROTOCOL:
            continue
        if target not in ALLOWED[own]:
            found.append(f"{module} imports {name} ({own} → {target})")
    if own == "gpuworker":
        found += [
            f"{module} imports {name}: the GPU host has no Django"
            for name in imports_of(source, module)
            if name.split(".")[0] in ("django", "channels")
        ]
    return found


def tree_modules():
    for top in (*APPS, "workshop"):
        for path in sorted((ROOT / top).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield module, path.read_text(encoding="utf-8")


def test_every_import_follows_the_designs_arrows():
    found = [line for module, source in tree_modules() for line in violations(module, source)]
    assert found == [], "\n".join(found)


def test_the_check_sees_each_kind_of_forbidden_import():
    """The check itself can fail: each of these lines breaks an arrow of the design."""
    assert violations("jobs.models", "from frontend_bridge import wire")  # the queue knows no frontend
    assert violations("accounts.models", "from jobs.models import Job")  # workspaces come first
    assert violations("gpuworker.tasks", "from jobs import events")  # no database on the GPU host
    assert violations("gpuworker.tasks", "import django")
    assert violations("workshop.lib.files", "from accounts.models import Workspace")  # the library
    assert violations("jobs.worker_api", "from workshop import status")  # an app into the project
    assert violations("jobs.console", "def f():\n    from frontend_bridge import wire\n")  # inside too
    assert violations("workshop.lib.limits", "from ..metrics import count")  # relative, out of lib
    assert violations("frontend_bridge.api", "from gpuworker.protocol import TASK")  # jobs' and the worker's only
    assert not violations("jobs.models", "from gpuworker import protocol\nfrom workshop.lib.files import x")
    assert not violations("frontend_bridge.api", "from jobs.models import Job\nfrom accounts.access import a")
