# The GPU worker (`python -m gpuworker`): RQ + HTTP only, no Django, no database. One container
# per ComfyUI instance on the GPU host; also the serverless worker on the app host.
FROM python:3.13-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements-gpuworker.txt ./
RUN pip install --no-cache-dir -r requirements-gpuworker.txt
COPY gpuworker ./gpuworker
RUN useradd --create-home --uid 1000 worker \
    && mkdir -p /opt/workshop-models && chown worker /opt/workshop-models  # a new volume takes this owner
USER worker
ENTRYPOINT ["python", "-m", "gpuworker"]
CMD ["--help"]
