"""Wrong passwords slow that name down, never lock its owner out (accounts.throttle)."""

import threading

import pytest
import requests
from django.test import Client

from accounts.models import Workspace
from tests.conftest import login, wait_until

THROTTLED = "Too many failed logins for this name"


def test_wrong_passwords_for_one_name_slow_it_down_even_when_the_right_one_comes(client, participants, settings):
    for _ in range(settings.LOGIN_FAILURES_PER_USER):
        assert login(client, "user001", "wrong").status_code == 200
    refused = login(client, "user001", "pw")
    said = refused.content.decode()
    assert refused.status_code == 200 and THROTTLED in said and "try again in 30 s" in said and "login link" in said
    assert 'value="user001"' in said, "the name stays in its field"
    assert "_auth_user_id" not in client.session
    # Other participants behind the same address still get in.
    assert login(client, "user002", "pw").status_code == 302


def test_200_guesses_from_the_class_address_slow_nobody_else_and_get_nowhere(client, participants, settings):
    """The red team: 200 failed logins with made-up names from the venue's address refused
    user016, user017 and the instructor for 15 minutes. Now the class still logs in, and 200
    guesses at one account are mostly refused unchecked."""
    import time

    from django.contrib.auth.signals import user_login_failed

    for n in range(200):
        login(client, f"nobody{n}", "x")
    for name in ("user001", "user002", "instructor"):
        assert login(Client(), name, "pw").status_code == 302, f"{name} still gets in from the venue"

    checked = []
    user_login_failed.connect(lambda **kw: checked.append(1), weak=False, dispatch_uid="count-checked")
    try:
        began = time.monotonic()
        answers = [login(client, "user003", f"guess{n}").content.decode() for n in range(200)]
        elapsed = time.monotonic() - began
    finally:
        user_login_failed.disconnect(dispatch_uid="count-checked")
    # Ten tries, then one per LOGIN_SLOW_SECONDS: the rest are refused before any password check.
    assert len(checked) <= settings.LOGIN_FAILURES_PER_USER + 1 + elapsed // settings.LOGIN_SLOW_SECONDS
    assert sum(THROTTLED in answer for answer in answers) >= 200 - len(checked)
    assert THROTTLED in login(Client(), "user003", "pw").content.decode(), "a new browser waits its turn too"


def test_the_owner_of_a_guessed_account_waits_seconds_not_a_quarter_hour(participants, settings):
    settings.LOGIN_SLOW_SECONDS = 2
    guesser = Client()
    for n in range(settings.LOGIN_FAILURES_PER_USER + 5):
        login(guesser, "instructor", f"guess{n}")
    owner = Client()  # the instructor, on a browser this app has never seen
    assert THROTTLED in login(owner, "instructor", "pw").content.decode()
    wait_until(
        lambda: login(owner, "instructor", "pw").status_code == 302,
        timeout=30,
        message="the instructor to get in once the turn comes",
    )


def test_a_guessed_accounts_owner_still_gets_in_from_their_own_browser(client, participants, settings):
    owner = Client()
    assert login(owner, "user002", "pw").status_code == 302 and "workshop_device" in owner.cookies
    owner.post("/accounts/logout/")  # signed out, as on a shared laptop: the browser stays known
    for n in range(settings.LOGIN_FAILURES_PER_ACCOUNT):  # a spread guess, from many addresses
        login(client, "user002", "guess", address=f"10.7.{n // 250}.{n % 250}")
    assert THROTTLED in login(Client(), "user002", "pw", address="10.8.8.8").content.decode()
    assert login(owner, "user002", "pw", address="10.0.0.1").status_code == 302, "their own browser"
    forged = Client()
    forged.cookies["workshop_device"] = owner.cookies["workshop_device"].value[:-2] + "xx"
    assert THROTTLED in login(forged, "user002", "pw").content.decode()


def test_a_new_password_starts_the_count_again(client, participants, settings):
    for n in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        login(client, "user003", "guess", address=f"10.9.0.{n}")
    assert THROTTLED in login(Client(), "user003", "pw").content.decode()
    password = Workspace.objects.get(owner__username="user003").owner_reset_password()  # the console's reset
    assert login(Client(), "user003", password).status_code == 302, "the new card works at once"


@pytest.mark.e2e
def test_a_burst_of_guesses_sent_at_once_is_checked_at_most_eleven_times(live_app, participants):
    """The red team sent 200 guesses, 50 at once: 54 were checked, because a try was counted only
    after its password had been. Now each try is counted first."""
    from concurrent.futures import ThreadPoolExecutor

    guesser = requests.Session()
    guesser.get(f"{live_app.url}/accounts/login/", timeout=10)
    start = threading.Barrier(20)

    def guess(n):
        if n < 20:
            start.wait()
        answer = guesser.post(
            f"{live_app.url}/accounts/login/",
            timeout=60,
            allow_redirects=False,
            data={"username": "user002", "password": f"guess{n}", "csrfmiddlewaretoken": guesser.cookies["csrftoken"]},
            headers={"Referer": f"{live_app.url}/accounts/login/"},
        )
        return THROTTLED not in answer.text

    with ThreadPoolExecutor(20) as pool:
        checked = sum(pool.map(guess, range(100)))
    assert checked <= 11, f"{checked} of 100 guesses were checked"


def test_the_accounts_own_browser_is_never_slowed_by_others_and_cannot_guess_either(client, participants, settings):
    owner = Client()
    assert login(owner, "user002", "pw").status_code == 302
    owner.post("/accounts/logout/")
    for n in range(settings.LOGIN_FAILURES_PER_USER):
        login(owner, "user002", f"guess{n}")  # someone at the shared laptop, after the owner left
    assert THROTTLED in login(owner, "user002", "pw").content.decode(), "the known browser's guesses slow it too"
    assert login(Client(), "user002", "pw").status_code == 302, "a guess on that browser slows nobody else"


def test_the_admin_login_is_throttled_too(client, participants, settings):
    for _ in range(settings.LOGIN_FAILURES_PER_USER):
        client.post("/admin/login/", {"username": "instructor", "password": "wrong"})
    page = client.post("/admin/login/?next=/admin/", {"username": "instructor", "password": "pw"})
    assert "Too many failed logins" in page.content.decode()
