"""A refused request is one log line, never a traceback (workshop.logfilters)."""

import json

import pytest

from tests.conftest import worker_with_token


def test_a_refused_request_is_one_log_line_not_a_traceback(alice, caplog):
    import logging

    from jobs.models import Catalog

    Catalog.objects.create(
        worker=worker_with_token("gpu-1"),
        object_info={"EmptyImage": {"input": {"required": {}}, "output": ["IMAGE"], "output_node": False}},
    )

    bad = [
        ("/user/001/api/prompt", '{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": NaN}}}}'),
        ("/user/001/api/prompt", "[" * 5000 + "]" * 5000),
        ("/user/001/api/settings", '{"a":' * 500 + "1" + "}" * 500),
        ("/user/001/api/prompt", json.dumps({"prompt": {"1": {"class_type": "Nope", "inputs": {"x": "y" * 2300}}}})),
    ]
    for path, body in bad:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            answer = alice.post(path, data=body, content_type="application/json")
        assert 400 <= answer.status_code < 500
        assert len(caplog.records) <= 1, [r.getMessage() for r in caplog.records]
        assert all(r.exc_info is None and len(r.getMessage()) < 300 for r in caplog.records)


@pytest.mark.e2e
def test_a_refused_request_is_one_log_line_without_a_traceback(live_app, participants):
    """The red team's fuzz left 22 tracebacks in the log for requests Django refuses itself."""
    alice = live_app.login("user001")
    headers = {"Origin": live_app.url, "X-CSRFToken": alice.cookies["csrftoken"]}
    many = "&".join(f"f{n}=x" for n in range(1500))  # over DATA_UPLOAD_MAX_NUMBER_FIELDS
    too_many = alice.post(
        f"{live_app.url}/accounts/login/",
        data=many,
        timeout=10,
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    broken = alice.post(
        f"{live_app.url}/user/001/api/upload/image",
        data=b"--b\r\nnot a part",
        timeout=10,
        headers={**headers, "Content-Type": "multipart/form-data; boundary=b"},
    )
    log = (live_app.tmp_path / "daphne.log").read_text()
    assert too_many.status_code == 400 and broken.status_code == 400
    assert "TooManyFieldsSent" in log
    assert "Traceback" not in log, log[-3000:]
