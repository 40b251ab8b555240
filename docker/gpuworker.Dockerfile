# The GPU worker: RQ + HTTP only, no Django, no database.
FROM python:3.13-slim
ENV PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements-gpuworker.txt ./
RUN pip install --no-cache-dir -r requirements-gpuworker.txt
COPY gpuworker ./gpuworker
RUN useradd --uid 1000 worker
USER worker
ENTRYPOINT ["python", "-m", "gpuworker"]
