"""The ComfyUI releases the platform stands in front of: which it supports, which it was tried
against, and where their answers differ (the bridge answers as the GPU host's release does).

Pure data and functions: workshop_doctor, the rehearsal and validation read them here.
"""

import re

# 0.8.0, the first with LTX-2, to the current line, whose frontend the app serves.
SUPPORTED = ((0, 8, 0), (0, 38, 99))
SUPPORTED_TEXT = "0.8.0 to 0.38.x"

# Releases a real server of was run in front of the platform (runs, the UI in Chromium, worker
# kill, validation answer for answer), with what was tried. 0.38.1 is what the GPU image
# installs; it was built, not run here (no GPU, and 0.28.0 is the newest that runs on this CPU).
TRIED = {
    "0.8.0": "a real server: runs, the UI in Chromium, worker kill, fairness, 17 validation answers",
    "0.28.0": "a real server: runs, the UI in Chromium, a 5.6 MB catalog, worker and ComfyUI kills, fairness, "
    "17 validation answers",
}

# Where a release answers differently from the one before it: (first release, what changed).
# Between the two releases tried, a change is placed at the first release after its upstream
# merge (missing_node_type: ComfyUI pull request 12194, 31 January 2026, first in 0.12.0), or at
# the tried release where it was seen when that is not known.
MISSING_NODE_TYPE_SINCE = (0, 12, 0)
BLUEPRINTS_SINCE = (0, 28, 0)
LOAD3D_NONE_SINCE = (0, 28, 0)
DEPENDENCY_CYCLE_SINCE = (0, 28, 0)
REPR_NOT_IN_LIST_SINCE = (0, 28, 0)
DIFFERENCES = [
    (
        MISSING_NODE_TYPE_SINCE,
        "an unknown node class is refused as missing_node_type, with node_id, class_type "
        "and node_title, so that the UI can name the missing pack (before: invalid_prompt)",
    ),
    (
        BLUEPRINTS_SINCE,
        "global subgraphs (blueprints) ship with ComfyUI: 89 on 0.28.0 (4.2 MB), none on 0.8.0; "
        "the worker publishes them one by one",
    ),
    (LOAD3D_NONE_SINCE, 'Load3D and Load3DAdvanced offer ComfyUI\'s own placeholder "none" in model_file'),
    (
        DEPENDENCY_CYCLE_SINCE,
        "a loop of links is refused as dependency_cycle on every node of the loop (before: Python's recursion limit)",
    ),
    (
        REPR_NOT_IN_LIST_SINCE,
        "a value not in a COMBO's list is shown as Python writes it (3, not '3'), as a "
        "list may now take several values",
    ),
]


def version_tuple(text: str) -> tuple[int, int, int]:
    """(0, 28, 0) of "0.28.0", "v0.28.0", "0.28.0-rc1" or "0.3.40-12-gabc": each piece's
    leading digits only."""
    pieces = (text or "0").strip().lstrip("v").split(".")[:3]
    parts = [int(re.sub(r"\D.*", "", piece) or 0) for piece in pieces]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def supported(version: str) -> bool:
    return SUPPORTED[0] <= version_tuple(version) <= SUPPORTED[1]


def nearest_tried(version: str) -> str:
    """The tried release closest below `version` (or the oldest tried)."""
    mine = version_tuple(version)
    below = [v for v in TRIED if version_tuple(v) <= mine]
    return max(below, key=version_tuple) if below else min(TRIED, key=version_tuple)


def describe(version: str) -> str:
    """One line for the doctor and the rehearsal: supported, tried, and how it differs."""
    if not version:
        return "ComfyUI version unknown (the worker has not published its catalog)"
    if not supported(version):
        return f"ComfyUI {version} is outside the supported {SUPPORTED_TEXT}"
    if version in TRIED:
        return f"ComfyUI {version}: tried with the platform ({TRIED[version]})"
    near = nearest_tried(version)
    changes = [
        what
        for since, what in DIFFERENCES
        if min(version_tuple(near), version_tuple(version)) < since <= max(version_tuple(near), version_tuple(version))
    ]
    said = "; ".join(changes) if changes else "no difference known to the platform"
    return f"ComfyUI {version}: supported, not tried itself; nearest tried {near}. Differences from {near}: {said}"
