#!/bin/sh
# Entrypoint of the app image: waits for PostgreSQL and Redis, applies migrations, then runs
# the given command (default: Daphne). Set MIGRATE_ON_START=false for processes that must not
# migrate (the dispatcher) and WAIT_TIMEOUT (seconds, default 120) to wait longer.
set -e

python - <<'PY'
import os, sys, time
import redis

db_url = os.environ.get("DATABASE_URL", "")
redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
deadline = time.time() + float(os.environ.get("WAIT_TIMEOUT", "120"))
while True:
    try:
        if db_url.startswith(("postgres://", "postgresql://")):
            import psycopg
            psycopg.connect(db_url, connect_timeout=3).close()
        redis.Redis.from_url(redis_url, socket_timeout=3).ping()
        break
    except Exception as exc:
        if time.time() > deadline:
            sys.exit(f"entrypoint: the database or Redis did not answer in time: {exc}")
        print(f"entrypoint: waiting for the database and Redis ({exc.__class__.__name__})", flush=True)
        time.sleep(2)
PY

if [ "${MIGRATE_ON_START:-true}" = "true" ]; then
    python manage.py migrate --noinput
    # /app/var is a volume: a newer image's static files must reach it too.
    python manage.py collectstatic --noinput -v 0
fi

# nginx serves the frontend bundle (the same for every workspace) from a shared volume; it falls
# back to the app for anything missing, so a failed copy only costs speed.
if [ -d /frontend-shared ] && [ -w /frontend-shared ]; then
    cp -r /frontend/. /frontend-shared/ || echo "entrypoint: could not copy the frontend for nginx" >&2
fi

exec "$@"
