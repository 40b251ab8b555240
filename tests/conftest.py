"""Shared fixtures: the real PostgreSQL test database, Redis DB 13, and for end-to-end tests a
Daphne server, GPU worker processes and the ComfyUI protocol double."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import requests
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from accounts.models import Workspace
from jobs.models import Worker

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "tests" / "workflows"


def wait_until(predicate, timeout=15.0, interval=0.05, message="condition"):
    """Poll something that has no event to await (a row in another process's database)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def own_data_dir(settings, tmp_path):
    """Each test's workspaces and credential sheet live in a folder of its own."""
    settings.WORKSHOP_DATA_DIR = tmp_path / "data"
    settings.CREDENTIALS_DIR = tmp_path / "sheet"


@pytest.fixture(scope="session", autouse=True)
def test_database_dropped_at_the_end(django_db_setup, django_db_blocker):
    """The test database is dropped when the run ends, even when a process a test started (a
    Daphne, a thread's connection) still held a session on it: pytest-django's teardown would
    only warn, and leave the database behind."""
    yield
    import psycopg
    from django.db import connection, connections

    db = connection.settings_dict
    connections.close_all()
    # From the maintenance database: the test one's own connection may be gone or pooled.
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"] or "postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [db["NAME"]])


@pytest.fixture(autouse=True)
def clean_redis(settings):
    """Each test starts with an empty Redis DB of the tests' own (never the shared DB 0)."""
    conn = redis.Redis.from_url(settings.REDIS_URL)
    assert conn.connection_pool.connection_kwargs.get("db", 0) != 0, "tests must not use Redis DB 0"
    conn.flushdb()
    yield conn
    conn.flushdb()


def _test_database_url(settings) -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(settings, **extra) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="workshop.settings_test",
        DATABASE_URL=_test_database_url(settings),
        REDIS_URL=settings.REDIS_URL,
        WORKSHOP_DATA_DIR=str(settings.WORKSHOP_DATA_DIR),
        WORKSHOP_CREDENTIALS_DIR=str(settings.CREDENTIALS_DIR),
        LEASE_SECONDS=str(settings.LEASE_SECONDS),
        POST_CHANGE_IN_BACKGROUND="true",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@contextmanager
def process(cmd, env, log_path):
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@pytest.fixture
def double():
    from scripts.comfyui_double import ComfyUIDouble

    with ComfyUIDouble(step_time=0.02, steps=3) as d:
        yield d


class LiveApp:
    def __init__(self, url, settings, tmp_path, pid=None):
        self.pid = pid
        self.url = url
        self.settings = settings
        self.tmp_path = tmp_path

    def login(self, username, password="pw") -> requests.Session:
        """Log in through the real login form, like a participant's browser."""
        session = requests.Session()
        page = session.get(f"{self.url}/accounts/login/", timeout=10)
        page.raise_for_status()
        answer = session.post(
            f"{self.url}/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": f"{self.url}/accounts/login/"},
            timeout=10,
            allow_redirects=False,
        )
        assert answer.status_code == 302, f"login of {username} failed: {answer.status_code}"
        return session

    def login_fails(self, username, password) -> None:
        """A wrong password through the real login form (a guesser at the same address)."""
        session = requests.Session()
        session.get(f"{self.url}/accounts/login/", timeout=10).raise_for_status()
        answer = session.post(
            f"{self.url}/accounts/login/",
            timeout=10,
            allow_redirects=False,
            data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": f"{self.url}/accounts/login/"},
        )
        assert answer.status_code == 200, "a wrong password does not log in"

    def ws(self, session, slug, client_id="test-client"):
        from websockets.sync.client import connect

        cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
        return connect(
            f"{self.url.replace('http', 'ws', 1)}/user/{slug}/ws?clientId={client_id}",
            additional_headers={"Cookie": cookie, "Origin": self.url},
            open_timeout=10,
        )

    @contextmanager
    def gpu_worker(self, comfyui_url=None, name="gpu-1", config=None, env=None, online=True):
        """A real `python -m gpuworker` process (an RQ worker) next to the ComfyUI double, or
        configured by a provider file (`config`: its TOML text). With online=False it is not
        waited for (a worker whose GPU refuses it never comes online)."""
        from jobs.models import Worker

        _, token = Worker.create_with_token(name)
        cmd = [sys.executable, "-m", "gpuworker", "--redis", self.settings.REDIS_URL, "--app", self.url, "--name", name]
        if comfyui_url:
            cmd += ["--comfyui", comfyui_url]
        if config is not None:
            path = self.tmp_path / f"{name}.toml"
            path.write_text(config)
            cmd += ["--config", str(path)]
        log = self.tmp_path / f"gpuworker-{name}.log"
        with process(cmd, child_env(self.settings, GPUWORKER_TOKEN=token, **(env or {})), log) as proc:
            proc.log_path = log
            try:
                if online:
                    wait_until(
                        lambda: proc.poll() is not None or Worker.objects.get(name=name).is_online,
                        timeout=30,
                        message=f"worker {name} to register",
                    )
                    assert proc.poll() is None, f"gpuworker exited: {log.read_text()[-3000:]}"
                yield proc
            except BaseException:
                print(f"--- {log} ---\n{log.read_text()[-5000:]}")
                raise


@pytest.fixture
def live_app(transactional_db, settings, tmp_path):
    """Daphne serving the real ASGI app (HTTP + websockets) on the test database."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "daphne.log"
    cmd = [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "--websocket_connect_timeout",
        "30",
        "workshop.asgi:application",
    ]  # as scripts/run and the app image start it
    with process(cmd, child_env(settings), log) as proc:

        def up():
            if proc.poll() is not None:
                raise AssertionError(f"daphne exited: {log.read_text()[-3000:]}")
            try:
                return requests.get(f"{url}/health", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, timeout=30, message="daphne to start")
        try:
            yield LiveApp(url, settings, tmp_path, pid=proc.pid)
        except BaseException:
            print(f"--- daphne log ---\n{log.read_text()[-5000:]}")
            raise


def class_of(count: int) -> list:
    """user001… with workspaces, password 'pw', and an instructor."""
    User = get_user_model()
    made = []
    for n in range(1, count + 1):
        user = User.objects.create_user(f"user{n:03d}", password="pw")
        workspace = Workspace.objects.create(owner=user, slug=f"{n:03d}")
        workspace.ensure_folders()
        made.append(workspace)
    User.objects.create_user("instructor", password="pw", is_staff=True, is_superuser=True)
    return made


@pytest.fixture
def participants(db):
    """user001…user003 with workspaces, password 'pw', and an instructor."""
    return class_of(3)


@pytest.fixture
def alice(client, participants):
    """The test client, logged in as the first participant (user001, workspace 001)."""
    client.login(username="user001", password="pw")
    return client


@pytest.fixture
def staff(participants):
    """A test client logged in as the instructor (staff)."""
    client = Client()
    client.force_login(get_user_model().objects.get(username="instructor"))
    return client


def post_json(client, url, body, **headers):
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def worker_with_token(name):
    """A worker row that is online, with `headers` that authenticate as it."""
    worker, token = Worker.create_with_token(name)
    worker.beat(status="idle")
    worker.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    return worker


def login(client, username, password, address="10.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


# ComfyUI's own answer to a POST /prompt without a prompt (server.py): the double gives it, and
# so must the platform.
COMFYUI_NO_PROMPT = {
    "error": {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}},
    "node_errors": {},
}


def run_command(*args, stdin: str | None = None):
    """(exit code, output) of `manage.py <args>`, as the operator would see them."""
    out = io.StringIO()
    code = 0
    real_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        call_command(*args, stdout=out)
    except SystemExit as exc:
        code = exc.code
    except CommandError as exc:
        code, out = 1, io.StringIO(str(exc))
    finally:
        sys.stdin = real_stdin
    return code, out.getvalue()


@pytest.fixture
def online_worker(db):
    """A GPU worker that beats (online), with its token."""
    worker, token = Worker.create_with_token("gpu-1")
    worker.beat(status="idle")
    worker.token = token
    return worker
