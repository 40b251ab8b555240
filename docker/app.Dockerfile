# The app host image: Django under Daphne (HTTP + websockets), the dispatcher loop, and the
# operator's manage.py commands. Built from the repository root:
#   docker build -f docker/app.Dockerfile -t workshop-app .
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WORKSHOP_VAR_DIR=/app/var WORKSHOP_DATA_DIR=/data
WORKDIR /app

# Debian's Chromium, for `manage.py workshop_rehearsal` (a participant's first visit and the
# console, in a real browser, the day before). About 300 MB: --build-arg WITH_CHROMIUM=0 leaves it
# out, and the rehearsal then needs --no-browser.
ARG WITH_CHROMIUM=1
RUN if [ "$WITH_CHROMIUM" = 1 ]; then apt-get update && apt-get install -y --no-install-recommends chromium \
    && rm -rf /var/lib/apt/lists/*; fi

COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Static files are collected at build (admin, RQ dashboard) into /app/var/static; the frontend
# bundle (comfyui-frontend-package) is copied to /frontend with a .gz beside each file that
# compresses, which the app serves and nginx too (see the entrypoint). Every folder a volume is mounted on exists here, owned by the app's user, so a
# fresh named volume starts out writable for it.
RUN useradd --create-home --uid 1000 workshop \
 && mkdir -p /app/var /data /frontend /frontend-shared \
 && SECRET_KEY=build-only python manage.py collectstatic --noinput -v 0 \
 && SECRET_KEY=build-only python manage.py shell -c "from frontend_bridge.static_fast import build; build('/frontend')" \
 && chown -R workshop:workshop /app/var /data /frontend /frontend-shared
USER workshop

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
ENV FRONTEND_FILES_DIR=/frontend
ENTRYPOINT ["docker/app-entrypoint.sh"]
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "--websocket_connect_timeout", "30", "workshop.asgi:application"]
