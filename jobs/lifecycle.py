"""The one step after any change to the queue: dispatch, then announce, once per transaction.

Every transition calls `changed()`. Whatever happened in a transaction (a submit, a cancel, a
worker's result, a lost run), the step runs once after it commits: it fills free GPU slots in
the policy's order, then pushes to browsers what changed, from the queue snapshot the dispatch
used, plus the job messages gathered on the way. Outside a transaction it runs at once.
"""
import threading

from django.db import connection, transaction

_gathered = threading.local()  # Django's connections are per thread, and so is this


def changed(*, notice=None, relay=None) -> None:
    """The queue changed in this transaction.

    notice: (job, reason) for a job the platform moved on its own (lost its GPU, cancelled by
    the instructor); relay: (slug, [ComfyUI messages]) the worker sent, passed on untouched.
    """
    if not any(cb[1] is _after_commit for cb in connection.run_on_commit):
        # A rolled-back transaction left nothing registered: forget what it gathered.
        _gathered.items = []
        gathered = _gathered.items
        if notice or relay:
            gathered.append((notice, relay))
        transaction.on_commit(_after_commit)
        return
    if notice or relay:
        _gathered.items.append((notice, relay))


def _after_commit() -> None:
    from . import dispatcher, events

    gathered, _gathered.items = getattr(_gathered, "items", []), []
    snap = dispatcher.dispatch()
    for notice, relay in gathered:
        if relay:
            events.send(relay[0], *relay[1])
        if notice:
            events.job_update(*notice)
    events.queue_update(snap)
