"""A model file's safetensors header, parsed with bounds: the red team's memory bomb (a 99 MB
header of 1.78 million empty tensors grew Daphne by 1.2 GB) and a deep nesting (RecursionError,
an HTTP 500) are refused with a sentence, and a real LoRA's header still passes."""

import json
import struct
import tracemalloc

import pytest

from accounts.own_models import MAX_HEADER_BYTES, MAX_TENSORS, ModelRefused, check_header


def file_with(header: bytes, data_bytes: int = 0) -> tuple[bytes, int]:
    header += b" " * (-len(header) % 8)
    head = struct.pack("<Q", len(header)) + header
    return head, len(head) + data_bytes


def lora_header(tensors: int) -> bytes:
    """Like a kohya LoRA: up, down and alpha of each module, F16, rank 32."""
    entries, offset = {"__metadata__": {"ss_network_dim": "32", "ss_tag_frequency": json.dumps({"a": 1})}}, 0
    for n in range(tensors):
        size = 32 * 1280 * 2
        entries[f"lora_unet_down_blocks_{n}_attentions_0_proj_in.lora_up.weight"] = {
            "dtype": "F16",
            "shape": [1280, 32],
            "data_offsets": [offset, offset + size],
        }
        offset += size
    return json.dumps(entries).encode(), offset


def test_a_large_real_lora_header_passes():
    header, data = lora_header(6000)
    assert len(header) < 1024 * 1024, "a few thousand tensors are under 1 MB of header"
    head, size = file_with(header, data)
    assert len(check_header(head, size)) == 6001


@pytest.mark.parametrize(
    "attack, said",
    [
        ("a 99 MB header", "header is 99 MB"),
        ("2 million empty tensors in 4 MB", f"more than {MAX_TENSORS:,} tensors"),
        ("200,000 nested brackets", "far more tables or lists than tensors"),
        ("a million empty tables", "far more tables or lists than tensors"),
        ("a shape of a million dimensions", "is malformed"),
    ],
)
def test_a_header_built_to_exhaust_the_app_is_refused_with_a_sentence(attack, said):
    if attack == "a 99 MB header":
        head, size = struct.pack("<Q", 99 * 2**20), 200 * 2**20
    elif attack.startswith("2 million"):
        one = b'"t%d":{"dtype":"F16","shape":[0],"data_offsets":[0,0]},'
        body = b"".join(one % n for n in range(MAX_HEADER_BYTES // len(one % 10**6)))
        head, size = file_with(b"{" + body[: MAX_HEADER_BYTES - 8].rsplit(b",", 1)[0] + b"}")
    elif attack.startswith("200,000"):
        head, size = file_with(b"[" * 200_000)
    elif attack.startswith("a million empty"):
        head, size = file_with(b'{"a":[' + b",".join([b"{}"] * 1_000_000) + b"]}")
    else:
        head, size = file_with(
            json.dumps({"t": {"dtype": "F16", "shape": [1] * 1_000_000, "data_offsets": [0, 2]}}).encode(), 2
        )
    with pytest.raises(ModelRefused, match=said):
        check_header(head, size)


def test_parsing_the_worst_header_allowed_stays_within_64_mb():
    """The costliest 4 MB a header may be for the parser: one list of floats."""
    numbers = b"[" + b",".join(b"1.5" for _ in range((MAX_HEADER_BYTES - 64) // 4)) + b"]"
    head, size = file_with(b'{"t":{"dtype":"F16","shape":' + numbers + b',"data_offsets":[0,2]}}', 2)
    tracemalloc.start()
    try:
        with pytest.raises(ModelRefused):
            check_header(head, size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB"


@pytest.mark.parametrize(
    "entry",
    [
        {"dtype": "U8", "shape": [2**64, 2**64], "data_offsets": [0, 1]},  # dimensions beyond any tensor
        {"dtype": "F32", "shape": [10, 10], "data_offsets": [0, 1]},  # 400 bytes of shape in a span of 1
        {"dtype": "U8", "shape": [True], "data_offsets": [0, 1]},  # a bool is no dimension
        {"dtype": ["U8"], "shape": [1], "data_offsets": [0, 1]},  # a dtype that is no string: was a 500
        {"dtype": {"U8": 1}, "shape": [1], "data_offsets": [0, 1]},
    ],
)
def test_a_tensor_whose_shape_does_not_match_its_bytes_is_refused(entry):
    """Accepted with 201 by the red team: the shape and dtype were never compared with the span."""
    head, size = file_with(json.dumps({"w": entry}).encode(), 1)
    with pytest.raises(ModelRefused, match="malformed"):
        check_header(head, size)


def test_a_tensor_name_no_file_system_can_hold_is_refused():
    head, size = file_with(b'{"\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1)
    with pytest.raises(ModelRefused, match="malformed"):
        check_header(head, size)


ONE = '"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}'


@pytest.mark.parametrize(
    "header, data",
    [
        ('{"__metadata__":{"a":1},' + ONE + "}", 1),  # metadata values are texts
        ('{"__metadata__":["a"],' + ONE + "}", 1),
        ('{"__metadata__":{"a":NaN},' + ONE + "}", 1),  # not JSON at all
        ('{"__metadata__":{"a":"x","a":"y"},' + ONE + "}", 1),  # a key twice
        ("{" + ONE + ',"v":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1),  # two tensors on one byte
        ('{"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', 2),  # a gap before the first tensor
        ("{" + ONE + "}", 2),  # a byte after the last tensor
    ],
)
def test_a_header_the_safetensors_loader_refuses_is_refused_here_too(header, data):
    """The red team: 15 header forms the loader ComfyUI uses refuses were kept with 201, and the
    job using one then failed on the GPU host."""
    head, size = file_with(header.encode(), data)
    with pytest.raises(ModelRefused, match="not a valid safetensors file"):
        check_header(head, size)


def test_empty_tensors_and_texts_in_the_metadata_pass():
    header = '{"__metadata__":{"a":"1"},"e":{"dtype":"F16","shape":[0],"data_offsets":[0,0]},' + ONE + "}"
    head, size = file_with(header.encode(), 1)
    assert set(check_header(head, size)) == {"__metadata__", "e", "w"}


@pytest.mark.parametrize("length", [128, 384, 640, 896, 1152])
def test_a_header_whose_length_starts_with_the_pickle_byte_passes(length):
    """The trial: a valid file with a 128-byte header (its first byte 0x80, as a pickle's) was
    refused as a pickled model: about 1 file in 32."""
    header = ("{" + ONE + "}").encode()
    header += b" " * (length - len(header))
    head, size = file_with(header, 1)
    assert head[0] == 0x80 and check_header(head, size)["w"]["shape"] == [1]
