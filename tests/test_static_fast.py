"""The frontend's public files by their own path (ServeStatic in front of Django), through Daphne."""

import gzip

import requests

from frontend_bridge.frontend import FRONTEND_ROOT


def test_frontend_files_come_with_the_right_headers_and_nothing_else_comes_that_way(live_app):
    bundle = next(p.name for p in (FRONTEND_ROOT / "assets").glob("*.js"))
    hashed = requests.get(f"{live_app.url}/user/001/assets/{bundle}", timeout=10)
    assert hashed.status_code == 200 and hashed.headers["Content-Type"].startswith("text/javascript")
    assert hashed.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert hashed.headers["X-Content-Type-Options"] == "nosniff"
    again = requests.get(
        f"{live_app.url}/user/002/assets/{bundle}", headers={"If-None-Match": hashed.headers["ETag"]}, timeout=10
    )
    assert again.status_code == 304, "a second load revalidates without the body"
    icons = requests.get(f"{live_app.url}/user/001/materialdesignicons.min.css", timeout=10)
    assert icons.status_code == 200 and icons.headers["Cache-Control"] == "public, max-age=3600"
    # Not public, or not the pinned frontend's: Django answers, as before.
    assert requests.get(f"{live_app.url}/user/001/", timeout=10, allow_redirects=False).status_code == 302
    assert requests.get(f"{live_app.url}/user/001/extensions/pack/evil.js", timeout=10).status_code == 404
    outside = requests.get(f"{live_app.url}/user/001/assets/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", timeout=10)
    assert outside.status_code == 404 and "root:" not in outside.text
    assert requests.post(f"{live_app.url}/user/001/assets/{bundle}", timeout=10).status_code != 200


def test_a_browser_gets_the_frontend_compressed_and_the_same_code(live_app):
    bundle = max((FRONTEND_ROOT / "assets").glob("*.js"), key=lambda p: p.stat().st_size)
    url = f"{live_app.url}/user/001/assets/{bundle.name}"
    packed = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
    wire = packed.raw.read(decode_content=False)
    assert packed.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in packed.headers["Vary"]
    assert len(wire) < bundle.stat().st_size / 2, "the largest bundle travels at most half its size"
    assert gzip.decompress(wire) == bundle.read_bytes()
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    assert "Content-Encoding" not in plain.headers and plain.content == bundle.read_bytes()
    # Source maps are not in the compressed copy: Django's view still serves them.
    source_map = next((FRONTEND_ROOT / "assets").glob("*.js.map"), None)
    if source_map is not None:
        assert requests.get(f"{live_app.url}/user/001/assets/{source_map.name}", timeout=10).status_code in (200, 302)
