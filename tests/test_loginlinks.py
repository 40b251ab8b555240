"""One-time login links (accounts.loginlinks): the classmate gets in though a script takes every turn."""

import io
import re

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from accounts import loginlinks
from tests.conftest import login

THROTTLED = "Too many failed logins for this name"


def test_a_login_link_lets_the_classmate_in_though_a_script_takes_every_turn(client, participants, settings):
    """The red team's script took every turn of a classmate's name, and went on after the
    instructor's reset. The reset page's one-time link gets them in, and their browser is the
    account's known one from then on: the script slows it no more."""
    staff = Client()
    staff.force_login(get_user_model().objects.get(username="instructor"))
    for n in range(settings.LOGIN_FAILURES_PER_USER + 1):
        login(client, "user003", f"guess{n}")
    page = staff.post("/admin/console/workspaces/003/reset-password").content.decode()
    link = re.search(r'<code class="login-link">[^<]*(/accounts/link/[^/<]+/)</code>', page).group(1)
    password = re.search(r'<code class="new-password">([^<]+)</code>', page).group(1)
    for n in range(settings.LOGIN_FAILURES_PER_USER + 1):  # the script goes on at once
        login(client, "user003", f"again{n}")
    classmate = Client()
    assert THROTTLED in login(classmate, "user003", password).content.decode(), "the script holds the turn"
    assert "Log in as user003" in classmate.get(link).content.decode(), "a preview does not use it up"
    assert classmate.post(link)["Location"] == "/user/003/"
    assert classmate.get("/user/003/api/settings").status_code == 200
    assert classmate.post(link).status_code == 410, "it works once"
    assert Client().get(link).status_code == 410
    classmate.post("/accounts/logout/")
    for n in range(settings.LOGIN_FAILURES_PER_USER + 1):
        login(client, "user003", f"later{n}")
    assert login(classmate, "user003", password).status_code == 302, "their browser is known now"
    assert THROTTLED in login(client, "user003", "guess").content.decode(), "the guesser is still slowed"


def test_a_login_link_ends_with_a_newer_link_or_a_new_password(participants):
    """The trial: links survived a password change, and any number could be live at once."""
    user = get_user_model().objects.get(username="user001")
    first, second = loginlinks.issue(user), loginlinks.issue(user)
    first_path, second_path = (link[link.index("/accounts/") :] for link in (first, second))
    assert Client().post(first_path).status_code == 410, "a newer link ends the older one"
    user.set_password("violet-lantern-42")
    user.save()
    assert Client().post(second_path).status_code == 410, "a new password ends it"
    third = loginlinks.issue(user)
    assert Client().post(third[third.index("/accounts/") :])["Location"] == "/user/001/"


def test_the_owners_login_at_the_shared_address_gives_a_guesser_no_fresh_tries(client, participants, settings):
    """The trial: each owner login at the venue's address gave the guesser there 10 more checks."""
    for n in range(settings.LOGIN_FAILURES_PER_USER - 1):
        login(client, "user002", f"guess{n}")
    assert login(Client(), "user002", "pw").status_code == 302  # the owner, a new browser
    login(client, "user002", "guess-last")
    assert THROTTLED in login(client, "user002", "guess-more").content.decode()


def test_the_console_makes_a_login_link_without_changing_the_password(participants):
    staff = Client()
    staff.force_login(get_user_model().objects.get(username="instructor"))
    page = staff.post("/admin/console/workspaces/002/login-link").content.decode()
    assert "<svg" in page and "new-password" not in page, "a QR code, and no new password"
    link = re.search(r'<code class="login-link">[^<]*(/accounts/link/[^/<]+/)</code>', page).group(1)
    assert Client().post(link)["Location"] == "/user/002/"
    assert Client().login(username="user002", password="pw"), "the card's password still works"
    participants_page = staff.get("/admin/console/participants/").content.decode()
    assert 'data-confirm="A new password for user002?' in participants_page, "a reset asks first"


def test_the_operator_makes_a_login_link_for_the_instructor(participants):
    out = io.StringIO()
    call_command("workshop_users", "link", "instructor", stdout=out)
    link = re.search(r"(/accounts/link/[^/\s]+/)", out.getvalue()).group(1)
    browser = Client()
    assert browser.post(link)["Location"] == "/admin/console/"
    assert browser.get("/admin/console/participants/").status_code == 200
