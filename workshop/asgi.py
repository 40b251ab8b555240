import os

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workshop.settings")
django.setup(set_prefix=False)


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler, with the middleware chain and the view run in one thread hop.

    Every view of the platform is sync. In Django's async mode each middleware's hook is a hop
    of its own between the event loop and a thread, a dozen per request: under a class
    starting at once that was most of a request's cost (docs/benchmarks.md).
    """

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)
        self._middleware_chain = sync_to_async(self._middleware_chain, thread_sensitive=True)  # type: ignore[has-type]  # Django sets it in load_middleware


django_asgi_app = OneHopASGIHandler()

from django.conf import settings  # noqa: E402

from jobs import lifecycle  # noqa: E402

if settings.POST_CHANGE_IN_BACKGROUND:
    lifecycle.defer_in_background()  # dispatch after the response, once for all changes meanwhile

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
