"""Participants' own model files (LoRAs first): what is accepted, and where each one lives.

Only `.safetensors`: a pickled `.ckpt`/`.pt` runs code when it is loaded, on the GPU host that
every participant shares. A file is accepted only when its header is a real safetensors header
whose tensors fit in the file, so a pickle renamed `.safetensors` is refused too.
"""

import hashlib
import json
import re
import struct

ALLOWED_SUFFIX = ".safetensors"
PICKLED = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
# The safetensors format allows a 100 MB header; a LoRA needs far less. Each tensor's entry is
# about 120 bytes ("<module>.lora_up.weight": dtype, shape, data_offsets), and the largest LoRAs
# (an SDXL or LTX-2 one of every module, rank 128) hold a few thousand tensors, under 1 MB, plus
# trainer metadata of some hundred KB. A 99 MB header of 1.78 million empty tensors made Daphne
# grow by 1.2 GB while it was parsed: 4 MB and 20,000 tensors keep a parse to tens of MB.
MAX_HEADER_BYTES = 4 * 1024 * 1024
MAX_TENSORS = 20_000
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ ()+-]{0,150}\.safetensors$")
# Bits per element of each safetensors dtype: a tensor's data must be exactly its shape's worth.
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "E8M0": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
DTYPES = set(DTYPE_BITS)
MAX_DIMENSION = 2**40


class ModelRefused(ValueError):
    """Why a model file is not taken, in words for the participant; `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def check_name(name: str) -> str:
    name = name.strip()
    lower = name.lower()
    if lower.endswith(PICKLED):
        raise ModelRefused(
            f"{name}: pickled model files ({', '.join(PICKLED)}) can run code when they are loaded, "
            "so the workshop takes only .safetensors. Convert it, or look for a .safetensors version."
        )
    if not lower.endswith(ALLOWED_SUFFIX):
        raise ModelRefused(f"{name}: only .safetensors files are accepted.")
    if not NAME.match(name):
        raise ModelRefused(f"{name}: use letters, digits, spaces and . _ - ( ) + in the name (at most 160 characters).")
    return name


def looks_pickled(head: bytes) -> bool:
    """Whether a file's first bytes (16 are enough) are a pickle's (protocol 2 and later start
    with 0x80) or a zip's (torch.save). A safetensors file starts with its header's length, whose
    first byte is 0x80 for a length of 128, 384, 640 …: its header's "{" at byte 8 tells them apart."""
    return head.startswith((b"\x80", b"PK\x03\x04")) and head[8:9] != b"{"


def check_header(head: bytes, size: int) -> dict:
    """The parsed header of a safetensors file of `size` bytes whose first bytes are `head`
    (at least 8 + the header's length), or ModelRefused."""
    if size < 8 or len(head) < 8:
        raise ModelRefused("This is not a valid safetensors file: it is too short.")
    (length,) = struct.unpack("<Q", head[:8])
    if looks_pickled(head):
        raise ModelRefused(
            "This is a pickled model (a .ckpt or .pt renamed), not a safetensors file: it is refused, "
            "because loading it could run code on the shared GPU."
        )
    if length > MAX_HEADER_BYTES and 8 + length <= size:
        raise ModelRefused(
            f"This safetensors file's header is {length / 2**20:.0f} MB; a model the workshop takes "
            f"has at most {MAX_HEADER_BYTES // 2**20} MB of header (a LoRA needs under 1 MB)."
        )
    if length < 2 or length > MAX_HEADER_BYTES or 8 + length > size:
        raise ModelRefused("This is not a valid safetensors file: its header does not fit the file.")
    if len(head) < 8 + length:
        raise ValueError("read 8 + the header's length bytes before checking")
    header = _parse(head[8 : 8 + length])
    _check_tensors(header, size - 8 - length)
    return header


def _parse(raw: bytes) -> dict:
    """The header's JSON, counted before it is parsed (the parse is what costs memory)."""
    if raw.count(b'"data_offsets"') > MAX_TENSORS:
        raise ModelRefused(
            f"This safetensors file holds more than {MAX_TENSORS:,} tensors; a LoRA holds a few thousand at most."
        )
    # Tables and lists beyond what the tensors need: a header of a million empty {} parsed to
    # 90 MB. Each tensor has one table and two lists.
    if raw.count(b"{") > MAX_TENSORS + 1000 or raw.count(b"[") > 2 * MAX_TENSORS + 1000:
        raise ModelRefused("This is not a LoRA's safetensors header: it holds far more tables or lists than tensors.")
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelRefused("This is not a valid safetensors file: its header is not JSON.") from None
    if not isinstance(header, dict):
        raise ModelRefused("This is not a valid safetensors file: its header is not a table of tensors.")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelRefused(
            "This is not a valid safetensors file: its metadata (the trainer's notes in the header) holds "
            "something other than text."
        )
    return header


def _check_tensors(header: dict, data: int) -> None:
    """Every tensor well formed, within the `data` bytes after the header, and (as the
    safetensors loader demands) their bytes back to back from the first to the last, with no
    overlap and no gap."""
    tensors = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if isinstance(offsets, list) and len(offsets) == 2 and _integer(offsets[1]) and offsets[1] > data:
            raise ModelRefused(
                "This file is incomplete: it ends before its last tensor. Download it again, then upload it."
            )
        if not _well_formed(key, info, data):
            shown = key.encode("utf-8", "replace").decode("utf-8")[:80]
            raise ModelRefused(f"This is not a valid safetensors file: tensor {shown!r} is malformed.")
        tensors += 1
        if tensors > MAX_TENSORS:  # spelled otherwise than the count before the parse saw
            raise ModelRefused(f"This safetensors file holds more than {MAX_TENSORS:,} tensors.")
    if not tensors:
        raise ModelRefused("This safetensors file holds no tensors.")
    end = 0
    for start, stop in sorted(tuple(info["data_offsets"]) for key, info in header.items() if key != "__metadata__"):
        if start != end:
            raise ModelRefused("This is not a valid safetensors file: its tensors overlap or leave gaps in the data.")
        end = stop
    if end != data:
        raise ModelRefused("This is not a valid safetensors file: its data does not end where its last tensor does.")


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list) -> dict:
    table = dict(pairs)
    if len(table) != len(pairs):
        raise ValueError("a key twice")
    return table


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _well_formed(key: str, info, data: int) -> bool:
    """A tensor entry as the safetensors format defines it: a known dtype, a shape of at most 8
    whole dimensions, and offsets inside the data whose span is exactly the shape's bytes."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no file system or GPU host could name it
        return False
    if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) or info["dtype"] not in DTYPES:
        return False
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not (
        isinstance(shape, list) and len(shape) <= 8 and all(_integer(d) and 0 <= d <= MAX_DIMENSION for d in shape)
    ):
        return False
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(_integer(o) for o in offsets)
        and 0 <= offsets[0] <= offsets[1] <= data
    ):
        return False
    elements = 1
    for dimension in shape:
        elements *= dimension
    return (elements * DTYPE_BITS[info["dtype"]] + 7) // 8 == offsets[1] - offsets[0]


def header_length(head: bytes) -> int:
    return struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else 0


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()
