"""`/user/<slug>/ws`: ComfyUI's websocket, per workspace.

A browser gets exactly what a private ComfyUI would send it (status, execution_*, executing,
progress, executed …) for its workspace's jobs, plus `workshop.queue` with queue positions.
"""
import asyncio
import json
import logging
import uuid
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from accounts.access import workspace_for
from jobs import events

from . import wire
from .frontend import comfy_features

log = logging.getLogger(__name__)


class WorkspaceSocket(AsyncWebsocketConsumer):
    async def connect(self):
        slug = self.scope["url_route"]["kwargs"]["slug"]
        user = self.scope.get("user")
        try:
            self.workspace = await database_sync_to_async(workspace_for)(user, slug)
        except Http404:
            await self.close(code=4404)
            return
        self.group = events.group_name(self.workspace.slug)
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.sid = (query.get("clientId") or [""])[0][:100] or uuid.uuid4().hex
        if not await self._join():
            await self.close(code=1013)  # "try again later": the frontend reconnects on its own
            return
        await self.accept()
        # ComfyUI's first frame is always `status` carrying the sid the UI then uses as client_id.
        payload = await database_sync_to_async(self._snapshot)()
        first, *rest = wire.queue_messages(payload, self.workspace.slug)
        self.last_sent = {m["type"]: m for m in (first, *rest)}
        await self.send(text_data=json.dumps({**first, "data": {**first["data"], "sid": self.sid}}))
        for message in rest:
            await self.send(text_data=json.dumps(message))
        # A reload in the middle of a run: like ComfyUI, say at once which node is running.
        for message in await database_sync_to_async(self._running_progress)():
            await self.send(text_data=json.dumps(message))
        # Ends this tab missed while it was away (the app or Redis restarting): ComfyUI sends a
        # run's end to the tab that queued it, so that tab gets it, once.
        for message in await database_sync_to_async(self._missed_ends)():
            await self.send(text_data=json.dumps(message))

    def _missed_ends(self):
        from datetime import timedelta

        from django.utils import timezone

        from jobs.models import FINAL_STATES, Job

        messages = []
        recent = Job.objects.filter(workspace=self.workspace, client_id=self.sid, state__in=FINAL_STATES,
                                    end_delivered=False, finished_at__gte=timezone.now() - timedelta(minutes=10))
        for job in recent.exclude(end_messages=[]).order_by("finished_at"):
            if job.claim_end_delivery():
                messages += job.end_messages
        return messages

    def _claim(self, job_id) -> bool:
        from jobs.models import Job

        job = Job.objects.filter(pk=job_id, client_id=self.sid).only("id").first()
        return job is None or job.claim_end_delivery()

    async def _join(self) -> bool:
        """Join the workspace's and the queue's groups; a Redis that just restarted may refuse
        the first tries while channels-redis reconnects."""
        delay = 0.1
        for _ in range(8):
            try:
                await self.channel_layer.group_add(self.group, self.channel_name)
                await self.channel_layer.group_add(events.QUEUE_GROUP, self.channel_name)
                return True
            except Exception as exc:
                log.warning("websocket of %s: channel layer unavailable (%s); retrying", self.workspace.slug, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        return False

    def _running_progress(self):
        from jobs.models import Job, JobState

        messages = []
        for job_id, progress in Job.objects.filter(workspace=self.workspace, state=JobState.RUNNING).values_list(
            "id", "progress"
        ):
            if progress and progress.get("node"):
                messages += wire.running_progress(str(job_id), progress)
        return messages

    def _snapshot(self):
        from jobs.queue import snapshot

        return events.queue_payload(snapshot())

    async def disconnect(self, code):
        if hasattr(self, "group"):
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
                await self.channel_layer.group_discard(events.QUEUE_GROUP, self.channel_name)
            except Exception:  # Redis gone: its groups went with it
                pass

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
        if event.get("end_of") and not await database_sync_to_async(self._claim)(event["end_of"]):
            return  # this tab got it already (on reconnect)
        for message in event["messages"]:
            if "binary" in message:  # a live preview frame, exactly as ComfyUI sends it
                await self.send(bytes_data=message["binary"])
            else:
                await self.send(text_data=json.dumps(message))

    async def queue_update(self, event):
        # Each type only when it changed: the ComfyUI frontend re-reads queue and history on
        # every `status`, so 200 browsers must not get one for every change in someone else's queue.
        for message in wire.queue_messages(event["payload"], self.workspace.slug):
            if self.last_sent.get(message["type"]) != message:
                self.last_sent[message["type"]] = message
                await self.send(text_data=json.dumps(message))

    async def job_update(self, event):
        for message in wire.job_update(event["job"]):
            await self.send(text_data=json.dumps(message))
