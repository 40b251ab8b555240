"""The README's run command: the platform comes up on embedded defaults and stops cleanly."""

import csv
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port, wait_until

pytestmark = pytest.mark.e2e


def processes_with(marker: str) -> list[int]:
    """Every process whose environment carries `marker` (children inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium")


def test_scripts_run_serves_user001_and_leaves_nothing_behind(tmp_path, settings):
    port = free_port()
    marker = f"WORKSHOP_RUN_TEST={uuid.uuid4().hex}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "COMFYUI_URL", "WORKSHOP_URL", "WORKSHOP_START_WORKFLOW")
    }
    env.update(
        PORT=str(port),
        REDIS_URL=settings.REDIS_URL,
        WORKSHOP_VAR_DIR=str(tmp_path / "var"),
        WORKSHOP_DATA_DIR=str(tmp_path / "data"),
        WORKSHOP_USERS="2",
    )
    env[marker.split("=")[0]] = marker.split("=")[1]
    log = (tmp_path / "run.log").open("wb")
    script = subprocess.Popen(
        ["bash", "scripts/run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up():
            assert script.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            try:
                return requests.get(f"{base}/health", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_until(up, timeout=120, interval=0.2, message="scripts/run to serve /health")
        for private in ("secret_key", "workshop.sqlite3", "credentials.csv", "credentials.html"):
            mode = (tmp_path / "var" / private).stat().st_mode & 0o777
            assert mode == 0o600, f"var/{private} is {oct(mode)}: SECRET_KEY, sessions and passwords are private"
        rows = list(csv.DictReader((tmp_path / "var" / "credentials.csv").open()))
        password = next(r["password"] for r in rows if r["username"] == "user001")
        assert [r["url"] for r in rows][1:] == [f"{base}/user/001/", f"{base}/user/002/"], "the cards carry PORT"
        session = requests.Session()
        session.get(f"{base}/accounts/login/", timeout=10)
        login = session.post(
            f"{base}/accounts/login/",
            data={"username": "user001", "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": f"{base}/accounts/login/"},
            allow_redirects=False,
            timeout=10,
        )
        assert login.status_code == 302
        queue = session.get(f"{base}/user/001/api/queue", timeout=10)
        assert queue.status_code == 200 and queue.json() == {"queue_running": [], "queue_pending": []}
        assert len(processes_with(marker)) >= 4, "daphne, dispatcher, simulated GPU and gpuworker run"

        # The operator's dress rehearsal against it, in Chromium, with the class's hello workflow.
        report = tmp_path / "rehearsal.md"
        browser = [] if CHROMIUM else ["--no-browser"]
        rehearsal = subprocess.run(
            [
                ".venv/bin/python",
                "manage.py",
                "workshop_rehearsal",
                "--url",
                base,
                "--participants",
                "2",
                "--workflow",
                "hello",
                "--report",
                str(report),
                *browser,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert rehearsal.returncode == 0, rehearsal.stdout + rehearsal.stderr
        assert "[7/7] removing the test accounts" in rehearsal.stdout and "READY" in rehearsal.stdout
        assert report.read_text().startswith("# Workshop rehearsal: READY")
        listing = subprocess.run(
            [".venv/bin/python", "manage.py", "workshop_users", "list", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "rehearsal-" not in listing.stdout and '"user001"' in listing.stdout, "no test account is left"
        assert "opens hello" in rehearsal.stdout, "the simulated GPU's start workflow is the model-free hello"

        # An operator's command beside it, in another shell, writes the sheet at the same address.
        added = subprocess.run(
            [".venv/bin/python", "manage.py", "workshop_users", "add", "--count", "1"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert added.returncode == 0, added.stderr
        again = list(csv.DictReader((tmp_path / "var" / "credentials.csv").open()))
        assert len(again) == len(rows) + 1 and all(r["url"].startswith(f"{base}/") for r in again)
        assert oct((tmp_path / "var").stat().st_mode & 0o777) == "0o700"
        assert oct((tmp_path / "var" / "secret_key").stat().st_mode & 0o777) == "0o600"

        # A crashed GPU worker is started again, and the supervisor says so.
        workers = [
            pid for pid in processes_with(marker) if b"-m\x00gpuworker\x00" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert workers, "a gpuworker process runs"
        os.kill(workers[0], signal.SIGKILL)
        wait_until(
            lambda: "gpuworker exited with code -9; restarting it" in (tmp_path / "run.log").read_text(),
            timeout=20,
            message="the supervisor to notice the crash",
        )
        wait_until(
            lambda: [
                p
                for p in processes_with(marker)
                if p != workers[0] and b"-m\x00gpuworker\x00" in Path(f"/proc/{p}/cmdline").read_bytes()
            ],
            timeout=30,
            message="a new gpuworker process",
        )
    finally:
        script.send_signal(signal.SIGTERM)
        script.wait(timeout=60)
        log.close()
    wait_until(lambda: processes_with(marker) == [], timeout=20, message="every process of scripts/run to exit")
    assert "nothing left running" in (tmp_path / "run.log").read_text()
