"""The one step after any change to the queue: dispatch, then announce, once per transaction.

Every transition calls `changed()`. Whatever happened in a transaction (a submit, a cancel, a
worker's result, a lost run), the step runs once after it commits: it fills free GPU slots in
the policy's order, then pushes to browsers what changed, from the queue snapshot the dispatch
used, plus the job messages gathered on the way. Outside a transaction it runs at once.
"""
import functools
import threading

from django.db import transaction

_state = threading.local()  # Django's connections are per thread, and so is this


def changed(*, notice=None, relay=None) -> None:
    """The queue changed in this transaction.

    notice: (job, reason[, said[, moved_only]]) for a job that moved without a word from
    ComfyUI (jobs.events.job_update): it lost its GPU, or the instructor moved it; relay: (slug, [ComfyUI messages]) the worker sent, passed on untouched.
    """
    _state.pending = True
    # Each call's messages ride on its own callback (a rollback drops them with it); the first
    # callback to run after the commit dispatches and announces the queue for all of them.
    # robust: the change is committed; a failed announcement must not turn it into an error.
    transaction.on_commit(functools.partial(_after_commit, notice, relay), robust=True)


def _after_commit(notice, relay) -> None:
    from . import dispatcher, events

    if relay:
        events.send(relay[0], *relay[1], end_of=relay[2] if len(relay) > 2 else None)
    if notice:
        events.job_update(*notice)
    if getattr(_state, "pending", False):
        _state.pending = False
        events.queue_update(dispatcher.dispatch())
