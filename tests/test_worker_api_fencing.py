"""A worker token reaches only its current run, and an untrusted worker's frontend code never reaches a browser."""

from django.test import Client

from jobs.models import Job
from tests.conftest import post_json, worker_with_token

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def _publish(client, worker, files, listed=None):
    for path, body in files.items():
        client.put(
            f"/api/worker/catalog/files?path={path}", data=body, content_type="text/javascript", **worker.headers
        )
    catalog = {
        "object_info": {"Marker": {"input": {}, "output": [], "name": worker.name}},
        "extensions": listed if listed is not None else list(files),
    }
    assert post_json(client, "/api/worker/catalog", catalog, **worker.headers).status_code == 200


def test_a_worker_reads_and_ends_only_the_run_it_has_started(client, participants):
    from jobs.models import JobState

    workspace = participants[0]
    workspace.file_path("input", "cat.png").write_bytes(b"private cat")
    gpu, other = worker_with_token("gpu-1"), worker_with_token("gpu-2")
    job = Job.submit(workspace, SIMPLE, inputs=[{"filename": "cat.png", "subfolder": "", "type": "input"}])
    assert job.mark_dispatched(gpu)  # waiting in gpu-1's RQ queue, not started
    inputs = f"/api/worker/jobs/{job.pk}/inputs?filename=cat.png&type=input&run={job.run}"
    finish = f"/api/worker/jobs/{job.pk}/finish"
    for worker in (gpu, other):
        assert client.get(inputs, **worker.headers).status_code == 409
        failed = post_json(
            client, finish, {"run": job.run, "status": "error", "error": {"message": "x"}}, **worker.headers
        )
        assert failed.status_code == 409
    assert Job.objects.get(pk=job.pk).state == JobState.DISPATCHED
    assert job.mark_running(gpu, job.run)
    assert client.get(inputs, **other.headers).status_code == 409
    assert post_json(client, finish, {"run": job.run, "status": "error"}, **other.headers).status_code == 409
    read = client.get(inputs, **gpu.headers)
    assert read.status_code == 200 and b"".join(read.streaming_content) == b"private cat"
    assert Job.objects.get(pk=job.pk).state == JobState.RUNNING


def test_frontend_code_of_an_untrusted_worker_never_reaches_a_browser(alice, client, participants):
    trusted, rogue = worker_with_token("gpu-1"), worker_with_token("gpu-2")
    _publish(client, trusted, {})
    _publish(client, rogue, {"/extensions/evil/evil.js": b"steal(document.cookie)"})
    # The rogue worker's catalog is newer, yet the served one stays that of the trusted worker.
    assert "Marker" in alice.get("/user/001/api/object_info").json()
    assert alice.get("/user/001/api/object_info").json()["Marker"]["name"] == "gpu-1"
    assert "/extensions/evil/evil.js" not in alice.get("/user/001/api/extensions").json()
    assert alice.get("/user/001/extensions/evil/evil.js").status_code == 404

    rogue.trust_extensions()
    assert alice.get("/user/001/api/object_info").json()["Marker"]["name"] == "gpu-2"
    assert "/extensions/evil/evil.js" in alice.get("/user/001/api/extensions").json()
    assert alice.get("/user/001/extensions/evil/evil.js").content == b"steal(document.cookie)"
    # Anonymous callers never get custom-node code.
    assert Client().get("/user/001/extensions/evil/evil.js").status_code in (302, 401, 404)

    # Changed code is not the code that was trusted: back to the trusted worker's catalog.
    _publish(client, rogue, {"/extensions/evil/evil.js": b"worse()"})
    assert alice.get("/user/001/api/object_info").json()["Marker"]["name"] == "gpu-1"
    assert alice.get("/user/001/extensions/evil/evil.js").status_code == 404


def test_with_no_trusted_catalog_the_ui_works_without_the_code(alice, client, participants):
    only = worker_with_token("gpu-1")
    _publish(client, only, {"/extensions/pack/x.js": b"x()"})
    assert "Marker" in alice.get("/user/001/api/object_info").json()
    assert "/extensions/pack/x.js" not in alice.get("/user/001/api/extensions").json()
    assert alice.get("/user/001/extensions/pack/x.js").status_code == 404


def test_the_instructor_trusts_code_after_seeing_its_files_and_hashes(client, participants):
    import hashlib

    from django.contrib.admin.models import LogEntry

    gpu = worker_with_token("gpu-1")
    _publish(client, gpu, {"/extensions/pack/x.js": b"x()"})
    client.login(username="instructor", password="pw")
    shown = client.post("/admin/jobs/worker/", {"action": "trust_extensions", "_selected_action": [gpu.pk]})
    digest = hashlib.sha256(b"x()").hexdigest()
    assert (
        shown.status_code == 200
        and digest in shown.content.decode()
        and "/extensions/pack/x.js" in shown.content.decode()
    )
    assert not gpu.refresh_trust(), "showing the files trusts nothing"
    client.post("/admin/jobs/worker/", {"action": "trust_extensions", "_selected_action": [gpu.pk], "confirm": "yes"})
    gpu.refresh_from_db()
    assert gpu.trusted_extensions == {"/extensions/pack/x.js": digest}
    assert digest[:12] in LogEntry.objects.get().change_message
