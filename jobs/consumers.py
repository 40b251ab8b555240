"""`/ws/console`: the instructor's live queue page hears that something changed, then reads the
state over HTTP (one owner for what the page shows: jobs.reports.console_state)."""

import asyncio
import json
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from . import events

log = logging.getLogger(__name__)
REJOIN_SECONDS = 5.0


class GroupMember:
    """A socket that stays in its channel-layer groups while it is open. The layer forgets a
    member after its group_expiry (60 s: workshop.settings), and Redis restarting empty forgets
    every group, so the socket joins again every few seconds (joining twice changes nothing).
    A console that joined only once went deaf a minute after it opened."""

    groups_joined: tuple[str, ...] = ()
    _rejoin = None
    # Given by the consumer this is mixed into (Channels' AsyncWebsocketConsumer).
    channel_layer: Any
    channel_name: str

    async def join_groups(self) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)

    def stay_joined(self) -> None:
        self._rejoin = asyncio.ensure_future(self._rejoin_loop())

    async def _rejoin_loop(self) -> None:
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            try:
                await self.join_groups()
            except Exception as exc:
                log.warning("websocket %s: could not rejoin its groups (%s)", self.channel_name, exc)

    async def leave_groups(self) -> None:
        if self._rejoin is not None:
            self._rejoin.cancel()
        for group in self.groups_joined:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # Redis gone: its groups went with it
                pass


class ConsoleSocket(GroupMember, AsyncWebsocketConsumer):
    groups_joined = (events.QUEUE_GROUP, events.CONSOLE_GROUP)

    async def connect(self):
        user = self.scope.get("user")
        if not (user and user.is_authenticated and user.is_staff):
            await self.close(code=4403)
            return
        await self.join_groups()
        await self.accept()
        self.stay_joined()

    async def disconnect(self, code):
        await self.leave_groups()

    async def queue_update(self, event):
        await self.send(text_data=json.dumps({"type": "changed", "what": "queue"}))

    async def console_changed(self, event):
        await self.send(text_data=json.dumps({"type": "changed", "what": event.get("what", "")}))

    # The workspace sockets' other broadcasts also reach the queue group; the console ignores them.
    async def workshop_broadcast(self, event):
        pass
