"""`manage.py workshop_users`: participants added, reset and removed, the credential sheet
always whole, no password ever printed."""

import csv
import json

from django.contrib.auth import get_user_model

from accounts.models import Workspace
from tests.conftest import run_command


def sheet_of(folder):
    rows = list(csv.DictReader((folder / "credentials.csv").open()))
    html = (folder / "credentials.html").read_text()
    return rows, html


def test_users_add_writes_the_sheet_and_never_prints_a_password(db, tmp_path):
    code, text = run_command("workshop_users", "add", "--count", "3", "--sheet", str(tmp_path))
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

    code, text = run_command("workshop_users", "add", "alice", "--sheet", str(tmp_path), "--show")
    alice = list(csv.DictReader((tmp_path / "credentials.csv").open()))[0]
    assert alice["username"] == "alice" and alice["password"] in text and alice["url"].endswith("/user/004/")


def test_users_reset_password_and_remove(participants, tmp_path):
    old_root = participants[1].root
    code, _ = run_command("workshop_users", "reset-password", "user002", "--sheet", str(tmp_path))
    new = next(r for r in csv.DictReader((tmp_path / "credentials.csv").open()) if r["username"] == "user002")
    from django.contrib.auth import authenticate

    assert code == 0 and authenticate(username="user002", password="pw") is None
    assert authenticate(username="user002", password=new["password"]) is not None

    code, _ = run_command("workshop_users", "remove", "user002", stdin="no\n")
    assert code != 0 and get_user_model().objects.filter(username="user002").exists(), "asks first"
    code, _ = run_command("workshop_users", "remove", "user002", "--yes")
    assert code == 0 and not get_user_model().objects.filter(username="user002").exists()
    assert not old_root.exists()

    code, raw = run_command("workshop_users", "list", "--json")
    assert [r["username"] for r in json.loads(raw)] == ["user001", "user003"]


def test_the_credential_sheet_is_whole_after_every_command_in_any_order(db, tmp_path, settings):
    """Every current account once, none removed, every password that still works, at the
    workshop's public address; owner-only files."""
    from django.contrib.auth import authenticate

    settings.WORKSHOP_URL = "http://10.0.0.5:8510"
    assert run_command("workshop_setup", "--users", "20", "--sheet", str(tmp_path))[0] == 0
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
        code, text = run_command("workshop_users", *step, "--sheet", str(tmp_path))
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
