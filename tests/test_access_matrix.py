"""Every route of the URL configuration, every method, every kind of caller: the owner, another
participant, an anonymous caller, staff, the GPU worker that holds the run and one that does not.
Generated from the URL configuration, so a route added later is tried too. Nothing of the
owner's leaks to anybody else, and nothing of the owner's changes unless the owner does it."""

import hashlib
import json
import re

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404

from jobs.models import Job, JobState, Worker

METHODS = ("get", "post", "put", "patch", "delete")
SECRET = "SECRET-OF-USER001"
# Routes anybody may call: the frontend's public code, the login page, the health check.
PUBLIC = {
    "asset",
    "root_asset",
    "without_slash",
    "health",
    "home",
    "LoginView",
    "PasswordChangeView",
    "PasswordChangeDoneView",
    "LogoutView",
    "serve",
    "login",
}


def _routes():
    def walk(patterns, prefix=""):
        for pattern in patterns:
            regex = pattern.pattern.regex.pattern.lstrip("^")
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + regex)
            else:
                yield prefix + regex, pattern

    return list(walk(get_resolver().url_patterns))


def _values(job_id: str) -> dict:
    return {
        "slug": "001",
        "job_id": job_id,
        "prompt_id": job_id,
        "file": "workflows/secret.json",
        "dest": "workflows/moved.json",
        "node_class": "LoadImage",
        "folder": "checkpoints",
        "subgraph_id": "sg",
        "setting_id": "Workshop.Secret",
        "module": "pack",
        "name": "example.json",
        "folder_type": "input",
        "path": "extensions/pack/x.js",
        "object_id": "1",
        "app_label": "jobs",
        "queue_index": "0",
        "key": "w",
        "result_id": "r",
        "token": "t",
        "scheduler_index": "0",
        "connection_index": "0",
        "scheduler_name": "s",
        "cron_job_name": "c",
        "content_type_id": "1",
        "model_name": "job",
    }


def _sample(regex: str, values: dict) -> str:
    """A concrete path for a route's regex: named groups take the values above, optional
    groups are left out, alternatives take their first branch."""

    def group_end(text, start):
        depth = 0
        for i in range(start, len(text)):
            if text[i] == "\\":
                continue
            if text[i] == "(" and (i == 0 or text[i - 1] != "\\"):
                depth += 1
            elif text[i] == ")" and text[i - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return i
        raise ValueError(regex)

    out, i = [], 0
    while i < len(regex):
        char = regex[i]
        if char == "\\" and i + 1 < len(regex):
            if regex[i + 1] == "Z":
                i += 2
                continue
            out.append(regex[i + 1])
            i += 2
        elif char == "(":
            end = group_end(regex, i)
            body = regex[i + 1 : end]
            optional = regex[end + 1 : end + 2] == "?"
            named = re.match(r"\?P<(\w+)>", body)
            if named:
                out.append(values.get(named.group(1), "x"))
            elif not optional:
                out.append(_sample(body.removeprefix("?:").split("|")[0], values))
            i = end + (2 if optional else 1)
        elif char in "^$":
            i += 1
        elif char == "?" and out:
            out.pop()
            i += 1
        else:
            out.append(char)
            i += 1
    return "/" + "".join(out)


def _snapshot(workspace) -> dict:
    files = {
        str(p.relative_to(workspace.root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in workspace.root.rglob("*")
        if p.is_file()
    }
    jobs = sorted(Job.objects.filter(workspace=workspace).values_list("id", "state", "hidden_from_history", "priority"))
    return {"files": files, "jobs": [tuple(map(str, row)) for row in jobs]}


@pytest.fixture
def world(participants, settings):
    owner = participants[0]
    (owner.root / "input" / "secret-of-user001.png").write_bytes(b"\x89PNG" + SECRET.encode())
    (owner.root / "output" / "result-of-user001.png").write_bytes(b"\x89PNG" + SECRET.encode())
    (owner.root / "userdata" / "workflows").mkdir(parents=True)
    (owner.root / "userdata" / "workflows" / "secret.json").write_text(json.dumps({"note": SECRET}))
    (owner.root / "userdata" / "comfy.settings.json").write_text(json.dumps({"Workshop.Secret": SECRET}))
    holder, holder_token = Worker.create_with_token("gpu-holder")
    other, other_token = Worker.create_with_token("gpu-other")
    for worker in (holder, other):
        worker.beat(status="idle")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "secret-of-user001.png", "note": SECRET}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": SECRET}},
    }
    running = Job.submit(
        owner, prompt, inputs=[{"filename": "secret-of-user001.png", "subfolder": "", "type": "input"}]
    )
    assert running.mark_dispatched(holder) and running.mark_running(holder, running.run)
    waiting = Job.submit(owner, prompt)
    return {
        "owner": owner,
        "running": running,
        "waiting": waiting,
        "tokens": {"holder": holder_token, "other": other_token},
    }


def _callers(world):
    def session(username):
        client = Client()
        client.login(username=username, password="pw")
        return client, {}

    worker = {name: (Client(), {"HTTP_AUTHORIZATION": f"Bearer {token}"}) for name, token in world["tokens"].items()}
    return {
        "other participant": session("user002"),
        "anonymous": (Client(), {}),
        "worker without the run": worker["other"],
        "worker holding the run": worker["holder"],
        "owner": session("user001"),
        "staff": session("instructor"),
    }


def _requests(world):
    values = _values(str(world["running"].pk))
    tried, skipped = [], []
    for regex, pattern in _routes():
        path = _sample(regex, values)
        if pattern.callback.__name__ in ("job_input",):
            path += f"?filename=secret-of-user001.png&type=input&run={world['running'].run}"
        elif "/api/worker/" in path:
            path += f"?run={world['running'].run}"
        elif pattern.callback.__name__ == "view":
            path += "?filename=secret-of-user001.png&type=input"
        try:
            match = resolve(path.split("?")[0])
        except Resolver404:
            skipped.append(regex)
            continue
        if _name(match.func) == "LogoutView":
            continue  # it would end the very sessions this test calls with
        tried.append((path, match.func, pattern))
    return tried, skipped


def _call(client, method, path, headers):
    if method == "get":
        return client.get(path, HTTP_SEC_FETCH_SITE="same-origin", **headers)
    body = json.dumps({"run": 1, "status": "error", "clear": True, "delete": [], "job_ids": ["x"]})
    return getattr(client, method)(
        path, data=body, content_type="application/json", HTTP_SEC_FETCH_SITE="same-origin", **headers
    )


def _body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("latin-1")
    return response.content.decode("latin-1")


def _name(func) -> str:
    return getattr(func, "view_class", func).__name__


def test_every_route_and_method_leaks_and_changes_nothing_for_anyone_but_the_owner(world):
    tried, skipped = _requests(world)
    assert len(tried) > 180 and len(skipped) < 10, skipped
    owner, callers = world["owner"], _callers(world)
    before = _snapshot(owner)
    leaks, changes, errors, open_doors = [], [], [], []
    running = str(world["running"].pk)
    for who in ("other participant", "anonymous", "worker without the run"):
        client, headers = callers[who]
        for path, func, _ in tried:
            for method in METHODS:
                response = _call(client, method, path, headers)
                text = _body(response)
                if response.status_code >= 500:
                    errors.append((who, method, path, response.status_code))
                if SECRET in text or "secret-of-user001" in text or running in text:
                    leaks.append((who, method, path))
                protected = _name(func) not in PUBLIC
                if (
                    protected
                    and response.status_code < 300
                    and path.startswith(("/user/", "/api/worker/jobs", "/admin/", "/metrics"))
                ):
                    open_doors.append((who, method, path, response.status_code))
                if _snapshot(owner) != before:
                    changes.append((who, method, path))
                    before = _snapshot(owner)
    assert errors == [] and leaks == [] and open_doors == [] and changes == []

    # The worker that holds the run reaches that run only (and never the owner's workspace API).
    client, headers = callers["worker holding the run"]
    for path, func, _ in tried:
        for method in METHODS:
            response = _call(client, method, path, headers)
            assert response.status_code < 500, (method, path)
            if path.startswith("/user/"):
                assert response.status_code >= 300 or _name(func) in PUBLIC, (method, path)
    assert Job.objects.get(pk=world["waiting"].pk).state == JobState.QUEUED, "the waiting job stays untouched"

    # The owner and staff may do anything; nothing they try answers a 5xx.
    for who in ("owner", "staff"):
        client, headers = callers[who]
        for path, _, _ in tried:
            for method in METHODS:
                response = _call(client, method, path, headers)
                assert response.status_code < 500, (who, method, path, _body(response)[:300])
