"""workshop/lib/files: the one guard, part writer, atomic writer and renaming rule that every
writer of the platform uses (outputs, uploads, own models, settings, the sheet, the export)."""

import os

import pytest

from workshop.lib.files import (
    PartGap,
    UnsafePath,
    atomic_write,
    is_work_in_progress,
    part_name,
    safe_join,
    split_relative,
    unique_name,
    write_part,
)


@pytest.mark.parametrize(
    "parts",
    [["..", "x"], ["a", "..", "..", "x"], ["/etc"], ["a\\..\\b"], ["x\x00"], [""], ["."], ["a" * 241]],
)
def test_safe_join_refuses_any_name_that_could_leave_its_folder(tmp_path, parts):
    with pytest.raises(UnsafePath):
        safe_join(tmp_path, parts)


def test_safe_join_follows_links_and_refuses_one_that_points_out(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (root / "inside").mkdir()
    (root / "out").symlink_to(outside)
    (root / "in").symlink_to(root / "inside")
    assert safe_join(root, ["in", "x.png"]) == root.resolve() / "in" / "x.png"
    with pytest.raises(UnsafePath, match="leaves"):
        safe_join(root, ["out", "x.png"])


def test_split_relative_takes_either_slash_and_refuses_absolute_or_dotted_paths():
    assert split_relative("workflows\\sub/a.json") == ["workflows", "sub", "a.json"]
    for bad in ("/abs", "\\abs", "a//b", "a/./b", "a/../b", "", "a\x00"):
        with pytest.raises(UnsafePath):
            split_relative(bad)


def test_write_part_replaces_a_part_sent_again_and_refuses_a_gap(tmp_path):
    part = part_name(tmp_path / "folder", "clip.mp4")
    assert part.name == ".clip.mp4.part" and is_work_in_progress(part)
    assert not is_work_in_progress(tmp_path / "clip.mp4") and not is_work_in_progress(tmp_path / ".hidden.png")
    assert write_part(part, [b"aaaa", b"bb"], 0) == 6, "created with its folder"
    assert write_part(part, [b"XY"], 2) == 4, "what followed the offset is dropped first"
    assert part.read_bytes() == b"aaXY"
    with pytest.raises(PartGap) as gap:
        write_part(part, [b"z"], 9)
    assert gap.value.have == 4 and "resend from 4" in str(gap.value)
    assert part.read_bytes() == b"aaXY", "a refused part changes nothing"


def test_atomic_write_leaves_no_temporary_file_and_private_is_0600(tmp_path):
    target = tmp_path / "sheet.html"
    atomic_write(target, "one")
    atomic_write(target, b"two", private=True)
    assert target.read_bytes() == b"two" and os.stat(target).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.html"]


def test_unique_name_is_comfyuis_own_suffix():
    taken = {"cat.png", "cat (1).png", "notes"}
    assert unique_name("cat.png", taken.__contains__) == "cat (2).png"
    assert unique_name("notes", taken.__contains__) == "notes (1)"
    assert unique_name("dog.png", taken.__contains__) == "dog.png"
