"""Access to the RQ queues that carry jobs to GPU workers (JSON, so gpuworker needs no pickle
of ours). Each worker has its own queue (Worker.queue_name); each run of a job is its own RQ
job, `<job id>_<run>`, so a late run can never be mistaken for the current one.

Redis is disposable: every call here that only helps (withdraw, stop signals) tolerates Redis
being down; the database stays the truth and the dispatcher's reaper repairs the rest.
"""

import logging
from functools import lru_cache

import redis
from django.conf import settings
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from gpuworker import protocol

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _connection_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, health_check_interval=30, socket_timeout=5, socket_connect_timeout=2)


def connection() -> redis.Redis:
    """The Redis that carries RQ jobs (one pool per URL, so a restarted Redis is found again)."""
    return _connection_for(settings.REDIS_URL)


def queue_for(worker) -> Queue:
    return Queue(worker.queue_name, connection=connection(), serializer=JSONSerializer)


def payload_for(job) -> dict:
    return {
        "job_id": str(job.id),
        "run": job.run,
        "workspace": job.workspace.slug,
        "prompt": job.prompt,
        "extra_data": job.extra_data,
        "submit_fields": job.submit_fields,
        "inputs": job.inputs,
        "own_models": job.own_models,
        "timeout": job.timeout_seconds,
        "attempt": job.attempts + 1,
    }


def enqueue(job) -> None:
    queue_for(job.worker).enqueue(
        protocol.TASK,
        payload_for(job),
        job_id=protocol.run_id(job.id, job.run),
        job_timeout=job.timeout_seconds + 300,
        result_ttl=3600,
        failure_ttl=24 * 3600,
    )


def status(job_id, run) -> str | None:
    """RQ's status of the run, or None when Redis no longer knows it."""
    try:
        return RQJob.fetch(
            protocol.run_id(job_id, run), connection=connection(), serializer=JSONSerializer
        ).get_status()
    except NoSuchJobError:
        return None


def withdraw(job_id, run) -> None:
    """Take a run that no worker has picked up off its RQ queue."""
    try:
        RQJob.fetch(protocol.run_id(job_id, run), connection=connection(), serializer=JSONSerializer).cancel()
    except NoSuchJobError:
        pass
    except Exception as exc:  # Redis down; the worker is refused at `started` anyway (fencing).
        log.warning("could not withdraw run %s of job %s: %s", run, job_id, exc)


def lease_alive(job_id, run) -> bool | None:
    """Did the worker renew this run's lease in Redis? A worker that cannot reach the app (the
    app restarting) still renews it there, so its run is not taken away. None: Redis is down."""
    try:
        return bool(connection().exists(protocol.LEASE_KEY.format(protocol.run_id(job_id, run))))
    except Exception:
        return None


def signal_stop(job_id, run, kind: str) -> None:
    try:
        connection().set(protocol.CANCEL_KEY.format(protocol.run_id(job_id, run)), kind, ex=3600)
    except Exception as exc:  # The worker also hears it in the answer to its next call.
        log.warning("could not signal %s for job %s: %s", kind, job_id, exc)


def clear_stop(job_id, run) -> None:
    try:
        connection().delete(protocol.CANCEL_KEY.format(protocol.run_id(job_id, run)))
    except Exception as exc:
        log.warning("could not clear the stop signal of job %s: %s", job_id, exc)
