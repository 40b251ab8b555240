"""A participant's password change and session length (accounts.views)."""


def test_a_participant_changes_their_password_under_the_validators(alice, client):
    page = alice.get("/accounts/password/")
    assert page.status_code == 200 and "Change your password" in page.content.decode()
    weak = alice.post(
        "/accounts/password/", {"old_password": "pw", "new_password1": "12345678901", "new_password2": "12345678901"}
    )
    assert weak.status_code == 200 and "entirely numeric" in weak.content.decode()
    short = alice.post(
        "/accounts/password/", {"old_password": "pw", "new_password1": "aB3$x", "new_password2": "aB3$x"}
    )
    assert "too short" in short.content.decode()
    done = alice.post(
        "/accounts/password/",
        {"old_password": "pw", "new_password1": "violet-lantern-42", "new_password2": "violet-lantern-42"},
    )
    assert done.status_code == 302 and done["Location"] == "/accounts/password/done/"
    assert "Password changed" in alice.get("/accounts/password/done/").content.decode()
    assert alice.get("/user/001/api/settings").status_code == 200, "still logged in"
    client.logout()
    assert client.login(username="user001", password="violet-lantern-42")


def test_a_session_lasts_a_workshop_day(alice, settings):
    assert settings.SESSION_COOKIE_AGE == 14 * 3600
    assert 13 * 3600 < alice.session.get_expiry_age() <= 14 * 3600
