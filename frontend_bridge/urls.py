from django.urls import path, re_path

from . import api

SLUG = r"(?P<slug>[A-Za-z0-9_-]{1,16})"

# ComfyUI registers each route both bare and under /api; so do we.
urlpatterns = []
for prefix in ("api/", ""):
    urlpatterns += [
        re_path(rf"^user/{SLUG}/{prefix}prompt$", api.prompt),
        re_path(rf"^user/{SLUG}/{prefix}queue$", api.queue),
        re_path(rf"^user/{SLUG}/{prefix}history$", api.history),
        re_path(rf"^user/{SLUG}/{prefix}history/(?P<prompt_id>[^/]+)$", api.history),
        re_path(rf"^user/{SLUG}/{prefix}view$", api.view),
        re_path(rf"^user/{SLUG}/{prefix}interrupt$", api.interrupt),
    ]
