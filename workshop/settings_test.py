"""Test settings: the real PostgreSQL and a Redis DB number of the tests' own."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/workshop")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("CHANNELS_PREFIX", "workshop-test")
# The tests' own values, never what a scripts/run beside them wrote into var/run.env.
os.environ.setdefault("WORKSHOP_URL", "http://127.0.0.1:8000")
os.environ.setdefault("WORKSHOP_START_WORKFLOW", "video_ltx2_t2v")

import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from .settings import *  # noqa: E402,F401,F403

WORKSHOP_DATA_DIR = Path(os.environ.get("WORKSHOP_DATA_DIR") or tempfile.mkdtemp(prefix="workshop-test-data-"))
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A database of this run's own, so two test runs on one machine never collide.
DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get(  # noqa: F405
    "TEST_DATABASE_NAME",
    f"test_{DATABASES['default']['NAME']}_{os.getpid()}",  # noqa: F405
)

# Static files straight from the apps (production serves what collectstatic gathered).
WHITENOISE_USE_FINDERS = True

# In-process tests see each change's dispatch before the call returns; the Daphne processes the
# tests start run it in the background, as production does (tests.conftest.child_env).
POST_CHANGE_IN_BACKGROUND = env_bool("POST_CHANGE_IN_BACKGROUND", False)  # noqa: F405
