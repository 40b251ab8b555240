# The app host image: Django (Daphne), the dispatcher loop, and the operator's manage.py.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    WORKSHOP_VAR_DIR=/app/var WORKSHOP_DATA_DIR=/data
WORKDIR /app

COPY requirements.txt requirements-gpuworker.txt ./
RUN pip install --no-cache-dir -r requirements.txt -r requirements-gpuworker.txt

COPY . .
RUN useradd --create-home --uid 1000 workshop \
 && mkdir -p /app/var /data /frontend \
 && SECRET_KEY=build-only python manage.py collectstatic --noinput \
 && python -c "import comfyui_frontend_package, shutil, os; shutil.copytree(os.path.join(os.path.dirname(comfyui_frontend_package.__file__), 'static'), '/frontend', dirs_exist_ok=True)" \
 && chown -R workshop:workshop /app/var /data /frontend
USER workshop

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
ENTRYPOINT ["docker/app-entrypoint.sh"]
CMD ["python", "-m", "daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "workshop.asgi:application"]
