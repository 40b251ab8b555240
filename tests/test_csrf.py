"""A cross-site POST is refused and changes nothing; the frontend's own calls pass."""

from jobs.models import Job
from tests.conftest import post_json

SIMPLE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def test_a_cross_site_post_is_refused_and_changes_nothing(alice):
    before = alice.get("/user/001/api/settings").json()
    for headers in (
        {"HTTP_SEC_FETCH_SITE": "cross-site"},
        {"HTTP_SEC_FETCH_SITE": "same-site"},
        {"HTTP_ORIGIN": "https://evil.example"},
        {"HTTP_ORIGIN": "null"},
    ):
        # A cross-site HTML form can send text/plain with the session cookie.
        answer = alice.post(
            "/user/001/api/settings", data='{"Comfy.Hacked": true}', content_type="text/plain", **headers
        )
        assert answer.status_code == 403 and "did not come from" in answer.json()["error"]
        queued = post_json(alice, "/user/001/api/prompt", {"prompt": SIMPLE}, **headers)
        assert queued.status_code == 403
    assert alice.get("/user/001/api/settings").json() == before
    assert not Job.objects.exists()


def test_the_frontend_own_calls_pass(alice):
    for headers in ({"HTTP_SEC_FETCH_SITE": "same-origin"}, {"HTTP_ORIGIN": "http://testserver"}, {}):
        assert post_json(alice, "/user/001/api/settings", {"Comfy.Ok": True}, **headers).status_code == 200
