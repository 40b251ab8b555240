#!/bin/sh
# Waits for PostgreSQL and Redis, applies migrations, then runs the given command.
set -e
python - <<'PY'
import os, sys, time
import psycopg, redis
deadline = time.time() + 120
while True:
    try:
        psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=3).close()
        redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=3).ping()
        break
    except Exception as exc:
        if time.time() > deadline:
            sys.exit(f"database or Redis not reachable: {exc}")
        print(f"waiting for the database and Redis ({exc.__class__.__name__})", flush=True)
        time.sleep(2)
PY
if [ "${MIGRATE_ON_START:-true}" = "true" ]; then
    python manage.py migrate --noinput
fi
# nginx serves the frontend's static files from this shared folder.
if [ -d /frontend-shared ]; then
    cp -r /frontend/. /frontend-shared/
fi
exec "$@"
