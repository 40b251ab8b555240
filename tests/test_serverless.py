"""Serverless ComfyUI through the same queue: a ComfyUI HTTP API behind a provider's front (path
prefix, auth header, cold start, two replicas behind a load balancer), reached by a real
gpuworker process configured by its provider file."""

import json

import pytest

from jobs.models import Job, JobState, Worker
from jobs.reports import console_state
from tests.conftest import WORKFLOWS, wait_until
from tests.serverless_double import ServerlessComfyUI
from tests.test_e2e import finished, post_prompt, receive_until

pytestmark = pytest.mark.e2e

SIMPLE = json.loads((WORKFLOWS / "simple.json").read_text())


def provider_file(front, **timeouts) -> str:
    """The operator's file: the key comes from the environment, never the file."""
    table = "\n".join(f"{k} = {v}" for k, v in {"cold_start": 30, "problem_probe": 1, **timeouts}.items())
    return (
        f'provider = "comfyui"\n\n[comfyui]\nurl = "{front.url}"\nserverless = true\n'
        'headers = { Authorization = "Bearer ${FRONT_KEY}" }\n\n'
        f"[timeouts]\n{table}\n"
    )


def prompt(n: int) -> dict:
    changed = json.loads(json.dumps(SIMPLE))
    changed["1"]["inputs"]["color"] = n
    return changed


def routed(front) -> int:
    return sum(v for k, v in front.counters.items() if k.startswith("replica-"))


def beats_pass(name: str, count: int = 2) -> None:
    for _ in range(count):
        before = Worker.objects.get(name=name).last_heartbeat
        wait_until(
            lambda before=before: Worker.objects.get(name=name).last_heartbeat > before,
            timeout=10,
            message="a heartbeat",
        )


def test_a_cold_start_is_shown_counting_then_the_run_and_its_outputs(live_app, participants):
    with ServerlessComfyUI(cold_start=2.0, step_time=0.02, steps=2) as front:
        with live_app.gpu_worker(name="modal-1", config=provider_file(front), env={"FRONT_KEY": front.key}):
            assert front.counters["cold_starts"] == 1, "the worker started it once, for the catalog"
            front.scale_to_zero()
            idle = routed(front)
            beats_pass("modal-1")
            assert routed(front) == idle, "an idle worker does not keep a serverless GPU warm with probes"

            alice = live_app.login("user001")
            with live_app.ws(alice, "001") as ws:
                prompt_id = post_prompt(alice, live_app, "001", prompt(7))
                running = wait_until(
                    lambda: [r for r in console_state()["running"] if r["node"].startswith("Starting a GPU")],
                    message="the console to say so",
                )
                assert running[0]["id"] == prompt_id
                seen = receive_until(ws, finished(prompt_id))

    starting = [m for m in seen if m["type"] == "workshop.gpu_starting"]
    assert starting and all(m["data"]["prompt_id"] == prompt_id for m in starting)
    assert [m["data"]["seconds"] for m in starting] == sorted(m["data"]["seconds"] for m in starting), "it counts up"
    types = [m["type"] for m in seen]
    assert types.index("workshop.gpu_starting") < types.index("execution_start"), "then the run's own progress"
    assert "progress" in types
    job = Job.objects.get(pk=prompt_id)
    assert job.state == JobState.COMPLETED and job.attempts == 0
    assert job.cold_start_seconds >= 1.0, "the cold start is timed"
    assert front.counters["cold_starts"] == 2
    item = next(iter(job.outputs.values()))["images"][0]
    assert (participants[0].root / "output" / item.get("subfolder", "") / item["filename"]).stat().st_size > 0
    row = next(w for w in console_state()["workers"] if w["name"] == "modal-1")
    assert row["cold_starts"] == 1 and row["cold_start_median"] >= 1.0


def test_replicas_behind_a_load_balancer_each_run_stays_on_one(live_app, participants):
    with ServerlessComfyUI(replicas=2, step_time=0.02, steps=2) as front:
        with live_app.gpu_worker(name="lb-1", config=provider_file(front), env={"FRONT_KEY": front.key}):
            alice = live_app.login("user001")
            with live_app.ws(alice, "001") as ws:
                for n in range(4):
                    receive_until(ws, finished(post_prompt(alice, live_app, "001", prompt(n))))
    # A new connection alternates between the replicas: the run's POST, socket and history
    # agree only because the worker carries the balancer's cookie on every one of them.
    assert Job.objects.filter(state=JobState.COMPLETED).count() == 4
    assert sum(len(r.prompts) for r in front.replicas) == 4


def test_a_replica_that_goes_away_mid_run_puts_the_job_back_not_failed(live_app, participants):
    with ServerlessComfyUI(replicas=2, step_time=0.2, steps=20) as front:
        with live_app.gpu_worker(name="lb-2", config=provider_file(front), env={"FRONT_KEY": front.key}):
            alice = live_app.login("user001")
            with live_app.ws(alice, "001") as ws:
                prompt_id = post_prompt(alice, live_app, "001", prompt(1))
                victim = (
                    wait_until(
                        lambda: next((n + 1 for n, r in enumerate(front.replicas) if r.running_prompt_id), None),
                        message="the run on a replica",
                    )
                    - 1
                )
                front.replicas[1 - victim].step_time = 0.01
                front.kill_replica(victim)
                seen = receive_until(ws, finished(prompt_id), timeout=60)
    notices = [m["data"]["text"] for m in seen if m["type"] == "workshop.notice"]
    assert any("lost its GPU" in text for text in notices), notices
    job = Job.objects.get(pk=prompt_id)
    assert job.state == JobState.COMPLETED and job.run == 2
    assert front.replicas[1 - victim].prompts, "the second run was on the replica left"


def test_refused_credentials_mark_the_worker_unhealthy_and_fail_no_job(live_app, participants):
    with ServerlessComfyUI(step_time=0.02, steps=2) as front:
        with live_app.gpu_worker(
            name="modal-2", config=provider_file(front), env={"FRONT_KEY": "sk-wrong"}, online=False
        ) as proc:
            wait_until(lambda: Worker.objects.get(name="modal-2").problem, message="the worker to say why")
            worker = Worker.objects.get(name="modal-2")
            assert not worker.is_online and worker.health == "ComfyUI unreachable"
            assert "refused this worker's credentials (HTTP 401" in worker.problem and "sk-" not in worker.problem
            row = next(w for w in console_state()["workers"] if w["name"] == "modal-2")
            assert row["problem"] == worker.problem
            alice = live_app.login("user001")
            prompt_id = post_prompt(alice, live_app, "001", prompt(3))
            beats_pass("modal-2")
            assert Job.objects.get(pk=prompt_id).state == JobState.QUEUED, "nothing was sent to it"
            assert proc.poll() is None

            front.key = "sk-wrong"  # the operator fixes the provider's side: the worker gets in
            wait_until(
                lambda: Job.objects.get(pk=prompt_id).state == JobState.COMPLETED,
                timeout=30,
                message="the job to run once the key works",
            )
            assert Worker.objects.get(name="modal-2").problem == ""


def test_a_key_rotated_mid_workshop_puts_the_job_back_and_says_why(live_app, participants):
    with ServerlessComfyUI(step_time=0.02, steps=2) as front:
        with live_app.gpu_worker(name="modal-3", config=provider_file(front), env={"FRONT_KEY": front.key}):
            right, front.key = front.key, "sk-rotated"
            alice = live_app.login("user001")
            with live_app.ws(alice, "001") as ws:
                prompt_id = post_prompt(alice, live_app, "001", prompt(4))
                wait_until(lambda: Worker.objects.get(name="modal-3").problem, message="the worker to be unhealthy")
                job = Job.objects.get(pk=prompt_id)
                assert job.state == JobState.QUEUED and job.attempts == 0, "the job waits, at no cost"
                assert "credentials" in job.error
                front.key = right
                seen = receive_until(ws, finished(prompt_id), timeout=30)
    notices = [m["data"]["text"] for m in seen if m["type"] == "workshop.notice"]
    assert any("refused the worker's credentials" in text for text in notices), notices
    assert Job.objects.get(pk=prompt_id).state == JobState.COMPLETED


def test_a_gpu_that_does_not_start_in_time_is_not_the_jobs_fault(live_app, participants):
    with ServerlessComfyUI(cold_start=0.5, step_time=0.02, steps=2) as front:
        with live_app.gpu_worker(
            name="modal-4", config=provider_file(front, cold_start=2), env={"FRONT_KEY": front.key}
        ):
            front.cold_start = 4.0
            front.scale_to_zero()
            alice = live_app.login("user001")
            with live_app.ws(alice, "001") as ws:
                prompt_id = post_prompt(alice, live_app, "001", prompt(5))
                seen = receive_until(ws, finished(prompt_id), timeout=60)
    notices = [m["data"]["text"] for m in seen if m["type"] == "workshop.notice"]
    assert any("did not start within 2 s" in text for text in notices), notices
    job = Job.objects.get(pk=prompt_id)
    assert job.state == JobState.COMPLETED and job.attempts == 0


def test_cancel_stops_the_run_on_the_serverless_replica(live_app, participants):
    with ServerlessComfyUI(step_time=0.2, steps=50) as front:
        with live_app.gpu_worker(name="modal-5", config=provider_file(front), env={"FRONT_KEY": front.key}):
            alice = live_app.login("user001")
            with live_app.ws(alice, "001") as ws:
                prompt_id = post_prompt(alice, live_app, "001", prompt(6))
                wait_until(lambda: any(r.running_prompt_id for r in front.replicas), message="the run to start")
                answer = alice.post(f"{live_app.url}/user/001/api/interrupt", json={"prompt_id": prompt_id}, timeout=10)
                assert answer.status_code == 200
                receive_until(
                    ws, lambda m: m["type"] == "execution_interrupted" and m["data"]["prompt_id"] == prompt_id
                )
    assert Job.objects.get(pk=prompt_id).state == JobState.CANCELLED
    assert any(r.interrupts for r in front.replicas), "the replica was told to stop"


def test_the_instructor_keeps_a_gpu_warm_and_sees_what_it_costs(live_app, participants):
    from jobs.models import QueueSettings

    # The front idles out after 4 s; the worker's requests come at its heartbeats (2.5 s here).
    with ServerlessComfyUI(cold_start=1.5, idle_timeout=4.0, step_time=0.02, steps=2) as front:
        config = provider_file(front, keep_warm=0.5).replace(
            'provider = "comfyui"\n', 'provider = "comfyui"\nprice_per_hour = 3.6\n'
        )
        with live_app.gpu_worker(name="modal-6", config=config, env={"FRONT_KEY": front.key}):
            assert Worker.objects.get(name="modal-6").serverless
            QueueSettings.get().set_warm(1)  # "Warm up now" (the console's action: tests/test_console.py)
            wait_until(
                lambda: Worker.objects.get(name="modal-6").warm_seconds > 9,
                timeout=20,
                message="kept warm past the idle timeout",
            )
            starts = front.counters["cold_starts"]
            alice = live_app.login("user001")
            with live_app.ws(alice, "001") as ws:
                warm_run = post_prompt(alice, live_app, "001", prompt(21))
                seen = receive_until(ws, finished(warm_run))
            assert not [m for m in seen if m["type"] == "workshop.gpu_starting"], "no participant waits for a start"
            assert front.counters["cold_starts"] == starts and not Job.objects.get(pk=warm_run).cold_start_seconds
            row = next(w for w in console_state()["workers"] if w["name"] == "modal-6")
            kept = Worker.objects.get(name="modal-6").warm_seconds
            assert row["warm_minutes"] == round(kept / 60, 1) and row["warm_cost"] == round(kept / 1000, 2)

            QueueSettings.get().set_warm(0)
            # The first beat that hears "0" still reports the time warm up to then, at the next.
            beats_pass("modal-6", 2)
            kept = Worker.objects.get(name="modal-6").warm_seconds
            beats_pass("modal-6", 3)  # longer than the front's idle timeout
            assert Worker.objects.get(name="modal-6").warm_seconds == kept, "no warm cost once it is off"
            with live_app.ws(alice, "001") as ws:
                cold_run = post_prompt(alice, live_app, "001", prompt(22))
                seen = receive_until(ws, finished(cold_run))
            assert [m for m in seen if m["type"] == "workshop.gpu_starting"], "it scaled to zero, and starts cold again"
