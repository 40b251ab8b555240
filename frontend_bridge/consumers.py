"""`/user/<slug>/ws`: ComfyUI's websocket, per workspace.

A browser gets exactly what a private ComfyUI would send it (status, execution_*, executing,
progress, executed …) for its workspace's jobs, plus `workshop.queue` with queue positions.
"""

import asyncio
import json
import logging
import time
import uuid
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from accounts.access import workspace_for
from jobs import events
from jobs.consumers import GroupMember
from jobs.models import Announcement, Job, JobState
from jobs.queue import snapshot

from . import wire
from .frontend import comfy_features

log = logging.getLogger(__name__)


# A connect's database work runs in the thread pool, not in the one thread every sync call
# shares by default: a Daphne restart in a room of 200 reconnects every tab at once, and 500
# handshakes queued behind one thread outlived Daphne's handshake timeout, all of them.
def in_pool(func):
    return database_sync_to_async(func, thread_sensitive=False)


class WorkspaceSocket(GroupMember, AsyncWebsocketConsumer):
    async def connect(self):
        slug = self.scope["url_route"]["kwargs"]["slug"]
        user = self.scope.get("user")
        try:
            self.workspace = await in_pool(workspace_for)(user, slug)
        except Http404:
            await self.close(code=4404)
            return
        self.group = events.group_name(self.workspace.slug)
        self.groups_joined = (self.group, events.QUEUE_GROUP)
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.sid = (query.get("clientId") or [""])[0][:100] or uuid.uuid4().hex
        if not await self._join():
            await self.close(code=1013)  # "try again later": the frontend reconnects on its own
            return
        joined_at = time.monotonic()
        await self.accept()
        self.stay_joined()
        # Joined before this is read: a change from now on arrives as an event anyway.
        payload, announcement, running, missed = await in_pool(self._greeting)(joined_at)
        # ComfyUI's first frame is always `status` carrying the sid the UI then uses as client_id.
        first, *rest = wire.queue_messages(payload, self.workspace.slug)
        self.last_sent = {m["type"]: m for m in (first, *rest)}
        self.open_jobs = self._open_jobs(payload)
        await self.send(text_data=json.dumps({**first, "data": {**first["data"], "sid": self.sid}}))
        for message in rest:
            await self.send(text_data=json.dumps(message))
        # The instructor's announcement stays for whoever joins later.
        if announcement:
            await self.send(text_data=json.dumps(wire.announcement(announcement)))
        # A reload in the middle of a run: like ComfyUI, say at once which node is running.
        for message in running:
            await self.send(text_data=json.dumps(message))
        # Ends this tab missed while it was away (the app or Redis restarting).
        await self._send_owed_ends(missed)

    async def _send_owed_ends(self, owed=None, job_id: str | None = None) -> None:
        """The ends of runs this tab queued that it has not received (all, or one job's), each
        sent once: ComfyUI sends a run's end to the tab that queued it."""
        if owed is None:
            owed = await in_pool(Job.objects.ends_owed)(self.workspace.pk, self.sid, job_id)
        for owed_job, messages in owed:
            for message in messages:
                await self.send(text_data=json.dumps(message))
            await in_pool(Job.objects.end_received)(owed_job, self.sid)

    def _greeting(self, joined_at: float):
        """Everything a new socket is told, read in one go."""
        owed = Job.objects.ends_owed(self.workspace.pk, self.sid)
        return self._snapshot(joined_at), self._announcement(), self._running_progress(), owed

    def _announcement(self):

        current = Announcement.current()
        return current.as_message() if current else None

    async def _join(self) -> bool:
        """Join the workspace's and the queue's groups; a Redis that just restarted may refuse
        the first tries while channels-redis reconnects."""
        delay = 0.1
        for _ in range(8):
            try:
                await self.join_groups()
                return True
            except Exception as exc:
                log.warning("websocket of %s: channel layer unavailable (%s); retrying", self.workspace.slug, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        return False

    def _running_progress(self):

        messages = []
        for job_id, progress in Job.objects.filter(workspace=self.workspace, state=JobState.RUNNING).values_list(
            "id", "progress"
        ):
            if progress and progress.get("node"):
                messages += wire.running_progress(str(job_id), progress)
        return messages

    _shared: dict = {}

    def _snapshot(self, joined_at: float):
        """The queue as every socket sees it. A snapshot read after this socket joined its
        groups is as good as a new one (any later change reaches it as an event), so a burst of
        reconnects shares a few instead of reading one each."""

        shared = WorkspaceSocket._shared
        if shared.get("at", -1.0) < joined_at:
            read_at = time.monotonic()
            WorkspaceSocket._shared = shared = {"at": read_at, "payload": events.queue_payload(snapshot())}
        return shared["payload"]

    async def disconnect(self, code):
        await self.leave_groups()

    async def receive(self, text_data=None, bytes_data=None):
        if not text_data:
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "feature_flags":
            await self.send(text_data=json.dumps({"type": "feature_flags", "data": comfy_features()}))

    async def comfy_message(self, event):
        if event.get("end_of") and event.get("end_for") == self.sid:
            # A consumer handles one event at a time, its connect first: an end this tab was
            # sent on connecting is not owed any more. Other tabs get it as it comes.
            await self._send_owed_ends(job_id=event["end_of"])
            return
        for message in event["messages"]:
            if "binary" in message:  # a live preview frame, exactly as ComfyUI sends it
                await self.send(bytes_data=message["binary"])
            else:
                await self.send(text_data=json.dumps(message))

    def _open_jobs(self, payload) -> set:
        slug = self.workspace.slug
        return {e["prompt_id"] for key in ("waiting", "running") for e in payload[key].get(slug, [])}

    async def queue_update(self, event):
        # A job of this workspace left the queue: if this tab queued it and its end never
        # arrived (Redis was away when it was sent), send it now.
        now_open = self._open_jobs(event["payload"])
        if self.open_jobs - now_open:
            await self._send_owed_ends()
        self.open_jobs = now_open
        # Each type only when it changed: the ComfyUI frontend re-reads queue and history on
        # every `status`, so 200 browsers must not get one for every change in someone else's queue.
        for message in wire.queue_messages(event["payload"], self.workspace.slug):
            if self.last_sent.get(message["type"]) != message:
                self.last_sent[message["type"]] = message
                await self.send(text_data=json.dumps(message))

    async def job_update(self, event):
        for message in wire.job_update(event["job"]):
            await self.send(text_data=json.dumps(message))

    async def workshop_broadcast(self, event):
        """The instructor's announcement or pushed workflow, to every open workspace."""
        shape = wire.announcement if event["kind"] == "announcement" else wire.workflow_pushed
        await self.send(text_data=json.dumps(shape(event["data"])))
