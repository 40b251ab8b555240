"""Fetching a URL a participant pasted, from the public internet only (SSRF).

The address is decided the way the connection is made: the URL is parsed by urllib3, the parser
of the HTTP client itself; anything two parsers could read differently (a backslash, userinfo,
a space or control character) is refused; the host is resolved once, every address it resolves
to must be public, and the connection goes to that checked address (the Host header, TLS name
and certificate stay the host's), so a second DNS answer cannot send it elsewhere (rebinding).
Every redirect hop is checked the same way. Every refusal and every failure before the file
says the same neutral sentence, so that the fetch tells nothing about what is inside.
"""

import http.client
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

from accounts.own_models import ModelRefused

REDIRECTS = 5
NEUTRAL = "The workshop could not fetch that address. Paste the public http:// or https:// address of the file itself."
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


# IPv6 prefixes that carry an IPv4 address inside: IPv4-compatible (::a.b.c.d), IPv4-translated
# (::ffff:0:a.b.c.d), NAT64 (well-known and local-use). Python calls `::127.0.0.1` and
# `64:ff9b::7f00:1` global; on a network with NAT64 the second reaches 127.0.0.1, so none is taken.
EMBEDS_IPV4 = [ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48")]


def public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a fetch may connect to `ip`: a global unicast address that hides no other one."""
    if ip.version == 6 and (ip.ipv4_mapped or ip.sixtofour or ip.teredo or any(ip in net for net in EMBEDS_IPV4)):
        return False
    return ip.is_global and not ip.is_multicast


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
        if not all(public(ipaddress.ip_address(str(address).split("%")[0])) for address in addresses):
            raise FetchRefused(NEUTRAL)
    return Target(scheme, host, port, parsed.request_uri or "/", str(addresses[0]))


def _connection(target: Target):
    """A connection to the checked address; TLS names and verifies the host itself."""
    if target.scheme == "https":
        return urllib3.connection.HTTPSConnection(
            target.address,
            target.port,
            timeout=60,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    return urllib3.connection.HTTPConnection(target.address, target.port, timeout=60)


def too_long(seconds: float) -> FetchRefused:
    limit = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
    return FetchRefused(f"The download took too long (the limit is {limit}); download the file and upload it instead.")


class Fetch:
    """One fetch, with a deadline for all of it: connecting, the headers, every redirect hop and
    the body. At the deadline a timer shuts the connection's socket, which ends any read that
    waits, so a server that sends its headers or its bytes one at a time holds nothing."""

    def __init__(self, url: str, seconds: float):
        self.url, self.seconds = url, seconds
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self.connection = self.sock = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        # The socket as connected: http.client drops the connection's reference to it once a
        # response that ends with the connection is read, while the response still reads it.
        sock = self.sock or getattr(self.connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._timer.cancel()
        if self.connection is not None:
            self.connection.close()

    def _failed(self) -> FetchRefused:
        return too_long(self.seconds) if self.expired or time.monotonic() > self.deadline else FetchRefused(NEUTRAL)

    def open(self) -> tuple[urllib3.BaseHTTPResponse, str]:
        """(the response of the file, its final URL), following at most REDIRECTS checked hops."""
        url = self.url
        for _ in range(REDIRECTS + 1):
            target = target_of(url)
            default = 443 if target.scheme == "https" else 80
            shown = f"[{target.host}]" if ":" in target.host else target.host
            host_header = shown if target.port == default else f"{shown}:{target.port}"
            if self.connection is not None:
                self.connection.close()
            connection = self.connection = _connection(target)
            self.sock = None
            try:
                if self.expired:
                    raise OSError("deadline")
                connection.request(
                    "GET",
                    target.request_uri,
                    preload_content=False,
                    headers={"Host": host_header, "User-Agent": "workshop-model-fetch"},
                )
                self.sock = connection.sock
                if self.expired:  # the timer fired while connecting, before there was a socket to shut
                    raise OSError("deadline")
                response = connection.getresponse()
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError):
                # A port that answers something other than HTTP says the same as a closed one.
                raise self._failed() from None
            if response.status in REDIRECT_CODES and response.headers.get("Location"):
                try:
                    url = urllib.parse.urljoin(url, response.headers["Location"])
                except ValueError:  # "Invalid IPv6 URL" and the like
                    raise FetchRefused(NEUTRAL) from None
                continue
            if response.status != 200:
                raise FetchRefused(NEUTRAL)
            return response, url
        raise FetchRefused(NEUTRAL)

    @staticmethod
    def announced_size(response: urllib3.BaseHTTPResponse) -> int | None:
        """The Content-Length the server announced, if it is a number of bytes."""
        value = response.headers.get("Content-Length", "")
        return int(value) if value.isascii() and value.isdigit() and int(value) > 0 else None

    def chunks(self, response: urllib3.BaseHTTPResponse, size: int = 1024 * 1024):
        """The file's bytes as they arrive (read1: a trickle still shows progress)."""
        try:
            while chunk := response.read1(size):
                if self.expired:
                    raise too_long(self.seconds)
                yield chunk
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError):
            if self.expired:
                raise too_long(self.seconds) from None
            raise FetchRefused("The download broke off; try again, or download the file and upload it.") from None
        if self.expired:
            raise too_long(self.seconds)  # shut at the deadline: what came is not the whole file
