"""`/ws/console`: the instructor's live queue page hears that something changed, then reads the
state over HTTP (one owner for what the page shows: jobs.reports.console_state)."""
import json

from channels.generic.websocket import AsyncWebsocketConsumer

from . import events


class ConsoleSocket(AsyncWebsocketConsumer):
    groups_joined = (events.QUEUE_GROUP, events.CONSOLE_GROUP)

    async def connect(self):
        user = self.scope.get("user")
        if not (user and user.is_authenticated and user.is_staff):
            await self.close(code=4403)
            return
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        for group in self.groups_joined:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # Redis gone: its groups went with it
                pass

    async def queue_update(self, event):
        await self.send(text_data=json.dumps({"type": "changed", "what": "queue"}))

    async def console_changed(self, event):
        await self.send(text_data=json.dumps({"type": "changed", "what": event.get("what", "")}))

    # The workspace sockets' other broadcasts also reach the queue group; the console ignores them.
    async def workshop_broadcast(self, event):
        pass
