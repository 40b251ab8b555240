"""The operator's commands: status, doctor with Redis gone, users and their credential sheet,
export, purge and the report. Real PostgreSQL and Redis; a Redis that is stopped is the test's
own redis-server."""

import csv
import io
import json
import shutil
import subprocess
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import Workspace
from jobs.models import Job, Worker
from tests.conftest import free_port, wait_until

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def run(*args, stdin: str | None = None):
    out = io.StringIO()
    code = 0
    import sys

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
    worker, _ = Worker.create_with_token("gpu-1")
    worker.beat(status="idle")
    return worker


@pytest.fixture
def own_redis(settings):
    """A redis-server of this test's own, which the test may stop."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    import redis

    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def up():
        try:
            return redis.Redis.from_url(url).ping()
        except redis.ConnectionError:
            return False

    wait_until(up, timeout=10, message="redis-server")
    settings.REDIS_URL = url
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_status_with_a_worker_online_says_ok_in_text_and_json(participants, online_worker):
    Job.submit(participants[0], SIMPLE)
    code, text = run("workshop_status")
    assert code == 0, text
    assert "ok   worker     gpu-1: idle, heartbeat" in text and "1 queued" in text
    assert "oldest     workspace 001 #0, waiting" in text
    code, raw = run("workshop_status", "--json")
    report = json.loads(raw)
    assert code == 0 and report["ok"] is True
    assert report["database"]["ok"] and report["redis"]["ok"]
    assert report["workers"][0]["name"] == "gpu-1" and report["workers"][0]["online"] is True
    assert report["queue"]["by_state"]["queued"] == 1 and report["queue"]["oldest_waiting"]["workspace"] == "001"
    assert report["disk"]["free_bytes"] > 0


def test_with_redis_stopped_status_exits_non_zero_and_doctor_names_redis(participants, online_worker, own_redis):
    assert run("workshop_status", "--json")[0] == 0
    own_redis.kill()
    own_redis.wait()
    code, raw = run("workshop_status", "--json")
    report = json.loads(raw)
    assert code == 1 and report["ok"] is False and report["redis"]["ok"] is False
    code, text = run("workshop_status")
    assert code == 1 and "DOWN redis" in text
    code, text = run("workshop_doctor")
    assert code == 1
    assert "FAIL Redis at redis://127.0.0.1:" in text and "start it, or fix REDIS_URL" in text


def test_status_without_any_worker_online_exits_non_zero(participants):
    code, text = run("workshop_status")
    assert code == 1 and "none registered" in text


def test_users_add_writes_the_sheet_and_never_prints_a_password(db, tmp_path):
    code, text = run("workshop_users", "add", "--count", "3", "--sheet", str(tmp_path))
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "credentials.csv").open()))
    assert [r["username"] for r in rows] == ["user001", "user002", "user003"]
    assert all(r["password"] not in text for r in rows), "passwords stay off stdout"
    assert rows[0]["url"].endswith("/user/001/")
    html = (tmp_path / "credentials.html").read_text()
    assert html.count('class="card"') == 3 and "<svg" in html and rows[2]["password"] in html
    assert oct((tmp_path / "credentials.csv").stat().st_mode & 0o777) == "0o600"
    from django.contrib.auth import authenticate

    assert authenticate(username="user002", password=rows[1]["password"]) is not None
    assert Workspace.objects.get(owner__username="user002").root.joinpath("input").is_dir()

    code, text = run("workshop_users", "add", "alice", "--sheet", str(tmp_path), "--show")
    alice = list(csv.DictReader((tmp_path / "credentials.csv").open()))[0]
    assert alice["username"] == "alice" and alice["password"] in text and alice["url"].endswith("/user/004/")


def test_users_reset_password_and_remove(participants, tmp_path):
    old_root = participants[1].root
    code, _ = run("workshop_users", "reset-password", "user002", "--sheet", str(tmp_path))
    new = next(r for r in csv.DictReader((tmp_path / "credentials.csv").open()) if r["username"] == "user002")
    from django.contrib.auth import authenticate

    assert code == 0 and authenticate(username="user002", password="pw") is None
    assert authenticate(username="user002", password=new["password"]) is not None

    code, _ = run("workshop_users", "remove", "user002", stdin="no\n")
    assert code != 0 and get_user_model().objects.filter(username="user002").exists(), "asks first"
    code, _ = run("workshop_users", "remove", "user002", "--yes")
    assert code == 0 and not get_user_model().objects.filter(username="user002").exists()
    assert not old_root.exists()

    code, raw = run("workshop_users", "list", "--json")
    assert [r["username"] for r in json.loads(raw)] == ["user001", "user003"]


def sheet_of(folder):
    rows = list(csv.DictReader((folder / "credentials.csv").open()))
    html = (folder / "credentials.html").read_text()
    return rows, html


def test_the_credential_sheet_is_whole_after_every_command_in_any_order(db, tmp_path, settings):
    """Every current account once, none removed, every password that still works, at the
    workshop's public address; owner-only files."""
    from django.contrib.auth import authenticate

    settings.WORKSHOP_URL = "http://10.0.0.5:8510"
    assert run("workshop_setup", "--users", "20", "--sheet", str(tmp_path))[0] == 0
    first, _ = sheet_of(tmp_path)
    assert len(first) == 21 and first[0]["username"] == "instructor"
    steps = [
        ("add", "--count", "2"),
        ("reset-password", "user003"),
        ("remove", "user022", "--yes"),
        ("add", "guest"),
        ("reset-password", "user021", "guest"),
        ("remove", "user005", "--yes"),
        ("sheet",),
    ]
    for step in steps:
        code, text = run("workshop_users", *step, "--sheet", str(tmp_path))
        assert code == 0, (step, text)
        rows, html = sheet_of(tmp_path)
        names = [r["username"] for r in rows]
        expected = ["instructor"] + sorted(
            get_user_model().objects.filter(is_staff=False).values_list("username", flat=True)
        )
        assert names == expected, (step, names)
        assert html.count('class="card"') == len(rows), step
        for row in rows:
            assert authenticate(username=row["username"], password=row["password"]) is not None, (step, row)
            assert row["url"].startswith("http://10.0.0.5:8510/") and row["url"] in html
        for path in (tmp_path / "credentials.csv", tmp_path / "credentials.html"):
            assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "user022" not in names and "user005" not in names and names.count("user021") == 1
    assert "http://127.0.0.1:8000" not in html


def test_export_makes_one_zip_per_participant_with_exactly_their_files(participants, tmp_path):
    alice, bob, _ = participants
    (alice.root / "output" / "a.png").write_bytes(b"alice")
    (alice.root / "output" / "sub").mkdir()
    (alice.root / "output" / "sub" / "b.mp4").write_bytes(b"alice video")
    (alice.root / "userdata" / "workflows").mkdir(parents=True)
    (alice.root / "userdata" / "workflows" / "mine.json").write_text("{}")
    (alice.root / "input" / "upload.png").write_bytes(b"an input stays out")
    (bob.root / "output" / "bob.png").write_bytes(b"bob")
    (alice.root / "output" / "link.png").symlink_to(bob.root / "output" / "bob.png")
    (alice.root / "output" / ".half-sent.png.part").write_bytes(b"an output still arriving stays out")
    out = tmp_path / "export"
    code, text = run("workshop_export", "--out", str(out))
    assert code == 0 and "[3/3]" in text
    assert sorted(p.name for p in out.iterdir()) == ["user001.zip", "user002.zip", "user003.zip"]
    with zipfile.ZipFile(out / "user001.zip") as z:
        assert sorted(z.namelist()) == ["output/a.png", "output/sub/b.mp4", "workflows/mine.json"]
        assert z.read("output/sub/b.mp4") == b"alice video"
    with zipfile.ZipFile(out / "user002.zip") as z:
        assert z.namelist() == ["output/bob.png"]
    with zipfile.ZipFile(out / "user003.zip") as z:
        assert z.namelist() == []


def test_purge_asks_then_removes_every_participants_jobs_and_files(participants):
    Job.submit(participants[0], SIMPLE)
    (participants[0].root / "output" / "a.png").write_bytes(b"x")
    code, _ = run("workshop_purge", stdin="nope\n")
    assert code != 0 and Job.objects.count() == 1
    code, text = run("workshop_purge", "--yes")
    assert code == 0 and Job.objects.count() == 0
    assert not (participants[0].root / "output" / "a.png").exists()
    assert (participants[0].root / "output").is_dir() and get_user_model().objects.filter(username="user001").exists()


def test_report_has_waits_cost_and_errors_by_cause_with_charts(participants, online_worker, tmp_path):
    now = timezone.now()
    Worker.objects.filter(pk=online_worker.pk).update(price_per_hour=3.6)
    for n, (state, error) in enumerate(
        [("completed", ""), ("completed", ""), ("failed", "CUDA out of memory 1"), ("failed", "CUDA out of memory 2")]
    ):
        job = Job.submit(participants[n % 2], SIMPLE)
        Job.objects.filter(pk=job.pk).update(
            state=state,
            error=error,
            worker=online_worker,
            created_at=now - timezone.timedelta(minutes=30),
            started_at=now - timezone.timedelta(minutes=30 - 10 * (n % 2)),
            finished_at=now,
            gpu_seconds=100,
        )
    code, _ = run("workshop_report", "--out", str(tmp_path))
    report = (tmp_path / "report.md").read_text()
    assert code == 0
    assert "| completed | 2 |" in report and "| failed | 2 |" in report
    assert "- wait p50: 5 min" in report and "- wait p95: 10 min" in report
    assert "| user001 (001) | 2 | 3 min 20 s | 0.20 |" in report
    assert "| CUDA out of memory N | 2 |" in report
    for chart in ("waiting.svg", "waits.svg", "busy.svg", "gpu.svg"):
        assert (tmp_path / chart).read_text().startswith("<svg") and f"({chart})" in report
