"""The catalog each participant sees names only their own files."""

import json

from tests.conftest import worker_with_token


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
    worker = worker_with_token("gpu-1")
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
