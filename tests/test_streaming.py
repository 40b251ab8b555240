"""Workspace files streamed through Daphne (workshop.lib.streaming, workshop.daphne_limits)."""

import os
import socket
from urllib.parse import urlsplit

import requests


def read_and_hang_up(base: str, url: str, session) -> bytes:
    """One GET on a socket of its own, closed the moment the last byte is in."""
    where = urlsplit(base)
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(f"GET {url[len(base) :]} HTTP/1.1\r\nHost: {where.netloc}\r\nCookie: {cookie}\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, body = received.split(b"\r\n\r\n", 1)
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            body += sock.recv(1024 * 1024)
    return body


def test_a_download_abandoned_halfway_costs_nothing_and_the_next_one_is_whole(live_app, participants):
    big = participants[0].file_path("output", "clip.mp4")
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    alice = live_app.login("user001")
    url = f"{live_app.url}/user/001/api/view?filename=clip.mp4&type=output"
    with alice.get(url, stream=True, timeout=30) as first:
        assert first.status_code == 200 and int(first.headers["Content-Length"]) == big.stat().st_size
        first.raw.read(1024 * 1024)  # a player that gives up after a second of video
    for _ in range(3):  # whole, and gone at once: Django's last (empty) send comes after the close
        assert read_and_hang_up(live_app.url, url, alice) == big.read_bytes()
    tail = alice.get(url, headers={"Range": "bytes=-1000"}, timeout=30)
    assert tail.status_code == 206 and tail.content == big.read_bytes()[-1000:]
    log = (live_app.tmp_path / "daphne.log").read_text()
    assert "Exception inside application" not in log, log[-3000:]
    assert requests.get(f"{live_app.url}/health", timeout=5).status_code == 200
