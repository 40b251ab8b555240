"""The one step after any change to the queue: dispatch, then announce, once per transaction.

Every transition calls `changed()`. Whatever happened in a transaction (a submit, a cancel, a
worker's result, a lost run), the step runs once after it commits: it fills free GPU slots in
the policy's order, then pushes to browsers what changed, from the queue snapshot the dispatch
used, plus the job messages gathered on the way. Outside a transaction it runs at once.

In the web server (`defer_in_background()`, from workshop.asgi) the dispatch and announcement
run after the response, in one thread per process that takes every change made meanwhile in
one pass: 20 participants pressing Run at once made 20 dispatches queue on one row lock inside
their requests, 0.3 s for the last of them; now each request only stores its job.
"""

import asyncio
import functools
import logging
import threading

from asgiref.sync import sync_to_async
from django.db import connections, transaction

log = logging.getLogger(__name__)
_state = threading.local()  # Django's connections are per thread, and so is this
_background: "_Coalescer | None" = None


class _Coalescer(threading.Thread):
    """Runs the post-change step whenever woken; wakes during a pass make one more pass.

    Its own event loop lives as long as the thread, so the channel layer's pushes reuse their
    Redis connections (async_to_sync from a bare thread made a loop and a connection per push).
    """

    def __init__(self):
        super().__init__(name="post-change", daemon=True)
        self.loop = asyncio.new_event_loop()
        self.wanted = asyncio.Event()
        self.ready = threading.Event()

    def wake(self) -> None:
        self.ready.wait()
        self.loop.call_soon_threadsafe(self.wanted.set)

    def run(self):
        asyncio.set_event_loop(self.loop)
        self.ready.set()
        self.loop.run_until_complete(self._serve())

    async def _serve(self):
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            await sync_to_async(self._one_pass, thread_sensitive=False)()

    @staticmethod
    def _one_pass():
        try:
            _dispatch_and_announce()
        except Exception:  # the next change, or the dispatcher loop's tick, tries again
            log.exception("the post-change step failed")
        finally:
            connections.close_all()  # back to the pool between passes


def defer_in_background() -> None:
    """From now on this process runs the dispatch and announcement in a background thread."""
    global _background
    if _background is None:
        _background = _Coalescer()
        _background.start()


def changed(*, notice=None, relay=None) -> None:
    """The queue changed in this transaction.

    notice: (job, reason[, said[, moved_only]]) for a job the platform moved or ended itself
    (jobs.events.job_update): it lost its GPU, timed out, or the instructor moved or cancelled
    it (after ComfyUI's own end too, to say why). relay: (slug, [ComfyUI messages][, (job id,
    the client_id of the tab that queued it)]): what the worker sent, passed on untouched; the
    third part marks a run's end, which that tab gets exactly once.
    """
    _state.pending = True
    # Each call's messages ride on its own callback (a rollback drops them with it); the first
    # callback to run after the commit dispatches and announces the queue for all of them.
    # robust: the change is committed; a failed announcement must not turn it into an error.
    transaction.on_commit(functools.partial(_after_commit, notice, relay), robust=True)


def _after_commit(notice, relay) -> None:
    # A cycle: events and the dispatcher read the models, whose transitions call this module.
    from . import events

    if relay:
        events.send(relay[0], *relay[1], end_of=relay[2] if len(relay) > 2 else None)
    if notice:
        events.job_update(*notice)
    if getattr(_state, "pending", False):
        _state.pending = False
        if _background is not None:
            _background.wake()
        else:
            _dispatch_and_announce()


def _dispatch_and_announce() -> None:
    from . import dispatcher, events  # the same cycle as above

    events.queue_update(dispatcher.dispatch())
