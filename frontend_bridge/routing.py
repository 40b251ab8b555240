from django.urls import re_path

from .consumers import WorkspaceSocket
from .urls import SLUG

websocket_urlpatterns = [
    re_path(rf"^user/{SLUG}/(api/)?ws$", WorkspaceSocket.as_asgi()),
]
