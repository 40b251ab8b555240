"""Settings for the workshop platform: everything comes from the environment.

Defaults are the embedded ones (SQLite under var/, local Redis) so `scripts/run` works on a
fresh machine; production sets DATABASE_URL, REDIS_URL, SECRET_KEY, ALLOWED_HOSTS.
See .env.example for every variable.
"""

from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from .env import env_bool, env_int, env_list, env_str, load_defaults
from .lib.private_files import make_private

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("WORKSHOP_VAR_DIR", str(BASE_DIR / "var")))
# scripts/run writes what it chose (WORKSHOP_URL, the simulated GPU's start workflow) here.
load_defaults(VAR_DIR / "run.env")

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    # The embedded default keeps a generated key in var/ so sessions survive restarts.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        import os
        import secrets

        with os.fdopen(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    SECRET_KEY = key_file.read_text().strip()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_rq",
    "accounts",
    "jobs",
    "frontend_bridge",
    "workshop",  # the project's own operator commands (workshop_rehearsal), above every app
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "workshop.middleware.CountRefusals",
    "workshop.middleware.RQDashboard",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.throttle.DeviceCookie",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "workshop.urls"
ASGI_APPLICATION = "workshop.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'workshop.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"].endswith("postgresql") and env_bool("DATABASE_POOL", True):
    # Under ASGI every request may run on another thread: a pool, not persistent connections,
    # saves the connection set-up on each request.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN", 2),
        "max_size": env_int("DATABASE_POOL_MAX", 20),
        "timeout": 10,
    }
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (Daphne, dispatcher) share the embedded SQLite file.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        # Sessions and password hashes: made owner-only before SQLite creates it with 0644.
        make_private(Path(DATABASES["default"]["NAME"]))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Checked whenever a password is chosen (the participant's change page, the admin); the
# generated passwords of workshop_setup are long random words and are not re-checked.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The hash's cost: workshop/hashers.py says why (and docs/security.md).
PASSWORD_HASHERS = [
    "workshop.hashers.WorkshopPBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
# Per account and address together, and per account from anywhere; never per address alone
# (a venue shares one), and never on the account's own known device (docs/security.md).
LOGIN_FAILURES_PER_USER = env_int("LOGIN_FAILURES_PER_USER", 10)
LOGIN_FAILURES_PER_ACCOUNT = env_int("LOGIN_FAILURES_PER_ACCOUNT", 50)
LOGIN_SLOW_SECONDS = env_int("LOGIN_SLOW_SECONDS", 30)
# A session lasts a workshop day, not Django's two weeks.
SESSION_COOKIE_AGE = env_int("SESSION_HOURS", 14) * 3600
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# The frontend's public files, compressed (frontend_bridge.static_fast). Empty: a copy the app
# makes under VAR_DIR on first start; an image sets the folder it prepared at build.
FRONTEND_FILES_DIR = env_str("FRONTEND_FILES_DIR", "")

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNELS_PREFIX = env_str("CHANNELS_PREFIX", "workshop")

# The web server dispatches and announces after the response, in one background pass for all
# changes meanwhile (jobs.lifecycle); off, each request does it before it answers.
POST_CHANGE_IN_BACKGROUND = env_bool("POST_CHANGE_IN_BACKGROUND", True)

# Shared by every process (login throttling counts across Daphne processes).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": CHANNELS_PREFIX + "-cache",
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py's default 5 s socket timeout equals channels-redis's 5 s blocking pop: raise
        # it, or idle websockets die now and then with "Timeout reading from Redis".
        "CONFIG": {
            # redis-py's async pool holds 100 connections by default and then fails: 200 sockets
            # joining their groups at once ran out. Sized for 500 sockets per Daphne process.
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": 30,
                    "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 1000),
                }
            ],
            "prefix": CHANNELS_PREFIX,
            # Open sockets rejoin their groups every 5 s (frontend_bridge.consumers), so a socket
            # whose Daphne died leaves them within a minute instead of filling up for a day.
            "group_expiry": 60,
        },
    }
}

GPU_QUEUE = env_str("GPU_QUEUE", "gpu")
# Among free GPU workers, a job goes to one whose ComfyUI has its models loaded (the queue's
# order is the policy's either way).
MODEL_AFFINITY = env_bool("MODEL_AFFINITY", True)
RQ_QUEUES = {
    GPU_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": env_int("JOB_TIMEOUT", 1800) + 300},
}

# Where workspaces keep their files: <WORKSHOP_DATA_DIR>/workspaces/<slug>/{input,output,temp,userdata}
WORKSHOP_DATA_DIR = Path(env_str("WORKSHOP_DATA_DIR", str(VAR_DIR / "data")))

# Official templates offered as workshop workflows (names in the comfyui-workflow-templates package):
# LTX-2 text-to-video and image-to-video, full and distilled.
WORKSHOP_TEMPLATES = env_list(
    "WORKSHOP_TEMPLATES", ["video_ltx2_t2v", "video_ltx2_i2v", "video_ltx2_t2v_distilled", "video_ltx2_i2v_distilled"]
)
# The workshop workflow a workspace opens on its first load (a name of workflows/workshop/).
WORKSHOP_START_WORKFLOW = env_str("WORKSHOP_START_WORKFLOW", "video_ltx2_t2v")

# Queue and worker settings (the instructor changes live values in the admin: QueueSettings).
WORKSHOP_USERS = env_int("WORKSHOP_USERS", 20)
QUEUE_POLICY = env_str("QUEUE_POLICY", "round_robin")
MAX_WAITING_PER_USER = env_int("MAX_WAITING_PER_USER", 5)
MAX_PROMPT_BYTES = env_int("MAX_PROMPT_BYTES", 2_000_000)
JOB_TIMEOUT = env_int("JOB_TIMEOUT", 1800)
MAX_ATTEMPTS = env_int("MAX_ATTEMPTS", 3)
# A GPU worker renews its lease (and the lease of the run it is doing) every LEASE_SECONDS/4;
# one silent for LEASE_SECONDS is offline and its run goes back to the head of the queue.
LEASE_SECONDS = env_int("LEASE_SECONDS", 10)
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 100 * 1024 * 1024)
# Images larger than this are refused from their header, before decoding (a 17 KB PNG can
# claim 12000×12000 pixels and take a gigabyte to decode). 50 MP is above an 8K frame.
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 50_000_000)
# Participants' own models (docs/participant.md, "My models"): the model folders they may upload
# to (ComfyUI's names), the largest file, and what one workspace may keep in all.
MODEL_FOLDERS = env_list("MODEL_FOLDERS", ["loras"])
MAX_MODEL_BYTES = env_int("MAX_MODEL_BYTES", 2 * 1024**3)
MODEL_QUOTA_BYTES = env_int("MODEL_QUOTA_BYTES", 4 * 1024**3)
# Uploads in progress count towards the quota; a workspace may have this many at once, and one
# that has not grown for MODEL_PART_MAX_AGE seconds is removed (the dispatcher loop does it).
MAX_UNFINISHED_MODELS = env_int("MAX_UNFINISHED_MODELS", 2)
MODEL_PART_MAX_AGE = env_int("MODEL_PART_MAX_AGE", 3600)
# Hosts a pasted model URL may name although they are not on the public internet (an internal
# mirror); every other private, loopback or link-local address is refused.
MODEL_FETCH_ALLOWED_HOSTS = env_list("MODEL_FETCH_ALLOWED_HOSTS", [])
# The longest a URL fetch of a model may take, whole: a server that drips its bytes is cut off.
MODEL_FETCH_SECONDS = env_int("MODEL_FETCH_SECONDS", 30 * 60)
# What a GPU worker may send for one output file (a long LTX-2 video is a few GB).
MAX_OUTPUT_BYTES = env_int("MAX_OUTPUT_BYTES", 16 * 1024**3)

# The address participants open (credential sheets, QR codes).
WORKSHOP_URL = env_str("WORKSHOP_URL", "http://127.0.0.1:8000")
# Where the credential sheet (credentials.csv and the printable credentials.html) is kept.
CREDENTIALS_DIR = Path(env_str("WORKSHOP_CREDENTIALS_DIR", str(VAR_DIR)))
# What an hour of GPU costs, per provider ("runpod=2.49,comfyui=0"; "*" for any other), unless
# a worker has its own price in the admin; and the currency the console shows.
GPU_PRICE_PER_HOUR = {
    key.strip(): float(value)
    for key, _, value in (item.partition("=") for item in env_list("GPU_PRICE_PER_HOUR", []))
    if key.strip() and value.strip()
}
GPU_PRICE_CURRENCY = env_str("GPU_PRICE_CURRENCY", "USD")
# /metrics for a Prometheus scraper: `Authorization: Bearer <METRICS_TOKEN>` (staff may always look).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# workshop_doctor warns below this much free disk for workspaces.
MIN_FREE_DISK_BYTES = env_int("MIN_FREE_DISK_GB", 10) * 1024**3
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_PROMPT_BYTES + 1_000_000

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"refusals_in_one_line": {"()": "workshop.logfilters.RefusalsInOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["refusals_in_one_line"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # urllib3 logs a traceback for a fetched server's malformed headers (a URL fetch of My models
    # meets whatever a participant points it at): the fetch answers for it in one sentence.
    "loggers": {"django.channels.server": {"level": "WARNING"}, "urllib3.connection": {"level": "ERROR"}},
}

# Every page runs only the platform's own code: the ComfyUI frontend, its core extensions,
# the admin. The frontend's view adds the hash of its one inline script (frontend_bridge.frontend);
# files from workspaces carry a stricter policy of their own (frontend_bridge.api.FILE_CSP).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    # The frontend compiles a bundled WebAssembly module (fetched from a data: URL).
    "script-src": [CSP.SELF, CSP.WASM_UNSAFE_EVAL],
    # PrimeVue and the admin's widgets inject <style> elements.
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:", "blob:"],
    "media-src": [CSP.SELF, "data:", "blob:"],
    "font-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF, "data:", "blob:"],
    "worker-src": [CSP.SELF, "blob:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.SELF],
}

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
BEHIND_PROXY = env_bool("BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
if BEHIND_PROXY:
    # Served only over TLS: browsers are told so for a year (nginx sends the same header for
    # the files it serves itself), and a plain-HTTP request is redirected, except the calls
    # that reach the app directly inside the compose network (a worker, the health check).
    SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Only allows submitting the host to browsers' preload list; nothing is submitted.
    SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", True)
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^api/worker/", r"^health$"]
