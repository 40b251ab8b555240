"""What a workspace serves is inert: HTML, SVG and scripts download, media stays inline, every page has a CSP."""

import pytest

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
