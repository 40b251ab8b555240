"""Global subgraphs (blueprints) as a ComfyUI from 0.28 on ships them in its `blueprints/` folder.

ComfyUI 0.28.0 lists 89, 4,236,694 bytes when each is fetched (shared/comfyui/v0.28.0/
server_facts.json), among them LTX-2's text-to-video and image-to-video. These are made from the
LTX-2 templates of the comfyui-workflow-templates package (PyPI), in the blueprint's shape: a
workflow whose one node is the subgraph, the subgraph in `definitions` with its category. The
rest are copies under other names, grown to the recorded total.
"""

import copy
import hashlib
import json
from pathlib import Path

import comfyui_workflow_templates_json

RECORDED_COUNT, RECORDED_BYTES = 89, 4_236_694
# (template, category, name): the template's subgraph becomes the blueprint of that name.
LTX2 = [
    ("video_ltx2_t2v", "Video generation and editing/Text to video", "Text to Video (LTX 2.0)"),
    ("video_ltx2_i2v", "Video generation and editing/Image to video", "Image to Video (LTX 2.0)"),
    ("video_ltx2_3_t2v", "Video generation and editing/Text to video", "Text to Video (LTX-2.3)"),
    ("video_ltx2_3_i2v", "Video generation and editing/Image to video", "Image to Video (LTX-2.3)"),
]
TEMPLATES = Path(comfyui_workflow_templates_json.__file__).parent / "templates"


def _blueprint(template: str, category: str, name: str) -> str:
    """The blueprint file's text, from a template with one subgraph node."""
    workflow = json.loads((TEMPLATES / f"{template}.json").read_text())
    subgraph = copy.deepcopy(workflow["definitions"]["subgraphs"][0])
    subgraph["category"], subgraph["name"] = category, name
    node = copy.deepcopy(next(n for n in workflow["nodes"] if n["type"] == subgraph["id"]))
    for slot in node.get("inputs") or []:
        slot["link"] = None
    for slot in node.get("outputs") or []:
        slot["links"] = []
    node["pos"] = [0, 0]
    blueprint = {
        "revision": 0,
        "last_node_id": node["id"],
        "last_link_id": 0,
        "nodes": [node],
        "links": [],
        "version": 0.4,
        "definitions": {"subgraphs": [subgraph]},
        "extra": {},
    }
    return json.dumps(blueprint)


def entry_id(name: str) -> str:
    # subgraph_manager: sha256 of the source and the file's path
    return hashlib.sha256(f"templates/ComfyUI/blueprints/{name}.json".encode()).hexdigest()


def _filler(name: str, size: int) -> str:
    """A small blueprint (one empty subgraph) of about `size` bytes as a JSON answer."""
    sid = hashlib.md5(name.encode()).hexdigest()
    sid = f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:32]}"
    subgraph = {
        "id": sid,
        "version": 1,
        "state": {"lastGroupId": 0, "lastNodeId": 0, "lastLinkId": 0, "lastRerouteId": 0},
        "revision": 0,
        "config": {},
        "name": name,
        "category": "Workshop double/Fillers",
        "inputNode": {"id": -10, "bounding": [0, 0, 120, 60]},
        "outputNode": {"id": -20, "bounding": [400, 0, 120, 60]},
        "inputs": [],
        "outputs": [],
        "widgets": [],
        "nodes": [],
        "groups": [],
        "links": [],
        "extra": {},
    }
    node = {
        "id": 1,
        "type": sid,
        "pos": [0, 0],
        "size": [200, 60],
        "flags": {},
        "order": 0,
        "mode": 0,
        "inputs": [],
        "outputs": [],
        "properties": {},
        "widgets_values": [],
    }
    blueprint = {
        "revision": 0,
        "last_node_id": 1,
        "last_link_id": 0,
        "nodes": [node],
        "links": [],
        "version": 0.4,
        "definitions": {"subgraphs": [subgraph]},
        "extra": {},
    }
    text = json.dumps(blueprint)
    # Real blueprints are tens of kilobytes: notes make up the difference.
    blueprint["extra"]["notes"] = "x" * max(0, size - len(text) - 120)
    return json.dumps(blueprint)


def make(count: int = RECORDED_COUNT, total_bytes: int = RECORDED_BYTES) -> dict[str, dict]:
    """{id: ComfyUI's /global_subgraphs/{id} answer}: `count` blueprints, about `total_bytes`
    in all as JSON answers."""
    entries: dict[str, dict] = {}

    def add(name, data):
        entries[entry_id(name)] = {"source": "templates", "name": name, "info": {"node_pack": "comfyui"}, "data": data}

    for template, category, name in LTX2[:count]:
        add(name, _blueprint(template, category, name))
    fillers = count - len(entries)
    if fillers > 0:
        share = max(0, total_bytes - sum(len(json.dumps(e)) for e in entries.values())) // fillers
        for n in range(fillers):
            add(f"Blueprint {n:03d}", _filler(f"Blueprint {n:03d}", share))
    return entries
