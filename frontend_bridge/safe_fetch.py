"""Fetching a URL a participant pasted, from the public internet only (SSRF).

The address is decided the way the connection is made: the URL is parsed by urllib3, the parser
of the HTTP client itself; anything two parsers could read differently (a backslash, userinfo,
a space or control character) is refused; the host is resolved once, every address it resolves
to must be public, and the connection goes to that checked address (the Host header, TLS name
and certificate stay the host's), so a second DNS answer cannot send it elsewhere (rebinding).
Every redirect hop is checked the same way. Every refusal and every failure before the file
says the same neutral sentence, so that the fetch tells nothing about what is inside.
"""
import ipaddress
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass

import certifi
import urllib3
from django.conf import settings
from urllib3.util import parse_url

from accounts.modelfiles import ModelRefused

REDIRECTS = 5
NEUTRAL = ("The workshop could not fetch that address. Paste the public http:// or https:// address "
           "of the file itself.")
REDIRECT_CODES = (301, 302, 303, 307, 308)


class FetchRefused(ModelRefused):
    pass


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written, for the Host header and TLS
    port: int
    request_uri: str
    address: str  # the checked IP the connection goes to


def target_of(url: str) -> Target:
    """The checked target of `url`, or FetchRefused."""
    if any(ch == "\\" or ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise FetchRefused(NEUTRAL)
    try:
        parsed = parse_url(url)
    except urllib3.exceptions.LocationParseError:
        raise FetchRefused(NEUTRAL) from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https") or not parsed.host or parsed.auth is not None or "@" in (parsed.netloc or ""):
        raise FetchRefused(NEUTRAL)
    host = parsed.host.strip("[]").lower()
    # The standard library must read the same host: a URL two parsers disagree on is refused.
    if (urllib.parse.urlsplit(url).hostname or "").lower() != host:
        raise FetchRefused(NEUTRAL)
    port = parsed.port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchRefused(NEUTRAL) from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise FetchRefused(NEUTRAL)
    if host not in settings.MODEL_FETCH_ALLOWED_HOSTS:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not ip.is_global or ip.is_multicast:
                raise FetchRefused(NEUTRAL)
    return Target(scheme, host, port, parsed.request_uri or "/", addresses[0])


def _pool(target: Target) -> urllib3.HTTPConnectionPool:
    timeout = urllib3.Timeout(connect=10, read=60)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=target.host, assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    return urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1)


def open_url(url: str) -> tuple[urllib3.BaseHTTPResponse, str]:
    """(the response of the file, its final URL), following at most REDIRECTS checked hops."""
    for _ in range(REDIRECTS + 1):
        target = target_of(url)
        default = 443 if target.scheme == "https" else 80
        shown = f"[{target.host}]" if ":" in target.host else target.host
        host_header = shown if target.port == default else f"{shown}:{target.port}"
        try:
            response = _pool(target).urlopen("GET", target.request_uri, redirect=False, preload_content=False,
                                             headers={"Host": host_header, "User-Agent": "workshop-model-fetch"})
        except (urllib3.exceptions.HTTPError, OSError):
            raise FetchRefused(NEUTRAL) from None
        if response.status in REDIRECT_CODES and response.headers.get("Location"):
            url = urllib.parse.urljoin(url, response.headers["Location"])
            response.release_conn()
            continue
        if response.status != 200:
            response.release_conn()
            raise FetchRefused(NEUTRAL)
        return response, url
    raise FetchRefused(NEUTRAL)


def chunks(response: urllib3.BaseHTTPResponse, deadline: float, size: int = 1024 * 1024):
    """The file's bytes until `deadline` (time.monotonic()): a server that drips them slowly, or
    stops sending, cannot hold a fetch open for ever. At the deadline a timer shuts the
    connection, which ends a read that waits for bytes."""
    minutes = max(1, round((deadline - time.monotonic()) / 60))
    too_long = FetchRefused(f"The download took too long (the limit is about {minutes} min); "
                            "download the file and upload it instead.")
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), response.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        # read1: whatever has arrived, so that a trickle still shows progress as it comes
        while chunk := response.read1(size):
            if time.monotonic() > deadline:
                raise too_long
            yield chunk
        if time.monotonic() > deadline:
            raise too_long  # shut at the deadline: what came is not the whole file
    except (urllib3.exceptions.HTTPError, OSError):
        if time.monotonic() > deadline:
            raise too_long from None
        raise FetchRefused("The download broke off; try again, or download the file and upload it.") from None
    finally:
        watchdog.cancel()
        response.release_conn()
