"""Class start: every participant opens the workshop at once (prints a table; asserts no speed).

    .venv/bin/python -m pytest bench/test_class_start.py -s -p no:cacheprovider

The request list of a first load is recorded once from the pinned frontend in headless
Chromium (static files included). Then `class_size` participants replay it at once, six
connections each like a browser, against two Daphne processes side by side on the same
database: the platform as it runs (the frontend's files by their own path) and plain Django
serving every file through its views. A second load is counted from the caching headers. The
password hash's cost is measured next to Django's default.
"""

import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests


def record_first_load(url: str, slug: str) -> list[str]:
    """Every same-origin GET of one first load of /user/<slug>/, in order."""
    from playwright.sync_api import sync_playwright

    from tests.browsing import CHROMIUM, FLAGS

    seen: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page()  # a fresh profile: nothing cached yet
        page.goto(f"{url}/accounts/login/?next=/user/{slug}/")
        page.fill("#id_username", f"user{slug}")
        page.fill("#id_password", "pw")
        page.on("request", lambda r: r.method == "GET" and r.url.startswith(url) and seen.append(r.url[len(url) :]))
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/user/{slug}/")
        page.wait_for_function("() => window.app && window.app.canvas && window.app.canvas.graph", timeout=120_000)
        page.wait_for_load_state("networkidle")
        browser.close()
    return [path for path in seen if f"/user/{slug}/" in path or path.startswith("/assets/")]


def login(url: str, username: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{url}/accounts/login/", timeout=30)
    answer = session.post(
        f"{url}/accounts/login/",
        data={"username": username, "password": "pw", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{url}/accounts/login/"},
        timeout=30,
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.status_code
    return session


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def is_static(path: str) -> bool:
    return any(part in path for part in ("/assets/", "/scripts/", "/fonts/", "/extensions/core/", "/cursor/"))


def replay(url: str, paths: list[str], class_size: int, pid: int) -> dict:
    """All participants load at once; returns wall time, latencies, the server's CPU and what a
    second load needs."""
    sessions = [login(url, f"user{n:03d}") for n in range(1, class_size + 1)]
    latencies: list[float] = []
    by_path: dict[str, list[float]] = {}
    cached = 0
    wire = 0

    def load(n: int) -> None:
        nonlocal cached
        session, slug = sessions[n - 1], f"{n:03d}"
        mine = [p.replace("/user/001/", f"/user/{slug}/") for p in paths]

        def get(path):
            nonlocal cached, wire
            started = time.perf_counter()
            answer = session.get(url + path, timeout=120)
            latencies.append(time.perf_counter() - started)
            by_path.setdefault(path.replace(f"/user/{slug}/", "/user/<slug>/"), []).append(latencies[-1])
            assert answer.status_code == 200, (path, answer.status_code)
            wire += int(answer.headers.get("Content-Length") or len(answer.content))
            if "max-age=" in answer.headers.get("Cache-Control", "") and "max-age=0" not in answer.headers.get(
                "Cache-Control", ""
            ):
                cached += 1

        with ThreadPoolExecutor(6) as pool:  # a browser's connections per host
            list(pool.map(get, mine))

    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(class_size) as pool:
        list(pool.map(load, range(1, class_size + 1)))
    wall = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    latencies.sort()
    total = len(latencies)
    return {
        "wall": wall,
        "requests": total,
        "rate": total / wall,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(int(total * 0.99), total - 1)] * 1000,
        "second_load": (total - cached) / class_size,
        "cpu": cpu,
        "by_path": by_path,
        "megabytes": wire / class_size / 1e6,
    }


def hash_cost() -> tuple[float, float]:
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from workshop.hashers import WorkshopPBKDF2PasswordHasher

    def once(hasher):
        started = time.perf_counter()
        hasher.encode("abcdefghjkmn", hasher.salt())
        return time.perf_counter() - started

    return once(PBKDF2PasswordHasher()), once(WorkshopPBKDF2PasswordHasher())


@pytest.mark.e2e
@pytest.mark.browser
def test_class_start(live_app, settings, tmp_path, class_size, monkeypatch):
    from django.contrib.auth import get_user_model

    from accounts.models import Workspace
    from tests.browsing import CHROMIUM
    from tests.conftest import child_env, free_port, process, wait_until

    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop in this thread
    users = get_user_model()
    for n in range(1, class_size + 1):
        user = users.objects.create_user(f"user{n:03d}", password="pw")
        Workspace.objects.create(owner=user, slug=f"{n:03d}").ensure_folders()
    paths = record_first_load(live_app.url, "001")
    statics = sum(1 for p in paths if "/assets/" in p or "/scripts/" in p or "/fonts/" in p or "/extensions/core/" in p)

    port = free_port()
    plain = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "bench.stock_asgi:application"]
    with process(cmd, child_env(settings), tmp_path / "plain-daphne.log") as plain_daphne:
        wait_until(lambda: _up(plain), timeout=30, message="the plain Django Daphne")
        platform = replay(live_app.url, paths, class_size, live_app.pid)
        through_django = replay(plain, paths, class_size, plain_daphne.pid)
    default_hash, workshop_hash = hash_cost()

    print(
        f"\nClass start: {class_size} participants, a first load of {len(paths)} requests each "
        f"({statics} of them the frontend's static files)\n"
    )
    print(
        "| served by | all loaded | requests/s | p50 ms | p99 ms | server CPU | MB per load | second load, requests |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, row in (
        ("the platform (frontend files by their own path)", platform),
        ("plain Django views", through_django),
    ):
        print(
            f"| {name} | {row['wall']:.1f} s | {row['rate']:.0f} | {row['p50']:.0f} | {row['p99']:.0f} | "
            f"{row['cpu']:.1f} s | {row['megabytes']:.1f} | {row['second_load']:.0f} |"
        )
    slowest = sorted(platform["by_path"].items(), key=lambda item: -sum(item[1]))[:12]
    print("\nThe platform's slowest paths (all participants together):\n")
    print("| path | requests | mean ms | max ms |")
    print("| --- | ---: | ---: | ---: |")
    for path, times in slowest:
        print(f"| {path[:70]} | {len(times)} | {statistics.mean(times) * 1000:.0f} | {max(times) * 1000:.0f} |")
    print(f"\nratio, all loaded: {through_django['wall'] / platform['wall']:.1f}x faster")
    print(f"password hash: Django's default {default_hash * 1000:.0f} ms, the workshop's {workshop_hash * 1000:.0f} ms")
    assert platform["requests"] == through_django["requests"] == len(paths) * class_size


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False
