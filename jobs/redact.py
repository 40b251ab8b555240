"""What a participant may see of a GPU host's answer: never its paths, never other people's files.

ComfyUI's errors carry absolute paths of the GPU host (`[Errno 36] File name too long:
'/srv/ComfyUI/output/…'`, tracebacks) and, when a value is not in a list, the whole list: for
an input folder shared by every participant, everybody's file names.
"""

import re

# An absolute path (POSIX or Windows) that starts a string or follows a quote, bracket, space,
# '=' or ','; never the path part of a URL (after "host:" or "//").
_PATH = re.compile(r"""(?:(?<=^)|(?<=[\s'"(\[=,]))(?:[A-Za-z]:\\|/)(?!/)[^\s'"<>|]*""")
# ComfyUI's value_not_in_list detail: "image: 'x.png' not in ['a.png', 'b.png']" (or a summary).
_NOT_IN_LIST = re.compile(r"not in (\[.*\]|\(list of length \d+\))", re.DOTALL)
# Parts of ComfyUI's error records that only repeat the catalog (the lists of the GPU host).
_DROPPED_KEYS = {"input_config"}
MAX_DEPTH = 32


def _last_part(match: re.Match) -> str:
    path = match.group(0).rstrip(".,;:)]")
    tail = match.group(0)[len(path) :]
    name = re.split(r"[\\/]", path.rstrip("\\/"))[-1]
    return (name or "…") + tail


def text(value: str) -> str:
    return _NOT_IN_LIST.sub("not in the files and options offered here", _PATH.sub(_last_part, value))


def redact(value, depth: int = 0):
    """A copy of a JSON value with every string redacted; records nested absurdly deep are cut."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, str):
        return text(value)
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: redact(v, depth + 1) for k, v in value.items() if k not in _DROPPED_KEYS}
    return value
