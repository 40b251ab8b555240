import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workshop.settings")
django_asgi_app = get_asgi_application()

try:
    from . import daphne_limits

    daphne_limits.install()  # body limits before the body, when Daphne serves (scripts/run, compose)
except ImportError:  # another ASGI server: nginx's per-location limits apply
    pass

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from django.urls import re_path  # noqa: E402

from frontend_bridge.routing import websocket_urlpatterns  # noqa: E402
from frontend_bridge.static_fast import FrontendFiles  # noqa: E402
from jobs.consumers import ConsoleSocket  # noqa: E402

websocket_urlpatterns = [*websocket_urlpatterns, re_path(r"^ws/console$", ConsoleSocket.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": FrontendFiles(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
