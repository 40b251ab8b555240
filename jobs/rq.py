"""Access to the RQ queue that carries jobs to GPU workers (JSON, so gpuworker needs no pickle of ours)."""
from functools import lru_cache

import redis
from django.conf import settings
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.serializers import JSONSerializer

TASK = "gpuworker.tasks.run_job"
CANCEL_KEY = "workshop:cancel:{}"


@lru_cache(maxsize=4)
def _connection_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, health_check_interval=30)


def connection() -> redis.Redis:
    """The Redis that carries RQ jobs (one pool per URL, so a restarted Redis is found again)."""
    return _connection_for(settings.REDIS_URL)


def gpu_queue() -> Queue:
    return Queue(settings.GPU_QUEUE, connection=connection(), serializer=JSONSerializer)


def payload_for(job) -> dict:
    return {
        "job_id": str(job.id),
        "workspace": job.workspace.slug,
        "prompt": job.prompt,
        "extra_data": job.extra_data,
        "inputs": job.inputs,
        "timeout": job.timeout_seconds,
        "attempt": job.attempts,
    }


def enqueue(job) -> None:
    gpu_queue().enqueue(
        TASK,
        payload_for(job),
        job_id=str(job.id),
        job_timeout=job.timeout_seconds + 300,
        result_ttl=3600,
        failure_ttl=24 * 3600,
    )


def status(job_id) -> str | None:
    """RQ's status of the job, or None when Redis no longer knows it."""
    try:
        return RQJob.fetch(str(job_id), connection=connection(), serializer=JSONSerializer).get_status()
    except NoSuchJobError:
        return None


def withdraw(job_id) -> None:
    """Take a job that no worker has picked up off the RQ queue."""
    try:
        RQJob.fetch(str(job_id), connection=connection(), serializer=JSONSerializer).cancel()
    except NoSuchJobError:
        pass


def signal_stop(job_id, kind: str) -> None:
    connection().set(CANCEL_KEY.format(job_id), kind, ex=3600)


def clear_stop(job_id) -> None:
    connection().delete(CANCEL_KEY.format(job_id))


LOST = {None, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
