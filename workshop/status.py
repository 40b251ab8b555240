"""How the platform stands: the checks `/health`, `workshop_status` and `workshop_doctor` share.

Each returns plain data (JSON-ready); none raises when a service is down, it says so.
"""

import shutil
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from jobs import rq
from jobs.models import Job, JobState, QueueSettings, Worker


def database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "engine": connection.vendor}
    except Exception as exc:
        return {"ok": False, "error": str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}


def redis() -> dict:

    try:
        rq.connection().ping()
        return {"ok": True, "url": _without_password(settings.REDIS_URL)}
    except Exception as exc:
        return {"ok": False, "url": _without_password(settings.REDIS_URL), "error": str(exc) or type(exc).__name__}


def _without_password(url: str) -> str:

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def workers(now: datetime | None = None) -> list[dict]:

    now = now or timezone.now()
    return [
        {
            "name": w.name,
            "provider": w.provider,
            "health": w.health,
            "online": w.is_online,
            "heartbeat_age_seconds": round((now - w.last_heartbeat).total_seconds(), 1) if w.last_heartbeat else None,
            "comfyui_version": w.comfyui_version,
        }
        for w in Worker.objects.all()
    ]


def queue(now: datetime | None = None) -> dict:

    now = now or timezone.now()
    by_state = {state: 0 for state in JobState.values}
    by_state.update(dict(Job.objects.values_list("state").annotate(n=Count("id"))))
    oldest = Job.objects.waiting().order_by("created_at").select_related("workspace").first()
    queue_settings = QueueSettings.get()
    return {
        "policy": queue_settings.policy,
        "paused": queue_settings.paused,
        "by_state": by_state,
        "oldest_waiting": None
        if oldest is None
        else {
            "workspace": oldest.workspace.slug,
            "number": oldest.number,
            "waiting_seconds": round((now - oldest.created_at).total_seconds(), 1),
        },
    }


def disk() -> dict:
    folder = settings.WORKSHOP_DATA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(folder)
    return {
        "path": str(folder),
        "total_bytes": usage.total,
        "free_bytes": usage.free,
        "free_share": round(usage.free / usage.total, 3) if usage.total else 0.0,
    }


def everything() -> dict:
    """What `workshop_status` prints. ok: the database and Redis answer and a worker is online."""
    db = database()
    result: dict = {"app": {"ok": True, "debug": settings.DEBUG}, "database": db, "redis": redis(), "disk": disk()}
    if db["ok"]:
        result["workers"] = workers()
        result["queue"] = queue()
    else:
        result["workers"], result["queue"] = [], None
    result["ok"] = bool(db["ok"] and result["redis"]["ok"] and any(w["online"] for w in result["workers"]))
    return result
