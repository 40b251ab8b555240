"""Files streamed to the client without the server holding them.

Under ASGI, Django consumes a response's synchronous iterator whole before it sends a byte
(`StreamingHttpResponse.__aiter__`): a FileResponse of a 2 GB video put all of it in memory.
Here the ASGI server gets the file read chunk by chunk in a thread, each sent before the next
is read (and Daphne's `send` waits for slow readers, workshop.daphne_limits); the test client
and any WSGI server get the same chunks synchronously.
"""

import asyncio
import os

from django.http import StreamingHttpResponse

CHUNK = 1024 * 1024


def _chunks(path, start: int, length: int):
    with open(path, "rb") as source:
        source.seek(start)
        left = length
        while left > 0:
            chunk = source.read(min(left, CHUNK))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


class FileStream(StreamingHttpResponse):
    """`path` from byte `start` to `end` (inclusive; the end of the file when None)."""

    def __init__(self, path, content_type: str, start: int = 0, end: int | None = None, status: int = 200):
        end = os.path.getsize(path) - 1 if end is None else end
        self._part = (path, start, max(end - start + 1, 0))
        super().__init__(_chunks(*self._part), status=status, content_type=content_type)
        self["Content-Length"] = str(self._part[2])

    async def __aiter__(self):
        chunks = _chunks(*self._part)
        try:
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                yield chunk
        finally:
            chunks.close()
