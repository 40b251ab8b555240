"""Bad input to the ComfyUI routes gets a clear 4xx that ComfyUI's UI can show, and changes nothing."""

import json

import pytest

from jobs.models import Job
from tests.conftest import post_json

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


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
