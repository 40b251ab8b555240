"""Body limits are enforced before the body is read (workshop.lib.limits, workshop.daphne_limits)."""

import requests


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


def requests_post(url, token):

    return requests.post(url, json={"status": "idle"}, headers={"Authorization": f"Bearer {token}"}, timeout=10)


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


def test_only_a_token_this_deployment_signed_may_send_a_large_body_before_it_was_seen(settings):
    """A worker's first call may be its 5.6 MB catalog (ComfyUI 0.28): its token alone, checked
    before the body, lets it through; a forged one, or another deployment's, gets 3 MB."""
    from jobs import tokens
    from jobs.tokens import new_token
    from workshop.lib import limits

    def limit(token):
        header = f"Bearer {token}"
        return limits.body_limit("/api/worker/catalog", header, tokens.worker_known(header), False)[0]

    token = new_token()
    assert limit(token) == limits.CATALOG_BYTES
    forged = token[:-3] + ("abc" if not token.endswith("abc") else "xyz")
    assert limit(forged) == limits.small()
    assert limit("wt_" + "x" * 65) == limits.small(), "the right length is not enough"
    # Not ASCII: refused outright, and deciding so raises nothing (it runs in Daphne's reactor).
    assert limit(token[:-1] + "é") == -1 and not tokens.worker_known(f"Bearer {token[:-1]}é")
    settings.SECRET_KEY = "another deployment's key"
    assert limit(token) == limits.small()
