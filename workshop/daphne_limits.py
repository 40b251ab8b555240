"""Two limits Daphne does not keep by itself.

Request bodies: Daphne reads a request's whole body before the ASGI app sees it: a 200 MB PUT
would be on the server's disk before its 401 or 413. This refuses such a request as soon as its
headers are in (from Content-Length), or as soon as a body without one grows past the limit.

Response bodies: Daphne writes what the app sends into the connection's buffer at once, however
slowly the client reads, so a participant downloading a 2 GB video held it all in the server's
memory (4 GB of growth, measured). `install()` also makes the app's `send` of a body wait while
the connection's buffer is full (Twisted's producer interface).
"""

import asyncio
import json
import logging
from io import BytesIO

from django.conf import settings
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from jobs import tokens

from .lib import limits
from .metrics import count_refusal

log = logging.getLogger("workshop.lib.limits")


def install() -> None:
    # Daphne's modules are imported once Daphne runs (it installs Twisted's reactor first).
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "_workshop_limits", False):
        return
    WebRequest._workshop_limits = True
    got_length, content_chunk, process = WebRequest.gotLength, WebRequest.handleContentChunk, WebRequest.process

    def gotLength(self, length):
        self._refused = False
        self._received = 0
        path = getattr(self.channel, "_path", b"").split(b"?")[0].decode("latin-1")
        authorization = (self.requestHeaders.getRawHeaders(b"authorization") or [b""])[0].decode("latin-1")
        cookie = settings.SESSION_COOKIE_NAME.encode() + b"="
        session = any(cookie in c for c in self.requestHeaders.getRawHeaders(b"cookie") or [])
        self._limit, self._why = limits.body_limit(path, authorization, tokens.worker_known(authorization), session)
        if self._limit < 0:
            return _refuse(self, 401, self._why, path)
        if length is not None and length > self._limit:
            return _refuse(self, 413, self._why, path)
        return got_length(self, length)

    def handleContentChunk(self, data):
        if self._refused:
            return None
        self._received += len(data)
        if self._received > self._limit:
            return _refuse(self, 413, self._why, "(streamed)")
        return content_chunk(self, data)

    def process_(self):
        if getattr(self, "_refused", False):
            return None
        return process(self)

    WebRequest.gotLength, WebRequest.handleContentChunk, WebRequest.process = gotLength, handleContentChunk, process_
    _wait_for_slow_readers()


def _wait_for_slow_readers() -> None:
    from daphne.server import Server  # installs the asyncio reactor when imported: Daphne's own

    @implementer(IPushProducer)
    class Drain:
        """Told by Twisted when the connection's buffer is full and when it has emptied."""

        def __init__(self):
            self.writable = asyncio.Event()
            self.writable.set()

        def pauseProducing(self):
            self.writable.clear()

        def resumeProducing(self):
            self.writable.set()

        def stopProducing(self):  # the connection is gone: nothing waits for it
            self.writable.set()

    handle_reply = Server.handle_reply

    async def handle_reply_(self, protocol, message):
        body = message.get("type") == "http.response.body"
        more = body and message.get("more_body", False)
        drain = getattr(protocol, "_workshop_drain", None)
        if body and not more and drain is not None:
            protocol._workshop_drain = None
            if protocol.channel is not None:  # still connected: unregister before it finishes
                protocol.unregisterProducer()
        await handle_reply(self, protocol, message)
        connection = self.connections.get(protocol)
        if more and connection is not None and "disconnected" not in connection and protocol.channel is not None:
            if drain is None:
                drain = protocol._workshop_drain = Drain()
                protocol.registerProducer(drain, True)
            await drain.writable.wait()

    Server.handle_reply = handle_reply_


def _refuse(request, status: int, why: str, path: str) -> None:
    request._refused = True
    request.content = BytesIO()
    log.warning("refused %s before its body: %s %s", path, status, why)
    from twisted.internet import reactor  # the one Daphne installed, not a default one

    reactor.callInThread(count_refusal, status)  # never block the reactor on Redis
    body = json.dumps({"error": why}).encode()
    reason = {401: b"Unauthorized", 413: b"Request Entity Too Large"}[status]
    transport = request.channel.transport
    transport.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (status, reason, len(body), body)
    )
    transport.loseConnection()
