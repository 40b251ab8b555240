"""`manage.py workshop_export`: one zip per participant with exactly their outputs and saved workflows."""

import zipfile

from tests.conftest import run_command


def test_export_makes_one_zip_per_participant_with_exactly_their_files(participants, tmp_path):
    alice, bob, _ = participants
    (alice.root / "output" / "a.png").write_bytes(b"alice")
    (alice.root / "output" / "sub").mkdir()
    (alice.root / "output" / "sub" / "b.mp4").write_bytes(b"alice video")
    (alice.root / "userdata" / "workflows").mkdir(parents=True)
    (alice.root / "userdata" / "workflows" / "mine.json").write_text("{}")
    (alice.root / "input" / "upload.png").write_bytes(b"an input stays out")
    (bob.root / "output" / "bob.png").write_bytes(b"bob")
    (alice.root / "output" / "link.png").symlink_to(bob.root / "output" / "bob.png")
    (alice.root / "output" / ".half-sent.png.part").write_bytes(b"an output still arriving stays out")
    out = tmp_path / "export"
    code, text = run_command("workshop_export", "--out", str(out))
    assert code == 0 and "[3/3]" in text
    assert sorted(p.name for p in out.iterdir()) == ["user001.zip", "user002.zip", "user003.zip"]
    with zipfile.ZipFile(out / "user001.zip") as z:
        assert sorted(z.namelist()) == ["output/a.png", "output/sub/b.mp4", "workflows/mine.json"]
        assert z.read("output/sub/b.mp4") == b"alice video"
    with zipfile.ZipFile(out / "user002.zip") as z:
        assert z.namelist() == ["output/bob.png"]
    with zipfile.ZipFile(out / "user003.zip") as z:
        assert z.namelist() == []
