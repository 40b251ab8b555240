"""JSON from the outside world (browsers, GPU workers), parsed with the limits a workshop needs:
no NaN or Infinity (PostgreSQL's JSON has none), and no nesting deeper than any real workflow."""

import json
import uuid

MAX_DEPTH = 64  # a saved LTX-2 workflow nests about 12 deep


class BadJSON(ValueError):
    """A body that is not acceptable JSON; the message says why, for the caller."""


def _no_constant(name):
    raise BadJSON(f"{name} is not a number JSON allows")


def _storable(text: str) -> bool:
    """PostgreSQL's JSON holds no NUL character and UTF-8 has no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def depth_of(value, limit: int = MAX_DEPTH) -> int:
    """How deep `value` nests, counting stops past `limit` (iterative: any depth is safe).
    Raises BadJSON for text the database cannot store."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not _storable(item):
                raise BadJSON("Text with a NUL character or a lone surrogate cannot be stored")
            continue
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in item)
    return deepest


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH):
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise BadJSON(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise BadJSON("The body is not UTF-8 text") from None
    except BadJSON:
        raise
    except ValueError as exc:
        raise BadJSON(f"The body is not valid JSON ({exc})") from None
    if depth_of(value, max_depth) > max_depth:
        raise BadJSON(f"JSON nested deeper than {max_depth} levels")
    return value


def object_of(raw: bytes | str) -> dict:
    """A request body that must be a JSON object: {} when empty (as ComfyUI's routes read one),
    BadJSON for anything else."""
    if not raw:
        return {}
    value = loads(raw)
    if not isinstance(value, dict):
        raise BadJSON("The request body must be a JSON object.")
    return value


def uuid_or_none(value) -> uuid.UUID | None:
    """`value` as a UUID, or None when it is none (ids in bodies and queries are the caller's)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
