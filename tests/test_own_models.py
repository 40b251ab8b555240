"""Participants' own models: upload (in parts, or by URL), listing, isolation, a job carrying its
LoRA to the GPU (a real gpuworker, a ComfyUI double that loads it), quota, refusals, delete."""

import ipaddress
import json
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from accounts import own_models
from accounts.models import ModelUpload, WorkspaceModel
from accounts.own_model_uploads import expire_unfinished, store_part
from accounts.own_models import ModelRefused
from frontend_bridge.safe_fetch import NEUTRAL, public
from jobs.models import Job, Worker
from scripts.comfyui_double import ComfyUIDouble
from tests.conftest import wait_until
from tests.test_e2e import finished, receive_until

PART = 8 * 1024 * 1024


def start_fetch(session, live_app, url):
    """user001's *My models* fetch of `url`, its progress lines still streaming."""
    return session.post(
        f"{live_app.url}/user/001/my-models/fetch",
        json={"url": url},
        headers={"Origin": live_app.url},
        stream=True,
        timeout=30,
    )


def fetch_lines(answer) -> list[dict]:
    """Every progress line of a fetch, and its last (the model or the error)."""
    return [json.loads(line) for line in answer.iter_lines() if line]


def safetensors(n_bytes: int = 4096, seed: int = 1) -> bytes:
    """A real safetensors file: one float32 tensor of n_bytes (patterned, so files differ)."""
    header = json.dumps(
        {
            "__metadata__": {"format": "pt"},
            "lora_up.weight": {"dtype": "F32", "shape": [n_bytes // 4], "data_offsets": [0, n_bytes]},
        }
    )
    header += " " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header.encode() + bytes((seed + i) % 251 for i in range(n_bytes))


def upload(session, base, slug, name, data, folder="loras"):
    answer = None
    for offset in range(0, max(len(data), 1), PART):
        final = int(offset + PART >= len(data))
        answer = session.put(
            f"{base}/user/{slug}/my-models/upload",
            params={"folder": folder, "name": name, "offset": offset, "final": final},
            data=data[offset : offset + PART],
            headers={"Origin": base},
            timeout=30,
        )
        if answer.status_code >= 400:
            return answer
    return answer


def lora_prompt(name: str) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "2": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["1", 0],
                "clip": ["1", 1],
                "lora_name": name,
                "strength_model": 1.0,
                "strength_clip": 1.0,
            },
        },
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }


def lora_options(session, base, slug) -> list[str]:
    info = session.get(f"{base}/user/{slug}/api/object_info/LoraLoader", timeout=10).json()
    return info["LoraLoader"]["input"]["required"]["lora_name"][0]


@pytest.mark.e2e
def test_a_lora_uploaded_listed_carried_to_the_gpu_and_deleted(live_app, participants, tmp_path):
    cache = tmp_path / "gpu-models"  # ComfyUI's extra_model_paths names this folder
    lora = safetensors(PART + 4096)  # two parts
    with ComfyUIDouble(
        step_time=0.01, steps=1, stand_ins=True, model_files=["base.safetensors"], models_dir=cache
    ) as double:
        config = f'[comfyui]\nurl = "{double.url}"\n\n[models]\ncache_dir = "{cache}"\ncache_bytes = 100000000\n'
        with live_app.gpu_worker(name="gpu-1", config=config):
            assert Worker.objects.get(name="gpu-1").carries_models
            alice, bob = live_app.login("user001"), live_app.login("user002")
            answer = upload(alice, live_app.url, "001", "my_style.safetensors", lora)
            assert answer.status_code == 201, answer.text
            assert answer.json()["model"]["comfy_name"] == "ws-001/my_style.safetensors"

            listed = alice.get(f"{live_app.url}/user/001/my-models/list", timeout=10).json()
            assert [m["name"] for m in listed["models"]] == ["my_style.safetensors"] and listed["used"] == len(lora)
            assert "ws-001/my_style.safetensors" in lora_options(alice, live_app.url, "001")
            assert (
                "ws-001/my_style.safetensors"
                in alice.get(f"{live_app.url}/user/001/api/models/loras", timeout=10).json()
            )
            page = alice.get(f"{live_app.url}/user/001/my-models/", timeout=10)
            assert page.status_code == 200 and "ws-001/my_style.safetensors" in page.text

            # Another workspace neither sees it nor can use it.
            assert not any(o.startswith("ws-") for o in lora_options(bob, live_app.url, "002"))
            assert bob.get(f"{live_app.url}/user/002/api/models/loras", timeout=10).json() == []
            assert bob.get(f"{live_app.url}/user/001/my-models/list", timeout=10).status_code == 404
            refused = bob.post(
                f"{live_app.url}/user/002/api/prompt",
                json={"prompt": lora_prompt("ws-001/my_style.safetensors"), "client_id": "b"},
                timeout=10,
            )
            assert refused.status_code == 400 and "lora_name" in json.dumps(refused.json()["node_errors"])
            assert not Job.objects.filter(workspace=participants[1]).exists()

            # Alice's job carries it to the GPU, where ComfyUI loads it.
            with live_app.ws(alice, "001") as ws:
                sent = alice.post(
                    f"{live_app.url}/user/001/api/prompt",
                    json={"prompt": lora_prompt("ws-001/my_style.safetensors"), "client_id": "test-client"},
                    timeout=10,
                )
                assert sent.status_code == 200, sent.text
                receive_until(ws, finished(sent.json()["prompt_id"]))
            assert double.lora_loads == [("ws-001/my_style.safetensors", lora)], "loaded, byte for byte"
            assert Worker.objects.get(name="gpu-1").loaded_models == [
                "base.safetensors",
                "ws-001/my_style.safetensors",
            ], "what its ComfyUI now holds, for the next job's choice of worker"
            link = cache / "loras" / "ws-001" / "my_style.safetensors"
            assert link.is_symlink() and link.read_bytes() == lora
            assert list((cache / ".blobs").iterdir()) == [link.resolve()]

            # Deleted: gone from the workspace, its loaders, and the GPU's cache.
            model = WorkspaceModel.objects.get()
            assert (
                alice.post(
                    f"{live_app.url}/user/001/my-models/{model.pk}/delete", headers={"Origin": live_app.url}, timeout=10
                ).status_code
                == 200
            )
            assert "ws-001/my_style.safetensors" not in lora_options(alice, live_app.url, "001")
            wait_until(
                lambda: not link.exists() and not list((cache / ".blobs").iterdir()),
                timeout=15,
                message="the model to leave the GPU's cache",
            )
            assert double.lora_files() == []


@pytest.fixture
def small_limits(settings):
    settings.MAX_MODEL_BYTES = 64 * 1024
    settings.MODEL_QUOTA_BYTES = 100 * 1024
    return settings


def put(client, name, data, offset=0, final=1, folder="loras", size=0):
    return client.put(
        f"/user/001/my-models/upload?folder={folder}&name={name}&offset={offset}&final={final}&size={size}",
        data=data,
        content_type="application/octet-stream",
    )


def no_part_files(workspace) -> bool:
    folder = workspace.root / "models" / "loras"
    return not folder.exists() or not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "name, data, status, says",
    [
        ("evil.ckpt", b"\x80\x02}q\x00.", 400, "pickled model files"),
        ("evil.pt", b"PK\x03\x04rest", 400, "pickled model files"),
        ("renamed.safetensors", b"\x80\x04\x95" + b"\x00" * 64, 400, "pickled model"),
        ("zipped.safetensors", b"PK\x03\x04" + b"\x00" * 64, 400, "pickled model"),
        ("junk.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!", 400, "header is not JSON"),
        ("short.safetensors", b"\x01\x02", 400, "too short"),
        ("lies.safetensors", b"\xff" * 8 + b"{}", 400, "header does not fit"),
        ("../escape.safetensors", None, 400, "use letters, digits"),
        ("model.gguf", b"GGUF", 400, "only .safetensors"),
    ],
)
def test_a_refused_file_says_why_and_leaves_nothing(alice, participants, small_limits, name, data, status, says):
    answer = put(alice, name, data if data is not None else safetensors())
    assert answer.status_code == status and says in answer.json()["error"]
    assert not WorkspaceModel.objects.exists() and no_part_files(participants[0])


def test_a_malformed_tensor_table_is_refused(alice, participants, small_limits):
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 9]}}).encode()
    answer = put(alice, "bad.safetensors", struct.pack("<Q", len(header)) + header + b"\x00" * 16)
    assert answer.status_code == 400 and "tensor 'w' is malformed" in answer.json()["error"]


def test_a_file_cut_short_is_called_incomplete(alice, participants, small_limits):
    """The trial: a truncated download was called "tensor 'a.weight' is malformed"."""
    answer = put(alice, "cut.safetensors", safetensors(4096)[:-100])
    assert answer.status_code == 400 and "This file is incomplete" in answer.json()["error"]


def test_oversize_and_quota_are_413_and_keep_nothing(alice, participants, small_limits):
    answer = put(alice, "big.safetensors", safetensors(70 * 1024))
    assert answer.status_code == 413 and "limit of 0 MB per model" not in answer.json()["error"]
    assert "over the workshop's limit" in answer.json()["error"]
    assert put(alice, "one.safetensors", safetensors(60 * 1024)).status_code == 201
    answer = put(alice, "two.safetensors", safetensors(60 * 1024, seed=2))
    assert answer.status_code == 413 and "does not fit" in answer.json()["error"]
    assert [m.name for m in WorkspaceModel.objects.all()] == ["one.safetensors"] and no_part_files(participants[0])


def test_parts_in_order_a_duplicate_and_an_unknown_folder(alice, participants, small_limits):
    data = safetensors(8 * 1024)
    assert put(alice, "a.safetensors", data[:100], final=0).json() == {"received": 100}
    assert put(alice, "a.safetensors", data[500:], offset=500).status_code == 409, "a gap"
    assert put(alice, "a.safetensors", data[:100], final=0).json() == {"received": 100}, "a part sent again"
    assert put(alice, "a.safetensors", data[100:], offset=100).status_code == 201
    assert (participants[0].root / "models" / "loras" / "a.safetensors").read_bytes() == data
    again = put(alice, "a.safetensors", data)
    assert again.status_code == 409 and "delete it first" in again.json()["error"]
    assert put(alice, "x.safetensors", data, folder="checkpoints").status_code == 400


class _Files(BaseHTTPRequestHandler):
    files: dict = {}
    redirects: dict = {}
    seen: list = []
    # A slow file: its first half, then the rest once `release` is set (the test's own pace).
    slow: dict = {}
    release = threading.Event()

    def do_GET(self):
        self.seen.append(self.path)
        if self.path == "/slow-headers.safetensors":  # its headers never end
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            self.wfile.flush()
            self.release.wait(60)
            return
        if self.path == "/bad-length.safetensors":  # a Content-Length that is no number
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\nConnection: close\r\n\r\nxxxxx")
            return
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.end_headers()
            return
        if self.path in self.slow:
            data = self.slow[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.release.wait(60)
            self.wfile.write(data[len(data) // 2 :])
            return
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fetch_allowed(monkeypatch):
    monkeypatch.setenv("MODEL_FETCH_ALLOWED_HOSTS", "localhost")  # the test's own file server


@pytest.fixture
def file_server():
    """A local file server (`_Files`) for the fetch tests, fresh each test, released and shut
    down after it. Yields its port."""
    _Files.files, _Files.redirects, _Files.seen, _Files.slow = {}, {}, [], {}
    _Files.release = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    _Files.release.set()
    server.shutdown()


@pytest.mark.e2e
def test_a_pasted_url_is_fetched_with_progress_and_private_addresses_are_refused(
    fetch_allowed, file_server, live_app, participants
):
    lora = safetensors(3 * 1024 * 1024)
    _Files.files = {"/loras/detail.safetensors": lora, "/evil.ckpt": b"\x80\x02."}
    base = f"http://localhost:{file_server}"
    alice = live_app.login("user001")

    def fetch(url):
        answer = start_fetch(alice, live_app, url)
        assert answer.status_code == 200
        return fetch_lines(answer)

    lines = fetch(f"{base}/loras/detail.safetensors")
    assert lines[-1]["model"]["comfy_name"] == "ws-001/detail.safetensors"
    assert any("received" in line and line["total"] == len(lora) for line in lines[:-1]), "progress on the way"
    assert (participants[0].root / "models" / "loras" / "detail.safetensors").read_bytes() == lora
    assert "pickled" in fetch(f"{base}/evil.ckpt")[-1]["error"]
    for url in (
        f"http://127.0.0.1:{file_server}/loras/detail.safetensors",
        "http://169.254.169.254/latest/meta-data/x.safetensors",
        "http://[::1]:6379/x.safetensors",
        "file:///etc/passwd",
    ):
        said = fetch(url)[-1]["error"]
        assert said == NEUTRAL, (url, said)
    assert WorkspaceModel.objects.count() == 1


@pytest.mark.e2e
def test_the_fetch_connects_only_where_it_checked_and_says_nothing_of_what_is_inside(
    fetch_allowed, file_server, live_app, participants
):
    """The red team's SSRF: a backslash or userinfo that makes the HTTP client connect to
    127.0.0.1 while a check reads another host, the same in a redirect, and error texts that
    told an open port from a closed one. Only `localhost` is allowed here (the test's server);
    127.0.0.1 by its number is not."""
    port = file_server
    _Files.files = {"/loras/ok.safetensors": safetensors(4096)}
    _Files.redirects = {
        "/hop": f"http://127.0.0.1:{port}/loras/ok.safetensors",
        "/hop-backslash": f"http://localhost:{port}\\@8.8.8.8/loras/ok.safetensors",
        "/hop-bad-ipv6": "http://[::1/x.safetensors",
    }
    alice = live_app.login("user001")

    def error_of(url):
        answer = start_fetch(alice, live_app, url)
        return fetch_lines(answer)[-1].get("error")

    attacks = [
        f"http://127.0.0.1:{port}\\@8.8.8.8/loras/ok.safetensors",
        f"http://localhost:{port}\\@8.8.8.8/loras/ok.safetensors",
        f"http://x@127.0.0.1:{port}/loras/ok.safetensors",
        f"http://8.8.8.8@127.0.0.1:{port}/loras/ok.safetensors",
        f"http://127.0.0.1:{port}/loras/ok.safetensors",
        "http://0.0.0.0:6379/x.safetensors",
        "http://[::ffff:127.0.0.1]:6379/x",
        "http://2130706433/x",
        "http://no-such-host.invalid/x",
    ]
    said = {url: error_of(url) for url in attacks}
    seen_direct = list(_Files.seen)
    via_redirect = [error_of(f"http://localhost:{port}/hop"), error_of(f"http://localhost:{port}/hop-backslash")]
    # An allowed host's closed port, its 404 and a port that answers something else than HTTP
    # (ssh, Redis) say the same as a refusal: no oracle.
    closed = error_of("http://localhost:1/x.safetensors")
    missing = error_of(f"http://localhost:{port}/nothing.safetensors")
    with socket.create_server(("127.0.0.1", 0)) as other:

        def banner():
            conn, _ = other.accept()
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            conn.recv(1024)
            conn.close()

        threading.Thread(target=banner, daemon=True).start()
        not_http = error_of(f"http://localhost:{other.getsockname()[1]}/x.safetensors")
    assert not_http == NEUTRAL
    # Malformed answers of an allowed server: no number as a size, a redirect to no URL.
    assert error_of(f"http://localhost:{port}/hop-bad-ipv6") == NEUTRAL
    bad_length = error_of(f"http://localhost:{port}/bad-length.safetensors")
    assert bad_length == NEUTRAL or "not a valid safetensors file" in bad_length, bad_length
    assert set(said.values()) == {NEUTRAL}, said
    assert seen_direct == [], "no attack reached the server"
    assert via_redirect == [NEUTRAL, NEUTRAL] and _Files.seen[:3] == ["/hop", "/hop-backslash", "/nothing.safetensors"]
    assert closed == missing == NEUTRAL
    assert not WorkspaceModel.objects.exists()


@pytest.mark.parametrize(
    "address, taken",
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("::127.0.0.1", False),
        ("::ffff:0:7f00:1", False),
        ("64:ff9b::7f00:1", False),
        ("64:ff9b:1::a00:1", False),
        ("2002:7f00:1::1", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
        ("ff02::1", False),
        ("224.0.0.1", False),
    ],
)
def test_a_fetch_connects_only_to_public_addresses_that_hide_no_other(address, taken):
    """The red team: IPv6 forms that carry 127.0.0.1 inside (NAT64, IPv4-compatible,
    IPv4-translated) were called global by Python, and were connected to."""
    assert public(ipaddress.ip_address(address)) is taken


@pytest.fixture
def short_fetches(monkeypatch):
    monkeypatch.setenv("MODEL_FETCH_SECONDS", "3")


@pytest.mark.e2e
def test_a_fetch_shows_its_progress_while_it_runs_and_a_trickle_is_cut_off(
    fetch_allowed, short_fetches, file_server, live_app, participants
):
    """Half the file, then the server waits for the test: the participant must already see
    progress (under ASGI a sync stream was collected whole). A server that never finishes is
    cut off at MODEL_FETCH_SECONDS (3 here) with a sentence, and nothing is kept."""
    lora = safetensors(2 * 1024 * 1024)
    _Files.slow = {"/slow.safetensors": lora, "/never.safetensors": lora}
    base = f"http://localhost:{file_server}"
    alice = live_app.login("user001")
    answer = start_fetch(alice, live_app, f"{base}/slow.safetensors")
    lines = answer.iter_lines(chunk_size=1)  # each line as it comes, not 512 bytes at a time
    assert json.loads(next(line for line in lines if line)) == {"received": 0, "total": None}, "begun, at once"
    first = json.loads(next(line for line in lines if line))
    _Files.release.set()
    rest = [json.loads(line) for line in lines if line]
    _Files.release = threading.Event()  # the next one never gets its second half
    never = start_fetch(alice, live_app, f"{base}/never.safetensors")
    cut = fetch_lines(never)[-1]
    headers = start_fetch(alice, live_app, f"{base}/slow-headers.safetensors")
    cut_headers = fetch_lines(headers)[-1]
    assert 0 < first["received"] < len(lora) and first["total"] == len(lora), first
    assert rest[-1]["model"]["name"] == "slow.safetensors"
    assert "took too long (the limit is 3 s)" in cut["error"]
    assert "took too long (the limit is 3 s)" in cut_headers["error"], "headers sent one byte at a time too"
    assert [m.name for m in WorkspaceModel.objects.all()] == ["slow.safetensors"]


def test_the_my_models_page_is_in_the_workshop_menu():
    from pathlib import Path

    badge = (Path(__file__).resolve().parent.parent / "frontend_bridge" / "static_ext" / "queue_badge.js").read_text()
    assert '"Workshop.MyModels"' in badge and 'api.api_base + "/my-models/"' in badge


def test_a_prompt_with_own_models_is_refused_when_no_gpu_can_load_them(alice, participants, small_limits):
    assert put(alice, "mine.safetensors", safetensors()).status_code == 201
    answer = alice.post(
        "/user/001/api/prompt",
        data=json.dumps({"prompt": lora_prompt("ws-001/mine.safetensors")}),
        content_type="application/json",
        HTTP_ORIGIN="http://testserver",
    )
    assert answer.status_code == 400 and "none of its GPUs can load them" in json.dumps(answer.json())
    assert not Job.objects.exists()


@pytest.fixture
def tight_quota(monkeypatch):
    monkeypatch.setenv("MODEL_QUOTA_BYTES", str(40 * 1024))
    monkeypatch.setenv("MAX_UNFINISHED_MODELS", "5")


@pytest.mark.e2e
def test_uploads_finishing_at_once_never_pass_the_quota(tight_quota, live_app, participants):
    """The red team's race: 5 uploads of 25 (MB, here KB) against a quota of 40 finished at the
    same moment, and all five were kept. One fits; the others are refused, and nothing stays."""
    from concurrent.futures import ThreadPoolExecutor

    sessions = [live_app.login("user001") for _ in range(5)]
    start = threading.Barrier(5)

    def upload_one(n):
        session = sessions[n]
        start.wait()
        return session.put(
            f"{live_app.url}/user/001/my-models/upload",
            params={"folder": "loras", "name": f"race{n}.safetensors", "offset": 0, "final": 1},
            data=safetensors(25 * 1024, seed=n),
            timeout=30,
            headers={"Origin": live_app.url, "X-CSRFToken": session.cookies["csrftoken"]},
        )

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(upload_one, range(5)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 413, 413, 413, 413], [a.text for a in answers]
    assert WorkspaceModel.used_bytes(participants[0]) <= 40 * 1024
    assert no_part_files(participants[0])


@pytest.mark.e2e
def test_uploads_starting_at_once_reserve_the_room_once(tight_quota, live_app, participants):
    """Five 25 (MB, here KB) uploads start at the same moment against a quota of 40: the first
    part of each reserves its whole size under the workspace's lock, so one goes on and four
    are told at once, before their bytes are sent."""
    from concurrent.futures import ThreadPoolExecutor

    sessions = [live_app.login("user001") for _ in range(5)]
    start = threading.Barrier(5)
    files = [safetensors(25 * 1024, seed=n) for n in range(5)]

    def send(n, offset, data, final):
        session = sessions[n]
        return session.put(
            f"{live_app.url}/user/001/my-models/upload",
            params={
                "folder": "loras",
                "name": f"start{n}.safetensors",
                "offset": offset,
                "size": len(files[n]),
                "final": final,
            },
            data=data,
            timeout=30,
            headers={"Origin": live_app.url, "X-CSRFToken": session.cookies["csrftoken"]},
        )

    def first_part(n):
        start.wait()
        return send(n, 0, files[n][:1024], 0)

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(first_part, range(5)))
    assert sorted(a.status_code for a in answers) == [200, 413, 413, 413, 413], [a.text for a in answers]
    winner = next(n for n, a in enumerate(answers) if a.status_code == 200)
    assert all("does not fit" in a.json()["error"] for a in answers if a.status_code == 413)
    assert send(winner, 1024, files[winner][1024:], 1).status_code == 201
    assert WorkspaceModel.used_bytes(participants[0]) == len(files[winner])
    assert no_part_files(participants[0])


def test_unfinished_uploads_count_are_capped_and_expire(alice, participants, small_limits, settings):
    import datetime

    settings.MAX_UNFINISHED_MODELS = 2
    data = safetensors(60 * 1024)
    assert put(alice, "a.safetensors", data[: 20 * 1024], final=0).status_code == 200
    assert put(alice, "b.safetensors", data[: 50 * 1024], final=0).status_code == 200
    third = put(alice, "c.safetensors", data[:1024], final=0)
    assert third.status_code == 429 and "uploads in progress" in third.json()["error"]
    # Unfinished parts count towards the quota (100 KB here): b holds 50 KB, so a may not reach 60.
    big = put(alice, "a.safetensors", data[20 * 1024 :], offset=20 * 1024)
    assert big.status_code == 413 and "does not fit" in big.json()["error"]
    # Left alone past MODEL_PART_MAX_AGE, the other one goes, its part file with it.
    part = participants[0].root / "models" / "loras" / ".b.safetensors.part"
    ModelUpload.objects.filter(name="b.safetensors").update(
        updated_at=timezone.now() - datetime.timedelta(seconds=7200)
    )
    assert expire_unfinished(3600) == 1 and not part.exists() and not ModelUpload.objects.exists()
    assert put(alice, "c.safetensors", data[:1024], final=0).status_code == 200, "room for another again"


def test_an_upload_reserves_its_whole_size_when_it_starts(alice, participants, small_limits):
    """The quota (100 KB here) is taken at the first part: a second file that cannot fit beside
    the first is refused before its bytes are sent, not at its end."""
    first, second = safetensors(60 * 1024, seed=1), safetensors(60 * 1024, seed=2)
    assert put(alice, "first.safetensors", first[:1024], final=0, size=len(first)).status_code == 200
    refused = put(alice, "second.safetensors", second[:1024], final=0, size=len(second))
    assert (
        refused.status_code == 413 and "does not fit" in refused.json()["error"] and "39.9 KB is left" in refused.text
    )
    assert not (participants[0].root / "models" / "loras" / ".second.safetensors.part").exists()
    done = put(alice, "first.safetensors", first[1024:], offset=1024, size=len(first))
    assert done.status_code == 201 and not ModelUpload.objects.exists(), "the reservation became the model"
    assert WorkspaceModel.used_bytes(participants[0]) == len(first)


@pytest.fixture
def one_fetch_at_a_time(monkeypatch):
    monkeypatch.setenv("MAX_UNFINISHED_MODELS", "1")


@pytest.mark.e2e
def test_a_participant_cannot_pile_up_fetches_that_never_end(
    fetch_allowed, one_fetch_at_a_time, file_server, live_app, participants
):
    """The red team held 40 fetches open on a server that sends its headers a byte at a time:
    40 threads and sockets. A participant has MAX_UNFINISHED_MODELS running at once (1 here)."""
    url = f"http://localhost:{file_server}/slow-headers.safetensors"
    alice = live_app.login("user001")
    held = start_fetch(alice, live_app, url)
    wait_until(lambda: "/slow-headers.safetensors" in _Files.seen, message="the first fetch to reach the server")
    second = alice.post(
        f"{live_app.url}/user/001/my-models/fetch", json={"url": url}, headers={"Origin": live_app.url}, timeout=30
    )
    _Files.release.set()  # the server gives up: the first fetch ends, and its slot is free again
    ended = fetch_lines(held)[-1]
    third = start_fetch(alice, live_app, url)
    third_lines = fetch_lines(third)
    assert second.status_code == 429 and "downloads running" in second.json()["error"]
    assert "error" in ended and third.status_code == 200 and "error" in third_lines[-1]


@pytest.mark.django_db(transaction=True)
def test_a_part_sent_while_the_last_one_is_kept_is_refused_and_changes_nothing(small_limits, monkeypatch):
    """The red team: an extra 8 MB part written while the last part was hashed and renamed grew
    the kept file past its recorded size and hash, and past the quota. Now one request of an
    upload runs at a time; the other is told so, and the kept file is what was recorded."""
    from tests.conftest import class_of

    workspace = class_of(1)[0]
    data = safetensors(40 * 1024)
    hashing, go = threading.Event(), threading.Event()
    real_hash = own_models.sha256_of

    def slow_hash(path):
        hashing.set()
        go.wait(30)
        return real_hash(path)

    monkeypatch.setattr(own_models, "sha256_of", slow_hash)
    assert store_part(workspace, "loras", "race.safetensors", 0, data[:-1], final=False) == len(data) - 1
    kept = {}

    def last_part():
        kept["model"] = store_part(workspace, "loras", "race.safetensors", len(data) - 1, data[-1:], final=True)

    finishing = threading.Thread(target=last_part)
    finishing.start()
    assert hashing.wait(30)
    with pytest.raises(ModelRefused, match="still arriving") as extra:
        store_part(workspace, "loras", "race.safetensors", len(data), b"x" * 30 * 1024, final=False)
    assert extra.value.status == 409
    go.set()
    finishing.join(30)
    model = kept["model"]
    assert model.path.stat().st_size == model.size == len(data)
    assert real_hash(model.path) == model.sha256
    assert not ModelUpload.objects.exists() and no_part_files(workspace)


def test_a_participants_model_name_is_one_the_worker_protocol_knows_as_theirs():
    """accounts names a participant's model for the loaders, gpuworker.protocol recognises (and
    keeps out of catalogs) such names: one rule, written in two parts that may not import each
    other."""
    from accounts.models import WorkspaceModel
    from gpuworker.protocol import PARTICIPANT_PREFIX, is_participant_model

    assert WorkspaceModel.prefix("007").startswith(PARTICIPANT_PREFIX)
    assert is_participant_model(f"{WorkspaceModel.prefix('007')}/style.safetensors")
    assert not is_participant_model("style.safetensors")
