"""The trust boundaries, one test per attack that was tried against the running platform:
content from workspaces, worker tokens, catalog leaks, error texts, CSRF, bad input, accounts."""

import io
import json
import re
import threading

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from accounts import loginlinks
from accounts.models import Workspace
from jobs.models import Job
from tests.conftest import wait_until


@pytest.fixture
def alice(client, participants):
    client.login(username="user001", password="pw")
    return client


def post_json(client, url, body, **headers):
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


# --- content from workspaces is inert ----------------------------------------------------------

ACTIVE_FILES = {
    "page.html": b"<script>alert(1)</script>",
    "page.htm": b"<script>alert(1)</script>",
    "drawing.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "code.js": b"alert(1)",
    "page.xhtml": b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>',
    "doc.xml": b"<x/>",
    "noext": b"<script>alert(1)</script>",
}


@pytest.mark.parametrize("name", sorted(ACTIVE_FILES))
def test_uploaded_html_svg_or_script_is_served_as_an_opaque_download(alice, participants, name):
    (participants[0].root / "input" / name).write_bytes(ACTIVE_FILES[name])
    answer = alice.get(f"/user/001/api/view?filename={name}&type=input")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/octet-stream"
    assert answer["Content-Disposition"].startswith("attachment")
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in answer["Content-Security-Policy"]


def test_userdata_files_are_served_the_same_way(alice):
    alice.post("/user/001/api/userdata/evil.html", data=b"<script>alert(1)</script>", content_type="text/html")
    answer = alice.get("/user/001/api/userdata/evil.html")
    assert answer["Content-Type"] == "application/octet-stream" and answer["Content-Disposition"].startswith(
        "attachment"
    )
    # What the frontend itself loads from userdata keeps its type: its stylesheet and JSON.
    alice.post("/user/001/api/userdata/user.css", data=b"body{}", content_type="text/css")
    assert alice.get("/user/001/api/userdata/user.css")["Content-Type"] == "text/css"
    alice.post("/user/001/api/userdata/workflows/a.json", data=b"{}", content_type="application/json")
    assert alice.get("/user/001/api/userdata/workflows/a.json")["Content-Type"] == "application/json"


def test_media_stays_inline_with_nosniff(alice, participants):
    (participants[0].root / "output" / "clip.mp4").write_bytes(b"\0" * 16)
    (participants[0].root / "output" / "a.png").write_bytes(b"\x89PNG")
    for name, kind in (("clip.mp4", "video/mp4"), ("a.png", "image/png")):
        answer = alice.get(f"/user/001/api/view?filename={name}&type=output")
        assert answer["Content-Type"] == kind and answer["Content-Disposition"].startswith("inline")
        assert answer["X-Content-Type-Options"] == "nosniff"


def test_every_page_carries_a_content_security_policy(alice, client):
    page = alice.get("/user/001/")
    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'sha256-" in policy and "object-src 'none'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "script-src 'self'" in client.get("/admin/login/")["Content-Security-Policy"]
    assert "script-src 'self'" in client.get("/accounts/login/")["Content-Security-Policy"]


# --- a worker can do only what its current run allows -----------------------------------------


def _worker(name):
    from jobs.models import Worker

    worker, token = Worker.create_with_token(name)
    worker.beat(status="idle")
    worker.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    return worker


SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def test_a_worker_reads_and_ends_only_the_run_it_has_started(client, participants):
    from jobs.models import JobState

    workspace = participants[0]
    workspace.file_path("input", "cat.png").write_bytes(b"private cat")
    gpu, other = _worker("gpu-1"), _worker("gpu-2")
    job = Job.submit(workspace, SIMPLE, inputs=[{"filename": "cat.png", "subfolder": "", "type": "input"}])
    assert job.mark_dispatched(gpu)  # waiting in gpu-1's RQ queue, not started
    inputs = f"/api/worker/jobs/{job.pk}/inputs?filename=cat.png&type=input&run={job.run}"
    finish = f"/api/worker/jobs/{job.pk}/finish"
    for worker in (gpu, other):
        assert client.get(inputs, **worker.headers).status_code == 409
        failed = post_json(
            client, finish, {"run": job.run, "status": "error", "error": {"message": "x"}}, **worker.headers
        )
        assert failed.status_code == 409
    assert Job.objects.get(pk=job.pk).state == JobState.DISPATCHED
    assert job.mark_running(gpu, job.run)
    assert client.get(inputs, **other.headers).status_code == 409
    assert post_json(client, finish, {"run": job.run, "status": "error"}, **other.headers).status_code == 409
    read = client.get(inputs, **gpu.headers)
    assert read.status_code == 200 and b"".join(read.streaming_content) == b"private cat"
    assert Job.objects.get(pk=job.pk).state == JobState.RUNNING


def _publish(client, worker, files, listed=None):
    for path, body in files.items():
        client.put(
            f"/api/worker/catalog/files?path={path}", data=body, content_type="text/javascript", **worker.headers
        )
    catalog = {
        "object_info": {"Marker": {"input": {}, "output": [], "name": worker.name}},
        "extensions": listed if listed is not None else list(files),
    }
    assert post_json(client, "/api/worker/catalog", catalog, **worker.headers).status_code == 200


def test_frontend_code_of_an_untrusted_worker_never_reaches_a_browser(alice, client, participants):
    trusted, rogue = _worker("gpu-1"), _worker("gpu-2")
    _publish(client, trusted, {})
    _publish(client, rogue, {"/extensions/evil/evil.js": b"steal(document.cookie)"})
    # The rogue worker's catalog is newer, yet the served one stays that of the trusted worker.
    assert "Marker" in alice.get("/user/001/api/object_info").json()
    assert alice.get("/user/001/api/object_info").json()["Marker"]["name"] == "gpu-1"
    assert "/extensions/evil/evil.js" not in alice.get("/user/001/api/extensions").json()
    assert alice.get("/user/001/extensions/evil/evil.js").status_code == 404

    rogue.trust_extensions()
    assert alice.get("/user/001/api/object_info").json()["Marker"]["name"] == "gpu-2"
    assert "/extensions/evil/evil.js" in alice.get("/user/001/api/extensions").json()
    assert alice.get("/user/001/extensions/evil/evil.js").content == b"steal(document.cookie)"
    # Anonymous callers never get custom-node code.
    assert Client().get("/user/001/extensions/evil/evil.js").status_code in (302, 401, 404)

    # Changed code is not the code that was trusted: back to the trusted worker's catalog.
    _publish(client, rogue, {"/extensions/evil/evil.js": b"worse()"})
    assert alice.get("/user/001/api/object_info").json()["Marker"]["name"] == "gpu-1"
    assert alice.get("/user/001/extensions/evil/evil.js").status_code == 404


def test_with_no_trusted_catalog_the_ui_works_without_the_code(alice, client, participants):
    only = _worker("gpu-1")
    _publish(client, only, {"/extensions/pack/x.js": b"x()"})
    assert "Marker" in alice.get("/user/001/api/object_info").json()
    assert "/extensions/pack/x.js" not in alice.get("/user/001/api/extensions").json()
    assert alice.get("/user/001/extensions/pack/x.js").status_code == 404


def test_the_instructor_trusts_code_after_seeing_its_files_and_hashes(client, participants):
    import hashlib

    from django.contrib.admin.models import LogEntry

    gpu = _worker("gpu-1")
    _publish(client, gpu, {"/extensions/pack/x.js": b"x()"})
    client.login(username="instructor", password="pw")
    shown = client.post("/admin/jobs/worker/", {"action": "trust_extensions", "_selected_action": [gpu.pk]})
    digest = hashlib.sha256(b"x()").hexdigest()
    assert (
        shown.status_code == 200
        and digest in shown.content.decode()
        and "/extensions/pack/x.js" in shown.content.decode()
    )
    assert not gpu.refresh_trust(), "showing the files trusts nothing"
    client.post("/admin/jobs/worker/", {"action": "trust_extensions", "_selected_action": [gpu.pk], "confirm": "yes"})
    gpu.refresh_from_db()
    assert gpu.trusted_extensions == {"/extensions/pack/x.js": digest}
    assert digest[:12] in LogEntry.objects.get().change_message


# --- per-workspace catalog filtering -------------------------------------------------------------


def test_no_input_of_the_catalog_names_another_participants_file(alice, participants):
    """Every upload-flagged COMBO (image, video, audio, 3D, `upload`, old and new style) and the
    loaders that list the input folder unflagged name this workspace's files only."""
    from jobs.models import Catalog

    # Names without an extension too: a folder, or a file ComfyUI lists unfiltered.
    leak = ["user002_secret.png", "user002_secret.mp4", "user002_secret.latent", "user002_folder", "user002_notes"]
    object_info = {
        "LoadImage": {"input": {"required": {"image": [list(leak), {"image_upload": True}]}}},
        "LoadImageOutput": {
            "input": {
                "required": {
                    "image": ["COMBO", {"image_upload": True, "image_folder": "output", "options": list(leak)}]
                }
            }
        },
        "LoadVideo": {"input": {"required": {"file": ["COMBO", {"video_upload": True, "options": list(leak)}]}}},
        "LoadAudio": {"input": {"required": {"audio": ["COMBO", {"audio_upload": True, "options": list(leak)}]}}},
        "Load3D": {"input": {"required": {"model_file": ["COMBO", {"file_upload": True, "options": list(leak)}]}}},
        "PackLoader": {"input": {"optional": {"f": [list(leak), {"upload": True}]}}},
        "Pack3D": {"input": {"required": {"f": ["COMBO", {"3d": True, "options": list(leak)}]}}},
        "LoadLatent": {"input": {"required": {"latent": [list(leak)]}}},
        "LoadImageDataSetFromFolder": {"input": {"required": {"folder": ["COMBO", {"options": list(leak)}]}}},
        "LoadImageTextDataSetFromFolder": {"input": {"required": {"folder": ["COMBO", {"options": list(leak)}]}}},
    }
    worker = _worker("gpu-1")
    Catalog.objects.create(worker=worker, object_info=object_info)
    own = participants[0].root
    for name in ("me.png", "clip.mp4", "song.wav", "chair.glb", "old.latent"):
        (own / "input" / name).write_bytes(b"x")
    (own / "input" / "my_set").mkdir()
    (own / "output" / "result.png").write_bytes(b"x")
    (participants[1].root / "input" / "user002_secret.png").write_bytes(b"x")

    served = alice.get("/user/001/api/object_info").json()
    assert [name for name in served if "user002" in json.dumps(served[name])] == []
    required = {name: info["input"].get("required") or info["input"].get("optional") for name, info in served.items()}
    assert required["LoadImageOutput"]["image"][1]["options"] == ["result.png"]
    assert required["LoadLatent"]["latent"][0] == ["old.latent"]
    assert required["LoadImageDataSetFromFolder"]["folder"][1]["options"] == ["my_set"]
    assert required["Pack3D"]["f"][1]["options"] == ["chair.glb"]
    assert "me.png" in required["PackLoader"]["f"][0]
    for name in object_info:
        assert "user002" not in alice.get(f"/user/001/api/object_info/{name}").content.decode()


# --- errors a participant sees ------------------------------------------------------------------


def test_errors_a_participant_sees_name_no_gpu_host_path_and_no_other_files(alice, client, participants):
    gpu = _worker("gpu-1")
    job = Job.submit(participants[0], SIMPLE)
    assert job.mark_dispatched(gpu) and job.mark_running(gpu, job.run)
    secret_dir = "/srv/gpu-host-7/ComfyUI"
    error = {
        "exception_type": "OSError",
        "exception_message": f"[Errno 36] File name too long: '{secret_dir}/output/{'a' * 300}_00001_.png'",
        "traceback": [f'  File "{secret_dir}/execution.py", line 496, in execute\n'],
        "node_errors": {
            "5": {
                "class_type": "LoadImage",
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "image: 'mine.png' not in ['user002_holiday.png', 'user003_face.png']",
                        "extra_info": {
                            "input_name": "image",
                            "input_config": [["user002_holiday.png"], {"image_upload": True}],
                        },
                    }
                ],
            }
        },
    }
    end = [{"type": "execution_error", "data": {"prompt_id": str(job.pk), "node_id": "5", **error}}]
    answer = post_json(
        client,
        f"/api/worker/jobs/{job.pk}/finish",
        {"run": job.run, "status": "error", "error": error, "end": end},
        **gpu.headers,
    )
    assert answer.status_code == 200
    seen = json.dumps([alice.get("/user/001/api/history").json(), alice.get(f"/user/001/api/jobs/{job.pk}").json()])
    assert "File name too long" in seen, seen
    assert "gpu-host-7" not in seen and "/srv" not in seen
    assert "user002" not in seen and "user003" not in seen
    job.refresh_from_db()
    assert "gpu-host-7" not in json.dumps([job.error, job.end_messages, job.node_errors])


# --- CSRF ----------------------------------------------------------------------------------------


def test_a_cross_site_post_is_refused_and_changes_nothing(alice):
    before = alice.get("/user/001/api/settings").json()
    for headers in (
        {"HTTP_SEC_FETCH_SITE": "cross-site"},
        {"HTTP_SEC_FETCH_SITE": "same-site"},
        {"HTTP_ORIGIN": "https://evil.example"},
        {"HTTP_ORIGIN": "null"},
    ):
        # A cross-site HTML form can send text/plain with the session cookie.
        answer = alice.post(
            "/user/001/api/settings", data='{"Comfy.Hacked": true}', content_type="text/plain", **headers
        )
        assert answer.status_code == 403 and "did not come from" in answer.json()["error"]
        queued = post_json(alice, "/user/001/api/prompt", {"prompt": SIMPLE}, **headers)
        assert queued.status_code == 403
    assert alice.get("/user/001/api/settings").json() == before
    assert not Job.objects.exists()


def test_the_frontend_own_calls_pass(alice):
    for headers in ({"HTTP_SEC_FETCH_SITE": "same-origin"}, {"HTTP_ORIGIN": "http://testserver"}, {}):
        assert post_json(alice, "/user/001/api/settings", {"Comfy.Ok": True}, **headers).status_code == 200


# --- bad input gets a clear 4xx and changes nothing --------------------------------------------


def _png(width, height):
    """A PNG header claiming width×height pixels (the fuzzer's decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _files_of(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


BAD_BODIES = {
    "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "value nested 990 deep": json.dumps(
        {"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": json.loads("[" * 990 + "]" * 990)}}}}
    ),
    "NaN": '{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": NaN}}}}',
    "Infinity": '{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": Infinity}}}}',
    "extra_pnginfo a list": json.dumps({"prompt": SIMPLE, "extra_data": {"extra_pnginfo": [1]}}),
    "extra_pnginfo.workflow a list": json.dumps({"prompt": SIMPLE, "extra_data": {"extra_pnginfo": {"workflow": [1]}}}),
    "not UTF-8": b"\xff\xfe{",
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_prompt_bodies_get_a_clear_400_and_queue_nothing(alice, participants, case):
    answer = alice.post(
        "/user/001/api/prompt",
        data=BAD_BODIES[case],
        content_type="application/json",
        HTTP_SEC_FETCH_SITE="same-origin",
    )
    if case.startswith("extra_pnginfo"):
        assert answer.status_code == 200  # a harmless oddity: queued, with no workflow name
        return
    assert answer.status_code == 400
    assert answer.json()["error"]["message"]
    assert not Job.objects.exists()


@pytest.mark.parametrize("route", ["queue", "history", "interrupt", "settings", "settings/Comfy.X", "jobs/cancel"])
def test_other_json_routes_refuse_deep_or_odd_bodies(alice, participants, route):
    before = _files_of(participants[0].root / "input") + _files_of(participants[0].root / "output")
    for body in ("[" * 100_000 + "]" * 100_000, '{"a": NaN}', "[1]", '{"delete": "x"}', '{"delete": [[1]]}'):
        answer = alice.post(f"/user/001/api/{route}", data=body, content_type="application/json")
        assert answer.status_code in (200, 400), (route, body[:20], answer.status_code)
        if answer.status_code == 400:
            assert answer.json()["error"]
    assert _files_of(participants[0].root / "input") + _files_of(participants[0].root / "output") == before


def test_names_too_long_for_any_file_system_are_a_400(alice, participants):
    from io import BytesIO

    long = "a" * 300 + ".png"
    assert alice.get(f"/user/001/api/view?filename={long}&type=input").status_code == 400
    upload = BytesIO(b"\x89PNG")
    upload.name = long
    answer = alice.post("/user/001/api/upload/image", {"image": upload})
    assert answer.status_code == 400 and "too long" in answer.json()["error"]
    assert alice.post(f"/user/001/api/userdata/{long}", data=b"{}", content_type="application/json").status_code == 400
    assert alice.get(f"/user/001/api/userdata/{long}").status_code == 400
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": long}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
    }
    assert post_json(alice, "/user/001/api/prompt", {"prompt": prompt}).status_code == 400
    assert not Job.objects.exists()


def test_mask_with_an_odd_original_ref_is_a_400(alice, participants):
    from io import BytesIO

    for ref in (
        '"x"',
        '{"filename": ["x"]}',
        "[1]",
        "{",
        '{"filename": "missing.png"}',
        '{"a":' * 100 + "1" + "}" * 100,
    ):
        mask = BytesIO(_png(8, 8))
        mask.name = "mask.png"
        answer = alice.post("/user/001/api/upload/mask", {"image": mask, "original_ref": ref})
        assert answer.status_code == 400 and answer.json()["error"], ref
    assert _files_of(participants[0].root / "input") == []


def test_images_with_too_many_pixels_are_refused_from_their_header(alice, participants, settings):
    from io import BytesIO

    for width, height in ((60000, 60000), (12000, 12000)):
        bomb = BytesIO(_png(width, height))
        bomb.name = "bomb.png"
        answer = alice.post("/user/001/api/upload/image", {"image": bomb})
        assert answer.status_code == 400 and "megapixels" in answer.json()["error"]
    assert _files_of(participants[0].root / "input") == []
    # As the original of a mask (it was already in the workspace): refused before decoding too.
    (participants[0].root / "input" / "big.png").write_bytes(_png(12000, 12000))
    mask = BytesIO(_png(8, 8))
    mask.name = "mask.png"
    answer = alice.post("/user/001/api/upload/mask", {"image": mask, "original_ref": '{"filename": "big.png"}'})
    assert answer.status_code == 400 and "megapixels" in answer.json()["error"]


def test_userdata_onto_a_folder_or_through_a_file_is_a_4xx_and_leaves_nothing(alice, participants):
    userdata = participants[0].root / "userdata"
    alice.post("/user/001/api/userdata/workflows/a.json", data=b"{}", content_type="application/json")
    onto = alice.post("/user/001/api/userdata/workflows", data=b"{}", content_type="application/json")
    assert onto.status_code == 409 and "folder" in onto.json()["error"]
    through = alice.post("/user/001/api/userdata/workflows/a.json/b.json", data=b"{}", content_type="application/json")
    assert through.status_code == 400 and "not a folder" in through.json()["error"]
    assert alice.get("/user/001/api/userdata/workflows/a.json/b.json").status_code == 400
    moved = alice.post("/user/001/api/userdata/workflows/a.json/move/workflows")
    assert moved.status_code == 409
    assert sorted(p.name for p in userdata.rglob("*")) == ["a.json", "workflows"]


def test_history_with_negative_or_odd_paging_is_answered(alice):
    for query in (
        "max_items=-1",
        "max_items=-1&offset=3",
        "offset=-5",
        "max_items=x",
        "max_items=99999999999999999999",
    ):
        answer = alice.get(f"/user/001/api/history?{query}")
        assert answer.status_code in (200, 400), query


def test_an_unreadable_settings_file_counts_as_empty_and_the_caller_is_told(alice, participants):
    path = participants[0].root / "userdata" / "comfy.settings.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    answer = alice.get("/user/001/api/settings")
    assert answer.status_code == 200 and "could not be read" in answer["X-Workshop-Warning"]
    assert answer.json()["Comfy.TutorialCompleted"] is True
    assert post_json(alice, "/user/001/api/settings/Comfy.A", 1).status_code == 200
    assert alice.get("/user/001/api/settings/Comfy.A").json() == 1
    assert "X-Workshop-Warning" not in alice.get("/user/001/api/settings")


# --- body limits before the body (the real Daphne) ----------------------------------------------


def _send_headers(url, lines: list[str], body: bytes = b"", chunks=()) -> tuple[bytes, int]:
    """Sends a request's headers (and what body is given), then reads the answer: the refusal
    must come while the client still holds most of the body back."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        sent = len(body)
        for chunk in chunks:
            try:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                data = conn.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    return answer, sent


def test_oversized_or_unauthenticated_bodies_are_refused_before_they_are_read(live_app, participants):
    from jobs.models import Worker

    job_path = "/api/worker/jobs/00000000-0000-0000-0000-000000000000/outputs?run=1&filename=x.mp4"
    # No token: refused with the headers, though 200 MB are announced.
    answer, _ = _send_headers(
        live_app.url, [f"PUT {job_path} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 209715200"]
    )
    assert answer.startswith(b"HTTP/1.1 401")
    # A well-formed token this server never accepted: only a small body.
    fake = "Bearer wt_" + "x" * 43
    answer, _ = _send_headers(
        live_app.url,
        [f"PUT {job_path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: {fake}", "Content-Length: 209715200"],
    )
    assert answer.startswith(b"HTTP/1.1 413")
    # A participant's 150 MB upload: 413 from Content-Length, not after the body.
    alice = live_app.login("user001")
    cookie = "; ".join(f"{k}={v}" for k, v in alice.cookies.items())
    answer, _ = _send_headers(
        live_app.url,
        [
            "POST /user/001/api/upload/image HTTP/1.1",
            "Host: 127.0.0.1",
            f"Cookie: {cookie}",
            "Content-Type: multipart/form-data; boundary=b",
            f"Content-Length: {150 * 2**20}",
        ],
    )
    assert answer.startswith(b"HTTP/1.1 413") and b"Files up to" in answer
    # Without a Content-Length (chunked), it ends once the body passes the limit.
    chunk = b"x" * 2**20
    answer, sent = _send_headers(
        live_app.url,
        ["POST /user/001/api/settings HTTP/1.1", "Host: 127.0.0.1", f"Cookie: {cookie}", "Transfer-Encoding: chunked"],
        chunks=[chunk] * 64,
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert sent < 64 * 2**20
    # Nothing of that reached a workspace, and a real worker still gets in.
    assert not any((participants[0].root / "input").iterdir())
    _, token = Worker.create_with_token("gpu-1")
    ok = requests_post(f"{live_app.url}/api/worker/heartbeat", token)
    assert ok.status_code == 200


def requests_post(url, token):
    import requests

    return requests.post(url, json={"status": "idle"}, headers={"Authorization": f"Bearer {token}"}, timeout=10)


# --- websockets at scale -------------------------------------------------------------------------


def test_500_sockets_on_one_daphne_all_hear_a_queue_change_and_leave_their_groups(live_app, participants, clean_redis):
    """At 200 sockets the channel layer's Redis pool ran out (MaxConnectionsError) and dead
    channels stayed in the queue group."""
    import asyncio

    from websockets.asyncio.client import connect

    alice = live_app.login("user001")
    cookie = "; ".join(f"{k}={v}" for k, v in alice.cookies.items())
    url = f"{live_app.url.replace('http', 'ws', 1)}/user/001/ws"
    group = "workshop-test:group:queue"

    async def scenario():
        gate = asyncio.Semaphore(50)

        async def open_one(n):
            async with gate:
                ws = await connect(
                    f"{url}?clientId=s{n}",
                    additional_headers={"Cookie": cookie, "Origin": live_app.url},
                    open_timeout=60,
                )
                first = json.loads(await asyncio.wait_for(ws.recv(), 60))
                assert first["type"] == "status"
                return ws

        sockets = await asyncio.gather(*(open_one(n) for n in range(500)))
        assert clean_redis.zcard(group) == 500

        async def hears_the_change(ws):
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if message["type"] == "workshop.queue" and message["data"].get("waiting"):
                    return True

        listening = [asyncio.ensure_future(hears_the_change(ws)) for ws in sockets]
        await asyncio.to_thread(alice.post, f"{live_app.url}/user/001/api/prompt", json={"prompt": SIMPLE}, timeout=30)
        heard = await asyncio.gather(*listening)
        await asyncio.gather(*(ws.close() for ws in sockets))
        return heard

    heard = asyncio.run(scenario())
    assert heard == [True] * 500
    wait_until(lambda: clean_redis.zcard(group) == 0, timeout=30, message="closed sockets to leave the queue group")
    log = (live_app.tmp_path / "daphne.log").read_text()
    assert "MaxConnectionsError" not in log and "Traceback" not in log


# --- accounts ------------------------------------------------------------------------------------


def _login(client, username, password, address="10.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


THROTTLED = "Too many failed logins for this name"


def test_wrong_passwords_for_one_name_slow_it_down_even_when_the_right_one_comes(client, participants, settings):
    for _ in range(settings.LOGIN_FAILURES_PER_USER):
        assert _login(client, "user001", "wrong").status_code == 200
    refused = _login(client, "user001", "pw")
    said = refused.content.decode()
    assert refused.status_code == 200 and THROTTLED in said and "try again in 30 s" in said and "login link" in said
    assert 'value="user001"' in said, "the name stays in its field"
    assert "_auth_user_id" not in client.session
    # Other participants behind the same address still get in.
    assert _login(client, "user002", "pw").status_code == 302


def test_200_guesses_from_the_class_address_slow_nobody_else_and_get_nowhere(client, participants, settings):
    """The red team: 200 failed logins with made-up names from the venue's address refused
    user016, user017 and the instructor for 15 minutes. Now the class still logs in, and 200
    guesses at one account are mostly refused unchecked."""
    import time

    from django.contrib.auth.signals import user_login_failed

    for n in range(200):
        _login(client, f"nobody{n}", "x")
    for name in ("user001", "user002", "instructor"):
        assert _login(Client(), name, "pw").status_code == 302, f"{name} still gets in from the venue"

    checked = []
    user_login_failed.connect(lambda **kw: checked.append(1), weak=False, dispatch_uid="count-checked")
    try:
        began = time.monotonic()
        answers = [_login(client, "user003", f"guess{n}").content.decode() for n in range(200)]
        elapsed = time.monotonic() - began
    finally:
        user_login_failed.disconnect(dispatch_uid="count-checked")
    # Ten tries, then one per LOGIN_SLOW_SECONDS: the rest are refused before any password check.
    assert len(checked) <= settings.LOGIN_FAILURES_PER_USER + 1 + elapsed // settings.LOGIN_SLOW_SECONDS
    assert sum(THROTTLED in answer for answer in answers) >= 200 - len(checked)
    assert THROTTLED in _login(Client(), "user003", "pw").content.decode(), "a new browser waits its turn too"


def test_the_owner_of_a_guessed_account_waits_seconds_not_a_quarter_hour(participants, settings):
    settings.LOGIN_SLOW_SECONDS = 2
    guesser = Client()
    for n in range(settings.LOGIN_FAILURES_PER_USER + 5):
        _login(guesser, "instructor", f"guess{n}")
    owner = Client()  # the instructor, on a browser this app has never seen
    assert THROTTLED in _login(owner, "instructor", "pw").content.decode()
    wait_until(
        lambda: _login(owner, "instructor", "pw").status_code == 302,
        timeout=30,
        message="the instructor to get in once the turn comes",
    )


def test_a_guessed_accounts_owner_still_gets_in_from_their_own_browser(client, participants, settings):
    owner = Client()
    assert _login(owner, "user002", "pw").status_code == 302 and "workshop_device" in owner.cookies
    owner.post("/accounts/logout/")  # signed out, as on a shared laptop: the browser stays known
    for n in range(settings.LOGIN_FAILURES_PER_ACCOUNT):  # a spread guess, from many addresses
        _login(client, "user002", "guess", address=f"10.7.{n // 250}.{n % 250}")
    assert THROTTLED in _login(Client(), "user002", "pw", address="10.8.8.8").content.decode()
    assert _login(owner, "user002", "pw", address="10.0.0.1").status_code == 302, "their own browser"
    forged = Client()
    forged.cookies["workshop_device"] = owner.cookies["workshop_device"].value[:-2] + "xx"
    assert THROTTLED in _login(forged, "user002", "pw").content.decode()


def test_a_new_password_starts_the_count_again(client, participants, settings):
    for n in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        _login(client, "user003", "guess", address=f"10.9.0.{n}")
    assert THROTTLED in _login(Client(), "user003", "pw").content.decode()
    password = Workspace.objects.get(owner__username="user003").owner_reset_password()  # the console's reset
    assert _login(Client(), "user003", password).status_code == 302, "the new card works at once"


@pytest.mark.e2e
def test_a_burst_of_guesses_sent_at_once_is_checked_at_most_eleven_times(live_app, participants):
    """The red team sent 200 guesses, 50 at once: 54 were checked, because a try was counted only
    after its password had been. Now each try is counted first."""
    from concurrent.futures import ThreadPoolExecutor

    guesser = requests.Session()
    guesser.get(f"{live_app.url}/accounts/login/", timeout=10)
    start = threading.Barrier(20)

    def guess(n):
        if n < 20:
            start.wait()
        answer = guesser.post(
            f"{live_app.url}/accounts/login/",
            timeout=60,
            allow_redirects=False,
            data={"username": "user002", "password": f"guess{n}", "csrfmiddlewaretoken": guesser.cookies["csrftoken"]},
            headers={"Referer": f"{live_app.url}/accounts/login/"},
        )
        return THROTTLED not in answer.text

    with ThreadPoolExecutor(20) as pool:
        checked = sum(pool.map(guess, range(100)))
    assert checked <= 11, f"{checked} of 100 guesses were checked"


def test_the_accounts_own_browser_is_never_slowed_by_others_and_cannot_guess_either(client, participants, settings):
    owner = Client()
    assert _login(owner, "user002", "pw").status_code == 302
    owner.post("/accounts/logout/")
    for n in range(settings.LOGIN_FAILURES_PER_USER):
        _login(owner, "user002", f"guess{n}")  # someone at the shared laptop, after the owner left
    assert THROTTLED in _login(owner, "user002", "pw").content.decode(), "the known browser's guesses slow it too"
    assert _login(Client(), "user002", "pw").status_code == 302, "a guess on that browser slows nobody else"


def test_a_login_link_lets_the_classmate_in_though_a_script_takes_every_turn(client, participants, settings):
    """The red team's script took every turn of a classmate's name, and went on after the
    instructor's reset. The reset page's one-time link gets them in, and their browser is the
    account's known one from then on: the script slows it no more."""
    staff = Client()
    staff.force_login(get_user_model().objects.get(username="instructor"))
    for n in range(settings.LOGIN_FAILURES_PER_USER + 1):
        _login(client, "user003", f"guess{n}")
    page = staff.post("/admin/console/workspaces/003/reset-password").content.decode()
    link = re.search(r'<code class="login-link">[^<]*(/accounts/link/[^/<]+/)</code>', page).group(1)
    password = re.search(r'<code class="new-password">([^<]+)</code>', page).group(1)
    for n in range(settings.LOGIN_FAILURES_PER_USER + 1):  # the script goes on at once
        _login(client, "user003", f"again{n}")
    classmate = Client()
    assert THROTTLED in _login(classmate, "user003", password).content.decode(), "the script holds the turn"
    assert "Log in as user003" in classmate.get(link).content.decode(), "a preview does not use it up"
    assert classmate.post(link)["Location"] == "/user/003/"
    assert classmate.get("/user/003/api/settings").status_code == 200
    assert classmate.post(link).status_code == 410, "it works once"
    assert Client().get(link).status_code == 410
    classmate.post("/accounts/logout/")
    for n in range(settings.LOGIN_FAILURES_PER_USER + 1):
        _login(client, "user003", f"later{n}")
    assert _login(classmate, "user003", password).status_code == 302, "their browser is known now"
    assert THROTTLED in _login(client, "user003", "guess").content.decode(), "the guesser is still slowed"


def test_a_login_link_ends_with_a_newer_link_or_a_new_password(participants):
    """The trial: links survived a password change, and any number could be live at once."""
    user = get_user_model().objects.get(username="user001")
    first, second = loginlinks.issue(user), loginlinks.issue(user)
    first_path, second_path = (link[link.index("/accounts/") :] for link in (first, second))
    assert Client().post(first_path).status_code == 410, "a newer link ends the older one"
    user.set_password("violet-lantern-42")
    user.save()
    assert Client().post(second_path).status_code == 410, "a new password ends it"
    third = loginlinks.issue(user)
    assert Client().post(third[third.index("/accounts/") :])["Location"] == "/user/001/"


def test_the_owners_login_at_the_shared_address_gives_a_guesser_no_fresh_tries(client, participants, settings):
    """The trial: each owner login at the venue's address gave the guesser there 10 more checks."""
    for n in range(settings.LOGIN_FAILURES_PER_USER - 1):
        _login(client, "user002", f"guess{n}")
    assert _login(Client(), "user002", "pw").status_code == 302  # the owner, a new browser
    _login(client, "user002", "guess-last")
    assert THROTTLED in _login(client, "user002", "guess-more").content.decode()


def test_the_console_makes_a_login_link_without_changing_the_password(participants):
    staff = Client()
    staff.force_login(get_user_model().objects.get(username="instructor"))
    page = staff.post("/admin/console/workspaces/002/login-link").content.decode()
    assert "<svg" in page and "new-password" not in page, "a QR code, and no new password"
    link = re.search(r'<code class="login-link">[^<]*(/accounts/link/[^/<]+/)</code>', page).group(1)
    assert Client().post(link)["Location"] == "/user/002/"
    assert Client().login(username="user002", password="pw"), "the card's password still works"
    participants_page = staff.get("/admin/console/participants/").content.decode()
    assert 'data-confirm="A new password for user002?' in participants_page, "a reset asks first"


def test_the_operator_makes_a_login_link_for_the_instructor(participants):
    out = io.StringIO()
    call_command("workshop_users", "link", "instructor", stdout=out)
    link = re.search(r"(/accounts/link/[^/\s]+/)", out.getvalue()).group(1)
    browser = Client()
    assert browser.post(link)["Location"] == "/admin/console/"
    assert browser.get("/admin/console/participants/").status_code == 200


def test_the_admin_login_is_throttled_too(client, participants, settings):
    for _ in range(settings.LOGIN_FAILURES_PER_USER):
        client.post("/admin/login/", {"username": "instructor", "password": "wrong"})
    page = client.post("/admin/login/?next=/admin/", {"username": "instructor", "password": "pw"})
    assert "Too many failed logins" in page.content.decode()


def test_a_participant_changes_their_password_under_the_validators(alice, client):
    page = alice.get("/accounts/password/")
    assert page.status_code == 200 and "Change your password" in page.content.decode()
    weak = alice.post(
        "/accounts/password/", {"old_password": "pw", "new_password1": "12345678901", "new_password2": "12345678901"}
    )
    assert weak.status_code == 200 and "entirely numeric" in weak.content.decode()
    short = alice.post(
        "/accounts/password/", {"old_password": "pw", "new_password1": "aB3$x", "new_password2": "aB3$x"}
    )
    assert "too short" in short.content.decode()
    done = alice.post(
        "/accounts/password/",
        {"old_password": "pw", "new_password1": "violet-lantern-42", "new_password2": "violet-lantern-42"},
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/password/done/"
    assert "Password changed" in alice.get("/accounts/password/done/").content.decode()
    assert alice.get("/user/001/api/settings").status_code == 200, "still logged in"
    client.logout()
    assert client.login(username="user001", password="violet-lantern-42")


def test_a_session_lasts_a_workshop_day(alice, settings):
    assert settings.SESSION_COOKIE_AGE == 14 * 3600
    assert 13 * 3600 < alice.session.get_expiry_age() <= 14 * 3600


def test_a_refused_request_is_one_log_line_not_a_traceback(alice, caplog):
    import logging

    from jobs.models import Catalog

    Catalog.objects.create(
        worker=_worker("gpu-1"),
        object_info={"EmptyImage": {"input": {"required": {}}, "output": ["IMAGE"], "output_node": False}},
    )

    bad = [
        ("/user/001/api/prompt", '{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": NaN}}}}'),
        ("/user/001/api/prompt", "[" * 5000 + "]" * 5000),
        ("/user/001/api/settings", '{"a":' * 500 + "1" + "}" * 500),
        ("/user/001/api/prompt", json.dumps({"prompt": {"1": {"class_type": "Nope", "inputs": {"x": "y" * 2300}}}})),
    ]
    for path, body in bad:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            answer = alice.post(path, data=body, content_type="application/json")
        assert 400 <= answer.status_code < 500
        assert len(caplog.records) <= 1, [r.getMessage() for r in caplog.records]
        assert all(r.exc_info is None and len(r.getMessage()) < 300 for r in caplog.records)


def test_only_a_token_this_deployment_signed_may_send_a_large_body_before_it_was_seen(settings):
    """A worker's first call may be its 5.6 MB catalog (ComfyUI 0.28): its token alone, checked
    before the body, lets it through; a forged one, or another deployment's, gets 3 MB."""
    from jobs.tokens import new_token
    from workshop import limits

    def limit(token):
        header = f"Bearer {token}"
        return limits.body_limit("/api/worker/catalog", header, limits.worker_known(header), False)[0]

    token = new_token()
    assert limit(token) == limits.CATALOG_BYTES
    forged = token[:-3] + ("abc" if not token.endswith("abc") else "xyz")
    assert limit(forged) == limits.small()
    assert limit("wt_" + "x" * 65) == limits.small(), "the right length is not enough"
    # Not ASCII: refused outright, and deciding so raises nothing (it runs in Daphne's reactor).
    assert limit(token[:-1] + "é") == -1 and not limits.worker_known(f"Bearer {token[:-1]}é")
    settings.SECRET_KEY = "another deployment's key"
    assert limit(token) == limits.small()


@pytest.mark.e2e
def test_a_refused_request_is_one_log_line_without_a_traceback(live_app, participants):
    """The red team's fuzz left 22 tracebacks in the log for requests Django refuses itself."""
    alice = live_app.login("user001")
    headers = {"Origin": live_app.url, "X-CSRFToken": alice.cookies["csrftoken"]}
    many = "&".join(f"f{n}=x" for n in range(1500))  # over DATA_UPLOAD_MAX_NUMBER_FIELDS
    too_many = alice.post(
        f"{live_app.url}/accounts/login/",
        data=many,
        timeout=10,
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    broken = alice.post(
        f"{live_app.url}/user/001/api/upload/image",
        data=b"--b\r\nnot a part",
        timeout=10,
        headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
    )
    log = (live_app.tmp_path / "daphne.log").read_text()
    assert too_many.status_code == 400 and broken.status_code == 400
    assert "TooManyFieldsSent" in log
    assert "Traceback" not in log, log[-3000:]
