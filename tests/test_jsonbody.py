"""workshop/lib/jsonbody: every JSON body from a browser or a worker goes through it, and what
it refuses is said in words the caller can show (ComfyUI's UI shows the 400's message)."""

import uuid

import pytest

from workshop.lib.jsonbody import MAX_DEPTH, BadJSON, loads, object_of, uuid_or_none


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "raw, said",
    [
        (b"{", "not valid JSON"),
        (b'{"x": NaN}', "NaN is not a number JSON allows"),
        (b'{"x": -Infinity}', "-Infinity is not a number JSON allows"),
        (b'{"x": "\xff"}', "not UTF-8"),
        (nested(MAX_DEPTH + 1), f"deeper than {MAX_DEPTH} levels"),
        (nested(100_000), f"deeper than {MAX_DEPTH} levels"),
        ('{"x": "a\\u0000b"}', "NUL character"),
        ('{"x": "\\ud800"}', "lone surrogate"),
        ('{"\\u0000": 1}', "NUL character"),
    ],
)
def test_what_the_database_cannot_hold_or_a_browser_should_not_send_is_refused_with_why(raw, said):
    with pytest.raises(BadJSON, match=said):
        loads(raw)


def test_a_real_workflows_depth_and_ordinary_json_pass():
    assert loads(nested(MAX_DEPTH)) is not None
    assert (
        loads('{"prompt": {"1": {"inputs": {"text": "un chat 🐈"}}}}')["prompt"]["1"]["inputs"]["text"] == "un chat 🐈"
    )


def test_a_body_that_must_be_an_object_is_one_or_empty():
    assert object_of(b"") == {} and object_of(b'{"a": 1}') == {"a": 1}
    for raw in (b"[]", b'"text"', b"3", b"null"):
        with pytest.raises(BadJSON, match="must be a JSON object"):
            object_of(raw)


def test_ids_from_outside_are_uuids_or_nothing():
    job = uuid.uuid4()
    assert uuid_or_none(str(job)) == job and uuid_or_none(job.hex) == job
    for odd in ("", "x", None, 3, "1" * 40, {"id": 1}):
        assert uuid_or_none(odd) is None
