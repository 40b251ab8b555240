"""The rest of ComfyUI's API per workspace: shapes as ComfyUI returns them, isolation kept."""

import io
import json

import pytest
from PIL import Image

from jobs.models import Catalog, Worker


@pytest.fixture
def catalog(db):
    worker, _ = Worker.create_with_token("gpu-1")
    worker.beat("idle")
    object_info = {
        "LoadImage": {
            "input": {"required": {"image": [["gpu-host-secret.png"], {"image_upload": True}]}},
            "output": ["IMAGE", "MASK"],
            "output_node": False,
        },
        "SaveImage": {"input": {"required": {"images": ["IMAGE"]}}, "output": [], "output_node": True},
    }
    data = {
        "system_stats": {"system": {"comfyui_version": "0.3.64"}, "devices": [{"name": "H100"}]},
        "embeddings": ["easynegative"],
        "models": ["checkpoints", "loras"],
        "model_files": {"checkpoints": ["sd15.safetensors"]},
    }
    return Catalog.objects.create(worker=worker, object_info=object_info, comfyui_version="0.3.64", data=data)


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def png_bytes(color=(255, 0, 0), size=(8, 8)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


# --- the page --------------------------------------------------------------------------------


def test_workspace_page_needs_login_and_belongs_to_its_owner(client, participants):
    assert client.get("/user/001/").status_code == 302
    client.login(username="user002", password="pw")
    assert client.get("/user/001/").status_code == 404
    page = client.get("/user/002/")
    assert page.status_code == 200 and b"<title>ComfyUI</title>" in body_of(page)
    assert page["Cache-Control"] == "no-cache"


def test_path_without_slash_redirects_so_the_ui_finds_its_api(client):
    answer = client.get("/user/001")
    assert answer.status_code == 301 and answer["Location"] == "/user/001/"


def test_landing_page_sends_participants_to_their_workspace(alice):
    assert alice.get("/")["Location"] == "/user/001/"


def test_frontend_assets_are_cached_and_favicon_frames_served_at_the_root(alice):
    from frontend_bridge.frontend import FRONTEND_ROOT

    bundle = next((FRONTEND_ROOT / "assets").glob("index-*.js")).name
    answer = alice.get(f"/user/001/assets/{bundle}")
    assert answer.status_code == 200 and "immutable" in answer["Cache-Control"]
    assert alice.get("/assets/images/favicon_progress_16x16/frame_0.png").status_code == 200
    assert alice.get("/user/001/user.css").status_code == 200
    assert alice.get("/user/001/assets/../../../etc/passwd").status_code == 404


# --- userdata and settings ---------------------------------------------------------------------


def test_userdata_save_list_read_move_delete(alice):
    base = "/user/001/api/userdata"
    saved = alice.post(
        f"{base}/workflows%2Fmine.json?overwrite=true&full_info=true", data=b'{"x":1}', content_type="application/json"
    )
    assert saved.status_code == 200 and saved.json()["path"] == "workflows/mine.json"
    listing = alice.get(base, {"dir": "workflows", "recurse": "true", "split": "false", "full_info": "true"}).json()
    assert {"mine.json", "workshop/hello.json"} <= {item["path"] for item in listing}
    assert body_of(alice.get(f"{base}/workflows%2Fmine.json")) == b'{"x":1}'
    refused = alice.post(f"{base}/workflows%2Fmine.json?overwrite=false", data=b"{}", content_type="application/json")
    assert refused.status_code == 409
    moved = alice.post(f"{base}/workflows%2Fmine.json/move/workflows%2Fours.json?overwrite=true")
    assert moved.json() == "workflows/ours.json"
    assert alice.delete(f"{base}/workflows%2Fours.json").status_code == 204
    assert alice.get(f"{base}/workflows%2Fours.json").status_code == 404


def test_userdata_cannot_escape_or_reach_another_workspace(alice, participants):
    (participants[1].root / "userdata").mkdir(parents=True, exist_ok=True)
    (participants[1].root / "userdata" / "secret.json").write_text("{}")
    assert alice.get("/user/001/api/userdata/..%2F..%2F002%2Fuserdata%2Fsecret.json").status_code == 400
    assert alice.get("/user/002/api/userdata/secret.json").status_code == 404


def test_workshop_workflows_are_read_only_originals_with_personal_copies(alice):
    url = "/user/001/api/userdata/workflows%2Fworkshop%2Fhello.json"
    original = json.loads(body_of(alice.get(url)))
    assert [n["type"] for n in original["nodes"]] == ["EmptyImage", "ImageInvert", "SaveImage"]
    assert alice.delete(url).status_code == 403
    original["nodes"][0]["widgets_values"][0] = 64
    assert (
        alice.post(url + "?overwrite=true", data=json.dumps(original), content_type="application/json").status_code
        == 200
    )
    assert json.loads(body_of(alice.get(url)))["nodes"][0]["widgets_values"][0] == 64


def test_official_templates_are_offered_as_workshop_workflows(alice):
    listing = alice.get("/user/001/api/userdata", {"dir": "workflows", "recurse": "true", "full_info": "true"}).json()
    names = {item["path"] for item in listing}
    assert {
        "workshop/video_ltx2_t2v.json",
        "workshop/video_ltx2_i2v.json",
        "workshop/video_ltx2_t2v_distilled.json",
        "workshop/video_ltx2_i2v_distilled.json",
        "workshop/hello.json",
    } <= names


def test_settings_per_workspace(alice, client, participants):
    assert alice.get("/user/001/api/settings").json()["Comfy.TutorialCompleted"] is True
    assert (
        alice.post("/user/001/api/settings/Comfy.ColorPalette", data='"light"', content_type="text/plain").status_code
        == 200
    )
    assert alice.get("/user/001/api/settings/Comfy.ColorPalette").json() == "light"
    alice.post("/user/001/api/settings", data=json.dumps({"Comfy.LinkRenderMode": 2}), content_type="application/json")
    assert alice.get("/user/001/api/settings").json()["Comfy.LinkRenderMode"] == 2
    client.logout()
    client.login(username="user002", password="pw")
    assert "Comfy.ColorPalette" not in client.get("/user/002/api/settings").json()


def test_users_and_features_like_a_single_user_comfyui(alice):
    assert alice.get("/user/001/api/users").json() == {"storage": "server", "migrated": False}
    assert alice.get("/user/001/api/features").json()["max_upload_size"] > 0


# --- uploads ---------------------------------------------------------------------------------


def upload(client, name, data, **fields):
    return client.post("/user/001/api/upload/image", {"image": _named(name, data), **fields})


def _named(name, data):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="image/png")


def test_upload_image_like_comfyui(alice, participants):
    first = upload(alice, "cat.png", png_bytes()).json()
    assert first == {"name": "cat.png", "subfolder": "", "type": "input"}
    renamed = upload(alice, "cat.png", png_bytes((0, 255, 0))).json()
    assert renamed["name"] == "cat (1).png", "a different file with the same name is kept apart"
    replaced = upload(alice, "cat.png", png_bytes((0, 0, 255)), overwrite="true").json()
    assert replaced["name"] == "cat.png"
    into = upload(alice, "dog.png", png_bytes(), subfolder="pets").json()
    assert into == {"name": "dog.png", "subfolder": "pets", "type": "input"}
    assert participants[0].file_path("input", "dog.png", "pets").is_file()
    assert not participants[1].file_path("input", "cat.png").exists()


def test_upload_refuses_escapes_and_full_workspaces(alice, participants):
    assert upload(alice, "x.png", png_bytes(), subfolder="../../002/input").status_code == 400
    participants[0].quota_bytes = 10
    participants[0].save()
    answer = upload(alice, "big.png", png_bytes())
    assert answer.status_code == 413 and "full" in answer.json()["error"]


def test_upload_mask_puts_the_mask_into_the_image_alpha(alice, participants):
    upload(alice, "photo.png", png_bytes(size=(4, 4)))
    mask = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(mask, "PNG")
    answer = alice.post(
        "/user/001/api/upload/mask",
        {
            "image": _named("clipspace-mask.png", mask.getvalue()),
            "original_ref": json.dumps({"filename": "photo.png", "subfolder": "", "type": "input"}),
            "subfolder": "clipspace",
            "type": "input",
        },
    )
    assert answer.status_code == 200
    result = Image.open(participants[0].file_path("input", "clipspace-mask.png", "clipspace"))
    assert result.mode == "RGBA" and result.getpixel((0, 0))[3] == 0


# --- catalog routes ----------------------------------------------------------------------------


def test_object_info_lists_only_the_workspaces_own_input_files(alice, catalog):
    upload(alice, "mine.png", png_bytes())
    info = alice.get("/user/001/api/object_info").json()
    assert info["LoadImage"]["input"]["required"]["image"][0] == ["mine.png"]
    one = alice.get("/user/001/api/object_info/LoadImage").json()
    assert list(one) == ["LoadImage"] and "gpu-host-secret.png" not in json.dumps(one)
    assert alice.get("/user/001/api/object_info/Nope").json() == {}


def test_catalog_routes_come_from_the_gpu_workers(alice, catalog):
    assert alice.get("/user/001/api/system_stats").json()["devices"][0]["name"] == "H100"
    assert alice.get("/user/001/api/embeddings").json() == ["easynegative"]
    assert alice.get("/user/001/api/models").json() == ["checkpoints", "loras"]
    assert alice.get("/user/001/api/models/checkpoints").json() == ["sd15.safetensors"]
    assert alice.get("/user/001/api/models/bogus").status_code == 404
    assert alice.get("/user/001/api/experiment/models").json()[0]["name"] == "checkpoints"


def _worker_client(client, name="gpu-1"):
    worker, token = Worker.create_with_token(name)
    worker.beat("idle")
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_global_subgraphs_are_published_one_by_one_and_served_with_their_etag(alice, client, db):
    """0.28 ships about 90 blueprints (4 MB): the catalog carries their index, each one's data
    comes as a file of its own, and a browser that has one gets 304 while it is unchanged."""
    from django.test import Client

    gpu = _worker_client(Client())
    worker = Client()
    blueprint = {
        "source": "templates",
        "name": "Text to Video (LTX 2.0)",
        "info": {"node_pack": "comfyui"},
        "data": json.dumps({"nodes": [], "definitions": {"subgraphs": []}}),
    }
    index = {
        "a1": {k: v for k, v in blueprint.items() if k != "data"},
        "b2": {"source": "templates", "name": "Other", "info": {"node_pack": "comfyui"}},
    }
    for key in index:
        put = worker.put(
            f"/api/worker/catalog/files?path=/global_subgraphs/{key}",
            data=json.dumps({**index[key], "data": blueprint["data"]}),
            content_type="application/json",
            **gpu,
        )
        assert put.status_code == 200, put.content
    held = worker.get("/api/worker/catalog/files", **gpu).json()
    assert set(held) == {"/global_subgraphs/a1", "/global_subgraphs/b2"} and all(len(v) == 64 for v in held.values())
    catalog = {"object_info": {}, "comfyui_version": "0.28.0", "global_subgraphs": index, "files": sorted(held)}
    assert (
        worker.post("/api/worker/catalog", data=json.dumps(catalog), content_type="application/json", **gpu).status_code
        == 200
    )

    assert alice.get("/user/001/api/global_subgraphs").json() == index, "the index, without data"
    one = alice.get("/user/001/api/global_subgraphs/a1")
    assert one.json() == blueprint and one["Cache-Control"] == "private, max-age=600"
    again = alice.get("/user/001/api/global_subgraphs/a1", HTTP_IF_NONE_MATCH=one["ETag"])
    assert again.status_code == 304 and again.content == b""
    assert alice.get("/user/001/api/global_subgraphs/nope").json() is None, "ComfyUI's answer: null"

    # The GPU host lost one: the next catalog no longer names it, and the app forgets it.
    catalog["files"] = ["/global_subgraphs/a1"]
    del catalog["global_subgraphs"]["b2"]
    worker.post("/api/worker/catalog", data=json.dumps(catalog), content_type="application/json", **gpu)
    assert alice.get("/user/001/api/global_subgraphs/b2").json() is None
    assert list(worker.get("/api/worker/catalog/files", **gpu).json()) == ["/global_subgraphs/a1"]


def test_a_worker_from_before_catalog_files_still_gets_its_blueprints_served(alice, client, db):
    """A catalog without `files` (an older gpuworker) carries each blueprint's data inline: it
    is kept, and served from there."""
    gpu = _worker_client(client)
    entry = {"source": "templates", "name": "Old", "info": {"node_pack": "comfyui"}, "data": '{"nodes": []}'}
    catalog = {"object_info": {}, "comfyui_version": "0.12.0", "global_subgraphs": {"old1": entry}}
    assert (
        client.post("/api/worker/catalog", data=json.dumps(catalog), content_type="application/json", **gpu).status_code
        == 200
    )
    assert alice.get("/user/001/api/global_subgraphs").json() == {
        "old1": {k: v for k, v in entry.items() if k != "data"}
    }
    assert alice.get("/user/001/api/global_subgraphs/old1").json() == entry


def test_a_body_that_says_gzip_and_is_not_gets_a_400(client, db):
    import gzip

    gpu = _worker_client(client)
    damaged = bytearray(gzip.compress(json.dumps({"object_info": {}}).encode() * 50))
    damaged[20:30] = b"\xff" * 10
    for body in (b"plain text", bytes(damaged)):
        answer = client.post(
            "/api/worker/catalog", data=body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip", **gpu
        )
        assert answer.status_code == 400 and "gzip" in answer.json()["error"]


@pytest.mark.parametrize(
    "path, body",
    [
        ("/global_subgraphs/../secret", b"{}"),
        ("/global_subgraphs/a%2Fb", b"{}"),
        ("/global_subgraphs/ok", b"not json"),
        ("/global_subgraphs/ok", b"[1]"),
        ("/extensions/core/app.js", b"x"),
        ("/etc/passwd", b"x"),
    ],
)
def test_a_catalog_file_outside_its_places_or_not_comfyuis_shape_is_refused(client, db, path, body):
    gpu = _worker_client(client)
    answer = client.put(f"/api/worker/catalog/files?path={path}", data=body, content_type="application/json", **gpu)
    assert answer.status_code == 400 and "error" in answer.json()
    assert client.get("/api/worker/catalog/files", **gpu).json() == {}


def test_system_stats_name_the_frontend_and_templates_the_browser_gets(alice, db):
    """0.28.0 lists its own pinned packages (frontend 1.45.21, templates 0.11.9); the About
    panel must show what the app serves instead."""
    from importlib.metadata import version

    worker, _ = Worker.create_with_token("gpu-1")
    worker.beat("idle")
    packages = [
        {"name": "comfyui-frontend-package", "installed": "1.45.21", "required": "1.45.21"},
        {"name": "comfyui-workflow-templates", "installed": "0.11.9", "required": "0.11.9"},
        {"name": "comfy-kitchen", "installed": "0.2.21", "required": "0.2.21"},
    ]
    Catalog.objects.create(
        worker=worker,
        object_info={},
        comfyui_version="0.28.0",
        data={
            "system_stats": {
                "system": {
                    "comfyui_version": "0.28.0",
                    "required_frontend_version": "1.45.21",
                    "installed_templates_version": "0.11.9",
                    "required_templates_version": "0.11.9",
                    "comfy_package_versions": packages,
                },
                "devices": [],
            }
        },
    )
    system = alice.get("/user/001/api/system_stats").json()["system"]
    frontend, templates = version("comfyui-frontend-package"), version("comfyui-workflow-templates")
    assert system["required_frontend_version"] == frontend
    assert system["installed_templates_version"] == system["required_templates_version"] == templates
    listed = {p["name"]: (p["installed"], p["required"]) for p in system["comfy_package_versions"]}
    assert listed == {
        "comfyui-frontend-package": (frontend, frontend),
        "comfyui-workflow-templates": (templates, templates),
        "comfy-kitchen": ("0.2.21", "0.2.21"),
    }


def test_without_any_gpu_worker_the_ui_still_loads(alice):
    stats = alice.get("/user/001/api/system_stats").json()
    assert stats["devices"] == [] and stats["system"]["comfyui_version"] == "0.38.1"
    assert alice.get("/user/001/api/object_info").json() == {}
    queue = alice.get("/user/001/api/workshop/queue").json()
    assert queue["workers_online"] == 0


def test_extensions_include_the_queue_badge(alice):
    extensions = alice.get("/user/001/api/extensions").json()
    assert "/extensions/workshop/queue_badge.js" in extensions
    assert any(e.startswith("/extensions/core/") for e in extensions)
    badge = alice.get("/user/001/extensions/workshop/queue_badge.js")
    assert badge.status_code == 200 and badge["Content-Type"].startswith("text/javascript")


def test_server_log_and_folder_paths_are_never_shown(alice):
    assert alice.get("/user/001/internal/logs").json() == ""
    assert alice.get("/user/001/internal/folder_paths").json() == {}
    assert alice.get("/user/001/api/i18n").json() == {}


def test_my_outputs_page_lists_newest_first_and_zips_everything(alice, participants):
    import os
    import zipfile

    output = participants[0].root / "output"
    (output / "clips").mkdir(parents=True, exist_ok=True)
    (output / "old.png").write_bytes(png_bytes())
    os.utime(output / "old.png", (1, 1))
    (output / "clips" / "new.mp4").write_bytes(b"\x00video")
    participants[1].file_path("output", "theirs.png").write_bytes(png_bytes())

    page = alice.get("/user/001/outputs/").content.decode()
    assert page.index("new.mp4") < page.index("old.png"), "newest first"
    assert "<video" in page and "<img" in page and "theirs.png" not in page
    archive = zipfile.ZipFile(io.BytesIO(b"".join(alice.get("/user/001/outputs.zip").streaming_content)))
    assert sorted(archive.namelist()) == ["clips/new.mp4", "old.png"]
    assert archive.read("clips/new.mp4") == b"\x00video"
    download = alice.get("/user/001/api/view?filename=old.png&type=output&download=1")
    assert download["Content-Disposition"].startswith("attachment")
    assert alice.get("/user/002/outputs/").status_code == 404


def test_staff_see_rqs_dashboard_and_participants_do_not(client, participants):
    client.login(username="user001", password="pw")
    assert client.get("/admin/rq/").status_code == 302, "participants are sent to the admin login"
    client.logout()
    client.login(username="instructor", password="pw")
    assert client.get("/admin/rq/").status_code == 200


def test_every_upload_input_of_the_080_catalog_lists_only_the_workspaces_own_files(alice, db, participants):
    """LoadVideo, LoadAudio, Load3D (new-style COMBOs) and LoadImage (old style) of the recorded
    ComfyUI 0.8.0 catalog: the GPU host's input folder holds everybody's files, and one
    participant's object_info must name none of another's."""
    import gzip
    from pathlib import Path

    recorded = Path(__file__).resolve().parent / "recorded" / "v0.8.0" / "object_info.json.gz"
    object_info = json.loads(gzip.decompress(recorded.read_bytes()))
    leaked = "user002_private_holiday.mp4"
    for name in ("LoadVideo", "LoadAudio", "Load3D"):
        spec = next(iter(object_info[name]["input"]["required"].values()))
        spec[1]["options"] = [leaked, "user002_song.mp3", "user002_model.glb"]
    object_info["LoadImage"]["input"]["required"]["image"][0] = ["user002_face.png"]
    worker, _ = Worker.create_with_token("gpu-1")
    worker.beat("idle")
    Catalog.objects.create(worker=worker, object_info=object_info, comfyui_version="0.8.0")
    for own in ("clip.mp4", "voice.wav", "chair.glb", "me.png"):
        (participants[0].root / "input" / own).write_bytes(b"x")

    whole = alice.get("/user/001/api/object_info").json()
    assert "user002" not in json.dumps(whole)
    assert whole["LoadVideo"]["input"]["required"]["file"][1]["options"] == ["clip.mp4"]
    assert whole["LoadAudio"]["input"]["required"]["audio"][1]["options"] == ["clip.mp4", "voice.wav"]
    assert whole["Load3D"]["input"]["required"]["model_file"][1]["options"] == ["chair.glb"]
    assert whole["LoadImage"]["input"]["required"]["image"][0] == ["me.png"]
    for name in ("LoadVideo", "LoadAudio", "Load3D", "LoadImage", "LoadImageMask"):
        one = alice.get(f"/user/001/api/object_info/{name}").json()
        assert list(one) == [name] and "user002" not in json.dumps(one)


def test_the_0280_catalog_keeps_comfyuis_placeholders_and_adds_no_options_where_it_sends_none(
    alice, client, db, participants
):
    """ComfyUI 0.28.0 (the double's copy of the recording): Load3D offers "none" before its
    files, and that stays and validates; a remote COMBO (LoadImageOutput.image) and a text input
    with an upload widget (Painter.mask) carry no options key, and get none."""
    import gzip
    from pathlib import Path

    recorded = Path(__file__).parent.parent / "scripts" / "comfyui_double" / "object_info_0.28.0.json.gz"
    object_info = json.loads(gzip.decompress(recorded.read_bytes()))
    object_info["Load3D"]["input"]["required"]["model_file"][1]["options"] = ["none", "user002_model.glb"]
    worker, _ = Worker.create_with_token("gpu-1")
    worker.beat("idle")
    Catalog.objects.create(worker=worker, object_info=object_info, comfyui_version="0.28.0")
    (participants[0].root / "input" / "chair.glb").write_bytes(b"x")

    whole = alice.get("/user/001/api/object_info").json()
    for name in ("Load3D", "Load3DAdvanced"):
        options = whole[name]["input"]["required"]["model_file"][1]["options"]
        assert options == ["none", "chair.glb"], (name, options)
    assert (
        whole["LoadImageOutput"]["input"]["required"]["image"]
        == object_info["LoadImageOutput"]["input"]["required"]["image"]
    ), "unchanged: no options key"
    assert "options" not in whole["Painter"]["input"]["required"]["mask"][1]

    def post(model_file):
        prompt = {
            "1": {"class_type": "Load3D", "inputs": {"model_file": model_file, "image": "", "width": 64, "height": 64}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }
        return alice.post("/user/001/api/prompt", data=json.dumps({"prompt": prompt}), content_type="application/json")

    none = post("none")
    assert none.status_code == 200, none.content
    missing = post("someone_elses.glb")
    assert missing.status_code == 400 and "Invalid file: someone_elses.glb" in missing.content.decode()


def test_logging_out_by_a_typed_address_shows_a_button_and_a_post_signs_out(client, participants):
    client.force_login(participants[0].owner)
    page = client.get("/accounts/logout/")
    assert page.status_code == 200 and b'<form method="post" action="/accounts/logout/"' in page.content
    assert b"user001" in page.content
    assert client.get("/user/001/").status_code == 200, "a GET signs nobody out"
    answer = client.post("/accounts/logout/")
    assert answer.status_code == 302 and answer["Location"] == "/accounts/login/"
    assert client.get("/user/001/").status_code == 302


def test_comfy_org_api_nodes_are_neither_offered_nor_run(alice, catalog):
    """API nodes need a Comfy.org account and credits: a participant never sees a sign-in for them."""
    catalog.object_info["OpenAIDalle3"] = {
        "input": {"required": {"prompt": ["STRING", {}]}},
        "output": ["IMAGE"],
        "output_node": False,
        "api_node": True,
    }
    catalog.save()
    info = alice.get("/user/001/api/object_info").json()
    assert "OpenAIDalle3" not in info and "SaveImage" in info
    assert alice.get("/user/001/api/object_info/OpenAIDalle3").json() == {}
    prompt = {
        "1": {"class_type": "OpenAIDalle3", "inputs": {"prompt": "a cat"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    }
    answer = alice.post("/user/001/api/prompt", {"prompt": prompt}, content_type="application/json")
    assert answer.status_code == 400 and "OpenAIDalle3" in answer.json()["error"]["message"]


def test_the_templates_dialog_offers_no_template_that_needs_api_nodes(alice):
    """The dialog's "Partner Nodes" (Comfy.org's paid API nodes) are left out, in every language."""
    for name in ("index.json", "index.fr.json"):
        answer = alice.get(f"/user/001/templates/{name}")
        assert answer.status_code == 200, name
        templates = [t for category in answer.json() for t in category["templates"]]
        assert len(templates) > 100, "the open templates stay"
        assert not [t["name"] for t in templates if t.get("openSource") is False or "API" in t.get("tags", [])]
        assert "api_nano_banana_pro" not in {t["name"] for t in templates}
        assert "video_ltx2_t2v" in {t["name"] for t in templates}
