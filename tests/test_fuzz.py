"""Property-based fuzzing of what a participant can send: prompts, upload names and bodies,
userdata paths, view queries, settings. Whatever comes in, the answer is never a 5xx, no file
outside the participant's own workspace changes, and a normal job still completes afterwards.

FUZZ_EXAMPLES sets the examples per surface (CI: 400 × 6 surfaces = 2,400).
"""

import hashlib
import io
import json
import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.models import Job, JobState, Worker

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SAME_ORIGIN = {"HTTP_SEC_FETCH_SITE": "same-origin"}

# Names as an attacker writes them: traversal, separators, NUL, very long, odd Unicode.
PIECES = st.sampled_from(
    [
        "..",
        ".",
        "",
        "/",
        "\\",
        "\x00",
        "a" * 300,
        "é" * 130,
        "~",
        "%2e%2e",
        "CON",
        " ",
        "\n",
        "../user002",
        "/etc/passwd",
        "input",
        "workflows",
        "x.png",
        ".hidden",
        "a/b",
    ]
)
NAMES = st.one_of(st.text(max_size=40), st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=5).map("".join))
JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)
RAW = st.one_of(
    JSON.map(json.dumps),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.sampled_from(["NaN", "[Infinity]", '{"prompt": NaN}', "{", "", "null", "[]", '"x"']),
)


def _png(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 40)) + chunk(b"IEND", b"")
    )


FILE_BODIES = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.integers(1, 70000), st.integers(1, 70000)).map(lambda wh: _png(*wh)),
    st.just(b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"),
)
NODE = st.fixed_dictionaries(
    {
        "class_type": st.one_of(
            st.sampled_from(["LoadImage", "SaveImage", "EmptyImage", "ImageInvert", "Nope"]), st.text(max_size=10)
        ),
        "inputs": st.one_of(st.dictionaries(st.text(max_size=10), JSON | NAMES, max_size=4), JSON),
    }
)
PROMPTS = st.one_of(st.dictionaries(st.text(max_size=4), NODE, max_size=4), JSON)


def _tree(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in root.rglob("*")
    }


@pytest.fixture
def arena(client, participants, settings, tmp_path):
    """user001 attacks; user002's workspace and a folder beside the data dir must not change."""
    client.login(username="user001", password="pw")
    other = participants[1]
    (other.root / "input" / "private.png").write_bytes(_png(4, 4))
    (other.root / "userdata" / "comfy.settings.json").write_text('{"mine": true}')
    outside = settings.WORKSHOP_DATA_DIR.parent / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "passwd").write_text("root:x:0:0")
    guarded = [other.root, outside, participants[2].root]
    before = [_tree(root) for root in guarded]

    def check(response):
        assert response.status_code < 500, (response.status_code, getattr(response, "content", b"")[:300])
        assert [_tree(root) for root in guarded] == before, "a file outside the workspace changed"
        assert sorted(p.name for p in (settings.WORKSHOP_DATA_DIR / "workspaces").iterdir()) == ["001", "002", "003"]

    client.check = check
    yield client
    _a_normal_job_still_completes(client, participants[0])


def _a_normal_job_still_completes(client, workspace):
    for waiting in Job.objects.filter(workspace=workspace).open():
        waiting.cancel()  # the fuzz filled the participant's waiting limit
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "after"}},
    }
    answer = client.post(
        "/user/001/api/prompt", json.dumps({"prompt": prompt}), content_type="application/json", **SAME_ORIGIN
    )
    assert answer.status_code == 200, answer.content
    job = Job.objects.get(pk=answer.json()["prompt_id"])
    worker, token = Worker.create_with_token("gpu-after-fuzz")
    worker.beat(status="idle")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert job.mark_dispatched(worker)
    assert (
        client.post(
            f"/api/worker/jobs/{job.pk}/started", json.dumps({"run": job.run}), content_type="application/json", **auth
        ).status_code
        == 200
    )
    stored = client.put(
        f"/api/worker/jobs/{job.pk}/outputs?run={job.run}&filename=after_00001_.png&type=output",
        data=_png(8, 8),
        content_type="image/png",
        **auth,
    ).json()
    outputs = {"2": {"images": [stored]}}
    assert (
        client.post(
            f"/api/worker/jobs/{job.pk}/finish",
            json.dumps({"run": job.run, "status": "success", "outputs": outputs}),
            content_type="application/json",
            **auth,
        ).status_code
        == 200
    )
    assert Job.objects.get(pk=job.pk).state == JobState.COMPLETED
    view = client.get(f"/user/001/api/view?filename={stored['filename']}&type=output")
    assert view.status_code == 200 and b"".join(view.streaming_content).startswith(b"\x89PNG")


@FUZZ
@given(
    body=st.one_of(
        PROMPTS.map(lambda p: json.dumps({"prompt": p})),
        RAW,
        st.tuples(PROMPTS, JSON, JSON).map(
            lambda t: json.dumps(
                {"prompt": t[0], "extra_data": t[1], "client_id": t[2], "partial_execution_targets": t[2]}
            )
        ),
    )
)
def test_fuzz_prompts(arena, body):
    arena.check(arena.post("/user/001/api/prompt", body, content_type="application/json", **SAME_ORIGIN))


@FUZZ
@given(
    name=NAMES,
    data=FILE_BODIES,
    folder=st.one_of(st.sampled_from(["input", "output", "temp", ""]), NAMES),
    subfolder=NAMES,
    overwrite=st.sampled_from(["true", "false", "", "1"]),
    mask=st.booleans(),
    ref=RAW,
)
def test_fuzz_uploads(arena, name, data, folder, subfolder, overwrite, mask, ref):
    upload = io.BytesIO(data)
    upload.name = name or "x"
    fields = {"image": upload, "type": folder, "subfolder": subfolder, "overwrite": overwrite}
    if mask:
        fields["original_ref"] = ref
    route = "upload/mask" if mask else "upload/image"
    arena.check(arena.post(f"/user/001/api/{route}", fields, **SAME_ORIGIN))


@FUZZ
@given(
    parts=st.lists(NAMES, min_size=1, max_size=4),
    method=st.sampled_from(["get", "post", "delete", "move"]),
    body=st.binary(max_size=200),
    query=st.sampled_from(["", "?overwrite=false", "?full_info=true", "?overwrite=x"]),
    dest=NAMES,
)
def test_fuzz_userdata(arena, parts, method, body, query, dest):
    from urllib.parse import quote

    path = quote("/".join(parts), safe="/")
    if not path.strip("/"):
        path = "x"
    url = f"/user/001/api/userdata/{path}"
    if method == "move":
        response = arena.post(f"{url}/move/{quote(dest or 'x', safe='/')}{query}", **SAME_ORIGIN)
    elif method == "post":
        response = arena.post(url + query, body, content_type="application/octet-stream", **SAME_ORIGIN)
    else:
        response = getattr(arena, method)(url + query, **SAME_ORIGIN)
    arena.check(response)
    listing = arena.get("/user/001/api/userdata", {"dir": "/".join(parts), "recurse": "true", "split": "true"})
    arena.check(listing)


@FUZZ
@given(
    filename=NAMES,
    folder=st.one_of(st.sampled_from(["input", "output", "temp"]), NAMES),
    subfolder=NAMES,
    byte_range=st.one_of(
        st.none(),
        st.text(max_size=20),
        st.tuples(st.integers(-5, 50), st.integers(-5, 50)).map(lambda r: f"bytes={r[0]}-{r[1]}"),
    ),
    route=st.sampled_from(["view", "viewvideo"]),
)
def test_fuzz_view_queries(arena, participants, filename, folder, subfolder, byte_range, route):
    (participants[0].root / "output" / "known.png").write_bytes(_png(4, 4))
    headers = {"HTTP_RANGE": byte_range} if byte_range is not None else {}
    for name in (filename, "known.png"):
        response = arena.get(
            f"/user/001/api/{route}", {"filename": name, "type": folder, "subfolder": subfolder}, **headers
        )
        arena.check(response)
        if getattr(response, "streaming", False):
            assert b"private" not in b"".join(response.streaming_content)


@FUZZ
@given(body=RAW, setting=NAMES)
def test_fuzz_settings(arena, body, setting):
    from urllib.parse import quote

    arena.check(arena.post("/user/001/api/settings", body, content_type="application/json", **SAME_ORIGIN))
    if setting and "/" not in setting:
        arena.check(
            arena.post(
                f"/user/001/api/settings/{quote(setting, safe='')}",
                body,
                content_type="application/json",
                **SAME_ORIGIN,
            )
        )
    arena.check(arena.get("/user/001/api/settings"))


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(
            ["max_items", "offset", "limit", "status", "sort_by", "sort_order", "workflow_id", "dir", "recurse"]
        ),
        st.one_of(st.integers(-(10**30), 10**30).map(str), st.text(max_size=10)),
        max_size=5,
    ),
    route=st.sampled_from(
        [
            "history",
            "queue",
            "jobs",
            "userdata",
            "v2/userdata",
            "internal/files/input",
            "object_info",
            "models/checkpoints",
            "experiment/models",
        ]
    ),
    body=RAW,
)
def test_fuzz_queries_and_queue_bodies(arena, query, route, body):
    arena.check(
        arena.get(f"/user/001/api/{route}" if not route.startswith("internal") else f"/user/001/{route}", query)
    )
    if route in ("history", "queue"):
        arena.check(arena.post(f"/user/001/api/{route}", body, content_type="application/json", **SAME_ORIGIN))
