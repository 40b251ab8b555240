"""One run, end to end: browser API → Job → dispatcher → RQ → gpuworker → ComfyUI double →
outputs in the workspace → completed, with the live websocket messages on the way."""

import io
import json
import time

import pytest
import websockets
from PIL import Image

from jobs.models import Job, JobState, QueueSettings
from tests.conftest import WORKFLOWS, wait_until

pytestmark = pytest.mark.e2e

SIMPLE = json.loads((WORKFLOWS / "simple.json").read_text())


def receive_until(ws, predicate, timeout=30.0):
    """Messages from a ComfyUI websocket until one matches; returns all of them."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching message in {timeout} s; got {[m.get('type') for m in seen]}")
        raw = ws.recv(timeout=left)
        if isinstance(raw, bytes):
            continue
        message = json.loads(raw)
        seen.append(message)
        if predicate(message):
            return seen


def finished(prompt_id):
    def check(message):
        if message["type"] == "execution_error" and message["data"].get("prompt_id") == prompt_id:
            raise AssertionError(f"the run failed: {message['data'].get('exception_message')}")
        return message["type"] == "execution_success" and message["data"].get("prompt_id") == prompt_id

    return check


def post_prompt(session, app, slug, prompt, client_id="test-client"):
    answer = session.post(
        f"{app.url}/user/{slug}/api/prompt", json={"prompt": prompt, "client_id": client_id}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"prompt_id", "number", "node_errors"}
    return body["prompt_id"]


def test_one_run_end_to_end(live_app, participants, double):
    double.steps, double.step_time = 4, 0.05
    with live_app.gpu_worker(double.url):
        alice = live_app.login("user001")
        with live_app.ws(alice, "001") as ws:
            hello = json.loads(ws.recv(timeout=10))
            assert hello["type"] == "status" and hello["data"]["sid"] == "test-client"

            first = post_prompt(alice, live_app, "001", SIMPLE)
            second_prompt = json.loads(json.dumps(SIMPLE))
            second_prompt["1"]["inputs"]["color"] = 255  # a different prompt: no cache hit
            second = post_prompt(alice, live_app, "001", second_prompt)

            seen = receive_until(ws, finished(first)) + receive_until(ws, finished(second))

    types = [m["type"] for m in seen]
    positions = [
        entry
        for m in seen
        if m["type"] == "workshop.queue"
        for entry in m["data"]["waiting"]
        if entry["prompt_id"] == second
    ]
    assert positions and positions[0]["position"] == 1 and positions[0]["of"] >= 1, "the waiting job was told its place"
    assert any(m["type"] == "executing" and m["data"].get("prompt_id") == first for m in seen)
    assert any(m["type"] == "progress" and m["data"].get("prompt_id") == first for m in seen)
    assert types.index("execution_success") > types.index("executing")
    states = [m for m in seen if m["type"] == "progress_state" and m["data"].get("prompt_id") == first]
    assert states, "ComfyUI's progress_state reaches the browser"
    assert {n["prompt_id"] for m in states for n in m["data"]["nodes"].values()} == {first}, "nested ids are the job's"
    final = [m for m in states][-1]["data"]["nodes"]
    assert all(n["state"] == "finished" for n in final.values()), "the last frame says every node finished"
    end = [m["type"] for m in seen if m["data"].get("prompt_id") == first][-2:]
    assert end == ["execution_success", "executing"], "ComfyUI's own end, closing `executing` included"

    job = Job.objects.get(pk=first)
    assert job.state == JobState.COMPLETED and job.worker.name == "gpu-1" and job.gpu_seconds is not None
    history = alice.get(f"{live_app.url}/user/001/api/history/{first}", timeout=10).json()
    images = history[first]["outputs"]["3"]["images"]
    assert history[first]["status"] == {
        "status_str": "success",
        "completed": True,
        "messages": history[first]["status"]["messages"],
    }
    image = images[0]
    assert image["type"] == "output"
    stored = participants[0].file_path("output", image["filename"], image["subfolder"])
    assert stored.is_file(), "the output PNG is in user001's workspace"

    view = alice.get(
        f"{live_app.url}/user/001/api/view",
        params={"filename": image["filename"], "subfolder": image["subfolder"], "type": "output"},
        timeout=10,
    )
    assert view.status_code == 200 and view.headers["Content-Type"] == "image/png"
    picture = Image.open(io.BytesIO(view.content)).convert("RGB")
    assert picture.size == (256, 256) and picture.getpixel((0, 0)) == (0, 255, 255), "red inverted is cyan"

    # Another participant can see neither the job nor the file.
    bob = live_app.login("user002")
    assert bob.get(f"{live_app.url}/user/001/api/history/{first}", timeout=10).status_code == 404
    assert bob.get(f"{live_app.url}/user/002/api/history/{first}", timeout=10).json() == {}
    assert (
        bob.get(
            f"{live_app.url}/user/001/api/view", params={"filename": image["filename"], "type": "output"}, timeout=10
        ).status_code
        == 404
    )
    assert not participants[1].file_path("output", image["filename"], image["subfolder"]).exists()
    with pytest.raises(websockets.exceptions.InvalidStatus):
        with live_app.ws(bob, "001") as ws:
            ws.recv(timeout=5)


def test_cancel_of_running_job_reaches_comfyui_within_two_seconds(live_app, participants, double):
    double.steps, double.step_time = 400, 0.05  # 20 s per node unless interrupted
    with live_app.gpu_worker(double.url):
        alice = live_app.login("user001")
        with live_app.ws(alice, "001") as ws:
            prompt_id = post_prompt(alice, live_app, "001", SIMPLE)
            receive_until(ws, lambda m: m["type"] == "progress" and m["data"].get("prompt_id") == prompt_id)
            asked = time.monotonic()
            answer = alice.post(f"{live_app.url}/user/001/api/interrupt", json={"prompt_id": prompt_id}, timeout=10)
            assert answer.status_code == 200
            assert double.wait_interrupt(timeout=5), "ComfyUI got no /interrupt"
            latency = time.monotonic() - asked
            receive_until(ws, lambda m: m["type"] == "execution_interrupted" and m["data"]["prompt_id"] == prompt_id)
    assert latency < 2.0, f"interrupt reached ComfyUI after {latency:.2f} s"
    job = wait_until(lambda: Job.objects.filter(pk=prompt_id, state=JobState.CANCELLED).first(), message="cancelled")
    assert job.finished_at is not None


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("fifo", ["001", "001", "001", "001", "002", "002", "003"]),
        ("round_robin", ["001", "002", "003", "001", "002", "001", "001"]),
        ("fair_share", ["003", "002", "002", "001", "001", "001", "001"]),
    ],
)
def test_policies_decide_start_order_through_rq(live_app, participants, double, policy, expected):
    """Three participants with uneven loads, queued while no GPU is online, then one worker."""
    QueueSettings.objects.update_or_create(pk=1, defaults={"policy": policy, "max_waiting_per_user": 10})
    if policy == "fair_share":
        # Earlier today user001 rendered a long video and user002 a short one; user003 nothing.
        from django.utils import timezone

        for workspace, seconds in ((participants[0], 300.0), (participants[1], 20.0)):
            Job.objects.create(
                workspace=workspace,
                prompt={},
                state=JobState.COMPLETED,
                gpu_seconds=seconds,
                started_at=timezone.now(),
                finished_at=timezone.now(),
            )
    sessions = {slug: live_app.login(f"user{slug}") for slug in ("001", "002", "003")}
    submitted = []
    for slug, count in (("001", 4), ("002", 2), ("003", 1)):
        for n in range(count):
            prompt = json.loads(json.dumps(SIMPLE))
            prompt["1"]["inputs"]["color"] = int(slug) * 1000 + n
            submitted.append(post_prompt(sessions[slug], live_app, slug, prompt))
    assert Job.objects.filter(state=JobState.QUEUED).count() == 7, "no worker online: everything waits"

    with live_app.gpu_worker(double.url):
        wait_until(
            lambda: Job.objects.filter(pk__in=submitted, state=JobState.COMPLETED).count() == 7,
            timeout=60,
            message="all seven jobs to complete",
        )
    started = Job.objects.filter(pk__in=submitted).order_by("started_at")
    assert [job.workspace.slug for job in started] == expected


def test_input_files_travel_from_the_workspace_to_comfyui(live_app, participants, double):
    """A LoadImage input in user001's workspace reaches the GPU host and comes back processed."""
    from PIL import Image as PILImage

    PILImage.new("RGB", (32, 16), (10, 20, 30)).save(participants[0].file_path("input", "mine.png"))
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "mine.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "from_input"}},
    }
    with live_app.gpu_worker(double.url):
        alice = live_app.login("user001")
        with live_app.ws(alice, "001") as ws:
            prompt_id = post_prompt(alice, live_app, "001", prompt)
            receive_until(ws, finished(prompt_id))
        missing = alice.post(
            f"{live_app.url}/user/001/api/prompt",
            json={"prompt": {**prompt, "1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}}}},
            timeout=10,
        )
    # Refused on the LoadImage node itself, as ComfyUI's own check words it.
    assert missing.status_code == 400
    assert missing.json()["node_errors"]["1"]["errors"][0]["details"] == "image - Invalid image file: nope.png"
    assert double.uploads[-1]["name"] == "mine.png"
    output = Job.objects.get(pk=prompt_id).outputs["3"]["images"][0]
    picture = PILImage.open(participants[0].file_path("output", output["filename"], output["subfolder"]))
    assert picture.size == (32, 16) and picture.convert("RGB").getpixel((0, 0)) == (245, 235, 225)


def test_someone_elses_queue_change_sends_no_status_to_other_browsers(live_app, participants):
    """ComfyUI's UI re-reads queue and history on every `status`: other workspaces get only the
    changed queue overview, never a `status` of their own for someone else's job."""
    alice, bob = live_app.login("user001"), live_app.login("user002")
    with live_app.ws(alice, "001", "a") as alice_ws, live_app.ws(bob, "002", "b") as bob_ws:
        for ws in (alice_ws, bob_ws):  # the connect snapshot: status, then workshop.queue
            assert [json.loads(ws.recv(timeout=10))["type"] for _ in range(2)] == ["status", "workshop.queue"]
        prompt_id = post_prompt(alice, live_app, "001", SIMPLE, client_id="a")
        mine = receive_until(alice_ws, lambda m: m["type"] == "workshop.queue")
        theirs = receive_until(bob_ws, lambda m: m["type"] == "workshop.queue")
    assert [m["type"] for m in mine] == ["status", "workshop.queue"]
    assert mine[0]["data"]["status"]["exec_info"]["queue_remaining"] == 1
    assert mine[1]["data"]["waiting"][0]["prompt_id"] == prompt_id
    assert mine[1]["data"]["workers_online"] == 0
    assert [m["type"] for m in theirs] == ["workshop.queue"]
    assert theirs[0]["data"]["waiting"] == [] and theirs[0]["data"]["total_waiting"] == 1


def test_live_previews_reach_the_participants_browser(live_app, participants, double):
    """With ComfyUI's previews on, the sampler's preview frames arrive as ComfyUI sends them."""
    import struct

    double.previews, double.steps, double.step_time = True, 6, 0.1
    with live_app.gpu_worker(double.url):
        alice, bob = live_app.login("user001"), live_app.login("user002")
        with live_app.ws(alice, "001") as ws, live_app.ws(bob, "002", "bob") as bob_ws:
            post_prompt(alice, live_app, "001", SIMPLE)
            frames = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                raw = ws.recv(timeout=deadline - time.monotonic())
                if isinstance(raw, bytes):
                    frames.append(raw)
                elif json.loads(raw)["type"] == "execution_success":
                    break
            bob_binary = []
            while True:
                try:
                    raw = bob_ws.recv(timeout=0.5)
                except TimeoutError:
                    break
                bob_binary += [raw] if isinstance(raw, bytes) else []
    assert frames, "no preview reached user001"
    event, image_format = struct.unpack(">II", frames[0][:8])
    assert (event, image_format) == (1, 2) and frames[0][8:12] == b"\x89PNG"
    assert len(frames) < 3 * 6, "previews are throttled (the double sent one per step: 18)"
    assert bob_binary == [], "previews go to their own workspace only"


def test_custom_node_frontend_code_reaches_browsers_only_once_trusted(live_app, participants, double):
    """A custom node's JS on the GPU host (and what it imports) runs in every browser with the
    participants' sessions: it is served only after the instructor trusted exactly those files,
    never to anonymous callers. Example workflows (data) are served from the start."""
    import requests

    from jobs.models import Worker

    def listed(session, slug="001"):
        return session.get(f"{live_app.url}/user/{slug}/api/extensions", timeout=10).json()

    with live_app.gpu_worker(double.url):
        alice, bob = live_app.login("user001"), live_app.login("user002")
        worker = wait_until(
            lambda: Worker.objects.filter(extension_files__path="/extensions/workshop-demo/demo.js").first(),
            message="the worker to publish its extension files",
        )
        before = listed(alice)
        blocked = bob.get(f"{live_app.url}/user/002/extensions/workshop-demo/demo.js", timeout=10)
        templates = bob.get(f"{live_app.url}/user/002/api/workflow_templates", timeout=10).json()
        example = bob.get(f"{live_app.url}/user/002/api/workflow_templates/workshop-demo/demo_example.json", timeout=10)
        object_info = alice.get(f"{live_app.url}/user/001/api/object_info", timeout=10).json()

        trusted = worker.trust_extensions()
        after = listed(alice)
        demo = bob.get(f"{live_app.url}/user/002/extensions/workshop-demo/demo.js", timeout=10)
        helper = bob.get(f"{live_app.url}/user/002/extensions/workshop-demo/lib/helper.js", timeout=10)
        anonymous = requests.get(f"{live_app.url}/user/002/extensions/workshop-demo/demo.js", timeout=10)
    assert "/extensions/workshop-demo/demo.js" not in before and blocked.status_code == 404
    assert "EmptyImage" in object_info, "until then the UI works, without that code"
    assert templates == {"workshop-demo": ["demo_example"]}
    assert example.status_code == 200 and example.json()["extra"] == {"demo": True}
    assert set(trusted) >= {"/extensions/workshop-demo/demo.js", "/extensions/workshop-demo/lib/helper.js"}
    assert "/extensions/workshop-demo/demo.js" in after
    assert after.count("/extensions/core/groupNode.js") == 1, "core files come from the pinned frontend"
    assert demo.status_code == 200 and demo.headers["Content-Type"].startswith("text/javascript")
    assert "registerExtension" in demo.text
    assert helper.status_code == 200 and "hello" in helper.text
    assert anonymous.status_code in (302, 401, 404) and "registerExtension" not in anonymous.text


def test_instructor_run_now_interrupts_and_the_interrupted_job_runs_again(live_app, participants, double):
    """'Run now' starts the demo at once; the participant's interrupted job comes back first."""
    from django.test import Client

    double.steps, double.step_time = 200, 0.05  # ten seconds per node unless interrupted
    with live_app.gpu_worker(double.url):
        alice = live_app.login("user001")
        with live_app.ws(alice, "001") as ws:
            victim = post_prompt(alice, live_app, "001", SIMPLE)
            receive_until(ws, lambda m: m["type"] == "progress" and m["data"].get("prompt_id") == victim)
            demo_prompt = json.loads(json.dumps(SIMPLE))
            demo_prompt["1"]["inputs"]["color"] = 0x00FF00
            demo = Job.submit(participants[2], demo_prompt)
            double.steps, double.step_time = 2, 0.01  # the rest runs quickly

            instructor = Client()
            instructor.login(username="instructor", password="pw")
            answer = instructor.post("/admin/jobs/job/", {"action": "run_now", "_selected_action": [str(demo.pk)]})
            assert answer.status_code == 302
            told = receive_until(ws, lambda m: m["type"] == "workshop.notice" and m["data"]["prompt_id"] == victim)
            assert told[-1]["data"]["state"] == "queued" and "demo" in told[-1]["data"]["text"]
            receive_until(ws, finished(victim), timeout=30)
    victim_job, demo_job = Job.objects.get(pk=victim), Job.objects.get(pk=demo.pk)
    assert demo_job.state == victim_job.state == JobState.COMPLETED
    assert victim_job.run == 2, "the interrupted job ran again"
    assert (victim_job.interruptions, victim_job.attempts) == (1, 0), "an interrupt is not a crash attempt"
    assert demo_job.started_at < victim_job.started_at, "the demo ran first, then the interrupted job"
    assert double.interrupts, "the interrupt reached ComfyUI"


def test_a_browser_reconnecting_mid_run_gets_the_running_node_at_once(live_app, participants, double):
    double.steps, double.step_time = 200, 0.05
    with live_app.gpu_worker(double.url):
        alice = live_app.login("user001")
        with live_app.ws(alice, "001") as ws:
            prompt_id = post_prompt(alice, live_app, "001", SIMPLE)
            receive_until(ws, lambda m: m["type"] == "progress" and m["data"].get("prompt_id") == prompt_id)
        wait_until(lambda: Job.objects.get(pk=prompt_id).progress.get("node"), message="progress stored")
        with live_app.ws(alice, "001", "reloaded-tab") as ws:  # the page was reloaded
            first = [json.loads(ws.recv(timeout=10)) for _ in range(4)]
            alice.post(f"{live_app.url}/user/001/api/interrupt", json={"prompt_id": prompt_id}, timeout=10)
    assert [m["type"] for m in first] == ["status", "workshop.queue", "executing", "progress"]
    assert first[0]["data"]["sid"] == "reloaded-tab"
    assert first[1]["data"]["running"][0]["prompt_id"] == prompt_id
    assert first[2]["data"]["prompt_id"] == prompt_id and first[2]["data"]["node"] == first[3]["data"]["node"]


def test_websocket_answers_comfyuis_feature_flags(live_app, participants):
    alice = live_app.login("user001")
    with live_app.ws(alice, "001", "tab%201") as ws:
        hello = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        answer = receive_until(ws, lambda m: m["type"] == "feature_flags")[-1]
    assert hello["data"]["sid"] == "tab 1", "the clientId is read like a query parameter"
    assert answer["data"]["supports_preview_metadata"] is False
    assert answer["data"]["max_upload_size"] > 0


def test_a_tab_that_was_away_gets_its_runs_end_once_when_it_reconnects(live_app, participants, double):
    """The app or Redis restarting while a run ends: the tab that queued it still hears of it."""
    double.steps, double.step_time = 2, 0.01
    with live_app.gpu_worker(double.url):
        alice = live_app.login("user001")
        prompt_id = post_prompt(alice, live_app, "001", SIMPLE, client_id="tab-away")  # no socket open
        wait_until(lambda: Job.objects.filter(pk=prompt_id, state=JobState.COMPLETED).exists(), message="completed")
        with live_app.ws(alice, "001", client_id="tab-away") as ws:
            seen = receive_until(ws, finished(prompt_id), timeout=10)
            assert [m["type"] for m in seen].count("execution_success") == 1
        with live_app.ws(alice, "001", client_id="tab-away") as ws:
            # The socket answers feature_flags after everything it says on connecting.
            ws.send(json.dumps({"type": "feature_flags", "data": {}}))
            again = receive_until(ws, lambda m: m["type"] == "feature_flags", timeout=10)
    assert not [m for m in again if m["type"] == "execution_success"], "told once, not at every reconnect"
