"""The compose files are valid (checked with `docker compose config`; no Docker engine runs here)."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def compose_command():
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("no docker compose tool on this machine")


def config(tmp_path, compose_file, env_lines, *extra):
    env_file = tmp_path / "test.env"
    env_file.write_text("\n".join(env_lines) + "\n")
    result = subprocess.run(
        [*compose_command(), "-f", str(ROOT / "docker" / compose_file), "--env-file", str(env_file), *extra, "config"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    return result


def test_app_host_compose_is_valid(tmp_path):
    result = config(tmp_path, "compose.app.yml",
                    ["POSTGRES_PASSWORD=pg", "REDIS_PASSWORD=rd", f"APP_ENV_FILE={tmp_path / 'test.env'}"])
    assert result.returncode == 0, result.stderr
    for service in ("postgres", "redis", "app", "dispatcher", "nginx"):
        assert f"  {service}:" in result.stdout


def test_app_host_compose_refuses_to_start_without_passwords(tmp_path):
    result = config(tmp_path, "compose.app.yml", [f"APP_ENV_FILE={tmp_path / 'test.env'}"])
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr


def test_gpu_host_compose_is_valid_with_one_to_three_instances(tmp_path):
    env = ["REDIS_URL=redis://:x@127.0.0.1:6379/0", "APP_URL=https://w.example.org",
           "WORKER_TOKEN_1=a", "WORKER_TOKEN_2=b", "WORKER_TOKEN_3=c"]
    one = config(tmp_path, "compose.gpu.yml", env)
    three = config(tmp_path, "compose.gpu.yml", env, "--profile", "three")
    assert one.returncode == 0 and three.returncode == 0, one.stderr + three.stderr
    assert "worker-1:" in one.stdout and "- three" in one.stdout, "instances 2 and 3 sit behind profiles"
    assert "worker-3:" in three.stdout and "http://127.0.0.1:8190" in three.stdout
