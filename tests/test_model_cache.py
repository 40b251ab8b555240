"""The GPU host's cache of participants' models (gpuworker.own_models), on its own."""

import hashlib
import os

import pytest

from gpuworker.own_models import ModelCache, ModelRejected


def item(name, data, folder="loras"):
    return {"folder": folder, "name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def fetcher(data, calls):
    def fetch():
        calls.append(1)
        yield data

    return fetch


def test_one_blob_per_content_links_per_name_and_lru_eviction(tmp_path):
    cache = ModelCache(tmp_path, cap_bytes=250)
    a, b, c = b"a" * 100, b"b" * 100, b"c" * 100
    calls = []
    assert cache.ensure(item("ws-001/a.safetensors", a), fetcher(a, calls))
    assert not cache.ensure(item("ws-002/same.safetensors", a), fetcher(a, calls)), "the same bytes: no second fetch"
    assert len(calls) == 1 and (tmp_path / "loras/ws-002/same.safetensors").read_bytes() == a
    cache.ensure(item("ws-001/b.safetensors", b), fetcher(b, calls))
    os.utime(cache.blob(item("x", b)["sha256"]), (1, 1))  # b is now the least recently used
    cache.ensure(item("ws-003/c.safetensors", c), fetcher(c, calls))
    assert not (tmp_path / "loras/ws-001/b.safetensors").exists(), "evicted with its link"
    assert (tmp_path / "loras/ws-001/a.safetensors").read_bytes() == a and cache.used() == 200


def test_forget_keeps_a_blob_another_workspace_still_uses(tmp_path):
    cache = ModelCache(tmp_path, cap_bytes=1000)
    data = b"x" * 10
    for name in ("ws-001/m.safetensors", "ws-002/m.safetensors"):
        cache.ensure(item(name, data), fetcher(data, []))
    cache.saw_deletions([{"id": 7, **item("ws-001/m.safetensors", data)}])
    assert not (tmp_path / "loras/ws-001").exists() and (tmp_path / "loras/ws-002/m.safetensors").read_bytes() == data
    assert cache.deletions_seen() == 7
    cache.forget("loras", "ws-002/m.safetensors", item("", data)["sha256"])
    assert cache.used() == 0


@pytest.mark.parametrize(
    "name", ["../../etc/x.safetensors", "shared/base.safetensors", "ws-001/../x.safetensors", "ws-001/x.ckpt"]
)
def test_only_participant_model_names_and_checked_bytes(tmp_path, name):
    cache = ModelCache(tmp_path, cap_bytes=1000)
    with pytest.raises(ModelRejected):
        cache.ensure(item(name, b"1"), fetcher(b"1", []))


def test_bytes_that_do_not_match_their_hash_are_not_kept(tmp_path):
    cache = ModelCache(tmp_path, cap_bytes=1000)
    with pytest.raises(ModelRejected, match="do not match"):
        cache.ensure(item("ws-001/m.safetensors", b"right"), fetcher(b"wrong", []))
    assert cache.used() == 0 and not list(cache.blobs.iterdir())


def test_a_hosts_catalog_leaves_out_the_participants_models_it_caches():
    from gpuworker.catalog import catalog_fingerprint, catalog_of
    from gpuworker.comfy import ComfyClient
    from scripts.comfyui_double import ComfyUIDouble

    with ComfyUIDouble(model_files=["base.safetensors", "ws-001/style.safetensors"]) as double:
        comfy = ComfyClient(double.url)
        catalog = catalog_of(comfy, comfy.system_stats())
    options = catalog["object_info"]["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert options == ["base.safetensors"]
    with ComfyUIDouble(model_files=["base.safetensors"]) as double:
        comfy = ComfyClient(double.url)
        assert catalog_fingerprint(catalog_of(comfy, comfy.system_stats())) == catalog_fingerprint(catalog), (
            "placing a participant's model is no catalog change"
        )
