"""Stock Django under Daphne, for side-by-side runs: every file through Django's views, and
Django's own ASGI handler (the platform's app is workshop.asgi:application)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workshop.settings")
application = get_asgi_application()
