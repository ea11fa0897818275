"""Artefact cache: location, keying, atomic store, and refusal/rebuild of stale or corrupt files."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ros2_owl.backends.cache import (
    ArtefactCache,
    ArtefactKey,
    CacheError,
    default_cache_dir,
    model_fingerprint,
    module_fingerprint,
    sha256_file,
)

KEY = ArtefactKey(
    model_id="google/owlvit-base-patch32",
    revision="hub:abc123",
    encoder="OwlImageEncoder",
    input_size=768,
    precision="float32",
    min_batch=1,
    max_batch=8,
    backend="onnx",
    runtime_version="torch-2.13.0-opset18",
    device="cpu",
    weights="0123456789abcdef",
    output_names=("class_embeds", "pred_boxes"),
)


def write_bytes(data: bytes):
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def test_default_cache_dir_env_and_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ROS2_OWL_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert ArtefactCache().root == tmp_path / "c"
    monkeypatch.delenv("ROS2_OWL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "ros2_owl"


@pytest.mark.parametrize(
    "change",
    [
        {"precision": "float16"},
        {"input_size": 960},
        {"max_batch": 4},
        {"min_batch": 2},
        {"runtime_version": "torch-2.14.0-opset18"},
        {"device": "NVIDIA Orin sm87"},
        {"revision": "hub:def456"},
        {"weights": "fedcba9876543210"},
        {"model_id": "google/owlvit-base-patch16"},
        {"backend": "tensorrt"},
        {"output_names": ("class_embeds",)},
        {"extra": (("opt_batch", "4"),)},
    ],
)
def test_every_key_field_changes_the_artefact_path(tmp_path, change):
    cache = ArtefactCache(tmp_path)
    other = dataclasses.replace(KEY, **change)
    assert other.digest() != KEY.digest()
    assert cache.path_for(other, "onnx") != cache.path_for(KEY, "onnx")
    cache.store(KEY, "onnx", write_bytes(b"old artefact"))
    assert cache.load(other, "onnx") is None  # never reuses the artefact of another key


def test_key_roundtrips_through_manifest_json():
    assert ArtefactKey.from_dict(json.loads(json.dumps(KEY.to_dict()))) == KEY
    assert "768px" in KEY.describe() and "batch 1..8" in KEY.describe()


def test_store_then_load_returns_verified_entry(tmp_path):
    cache = ArtefactCache(tmp_path)
    entry = cache.store(KEY, "onnx", write_bytes(b"graph bytes"), info={"parity": 1e-5})
    assert entry.path.read_bytes() == b"graph bytes"
    assert entry.path.parent == tmp_path / "onnx"
    assert "owlvit-base-patch32" in entry.path.name and "768px-float32-b1-8" in entry.path.name
    manifest = json.loads(entry.manifest_path.read_text())
    assert manifest["sha256"] == sha256_file(entry.path)
    assert manifest["size"] == len(b"graph bytes")
    assert manifest["key"] == KEY.to_dict()
    assert manifest["info"] == {"parity": 1e-5}
    loaded = cache.load(KEY, "onnx", on_invalid="error")
    assert loaded is not None and loaded.path == entry.path
    assert [e.path for e in cache.entries()] == [entry.path]


def test_absent_artefact_loads_as_none(tmp_path):
    assert ArtefactCache(tmp_path).load(KEY, "onnx", on_invalid="error") is None


def test_corrupted_artefact_is_refused_with_clear_message(tmp_path):
    cache = ArtefactCache(tmp_path)
    entry = cache.store(KEY, "onnx", write_bytes(b"graph bytes"))
    entry.path.write_bytes(b"graph bytez")  # same size, different content
    with pytest.raises(CacheError, match=r"is corrupted: sha256 .* does not match") as info:
        cache.load(KEY, "onnx", on_invalid="error")
    assert str(entry.path) in str(info.value)
    assert entry.path.exists()  # "error" leaves the evidence in place


def test_truncated_artefact_reports_size(tmp_path):
    cache = ArtefactCache(tmp_path)
    entry = cache.store(KEY, "onnx", write_bytes(b"graph bytes"))
    entry.path.write_bytes(b"graph")
    with pytest.raises(CacheError, match="5 bytes, manifest says 11"):
        cache.load(KEY, "onnx", on_invalid="error")


def test_corrupted_artefact_is_deleted_for_rebuild_with_warning(tmp_path, caplog):
    cache = ArtefactCache(tmp_path)
    entry = cache.store(KEY, "onnx", write_bytes(b"graph bytes"))
    entry.path.write_bytes(b"xxxxx")
    with caplog.at_level(logging.WARNING, logger="ros2_owl.backends.cache"):
        assert cache.load(KEY, "onnx", on_invalid="rebuild") is None
    assert "corrupted" in caplog.text and "rebuilding" in caplog.text
    assert not entry.path.exists() and not entry.manifest_path.exists()
    rebuilt = cache.store(KEY, "onnx", write_bytes(b"graph bytes"))
    assert cache.load(KEY, "onnx", on_invalid="error").path == rebuilt.path


def test_manifest_of_another_key_is_refused_naming_the_field(tmp_path):
    cache = ArtefactCache(tmp_path)
    fp16 = dataclasses.replace(KEY, precision="float16")
    entry = cache.store(fp16, "onnx", write_bytes(b"fp16 graph"))
    # Someone copies an fp16 artefact (and its manifest) over the fp32 slot.
    target = cache.path_for(KEY, "onnx")
    target.write_bytes(entry.path.read_bytes())
    cache.manifest_path(target).write_text(entry.manifest_path.read_text())
    with pytest.raises(CacheError, match=r"different key \(precision: 'float16' != 'float32'\)"):
        cache.load(KEY, "onnx", on_invalid="error")


def test_missing_or_broken_manifest_is_refused(tmp_path):
    cache = ArtefactCache(tmp_path)
    entry = cache.store(KEY, "onnx", write_bytes(b"graph"))
    entry.manifest_path.unlink()
    with pytest.raises(CacheError, match="has no manifest"):
        cache.load(KEY, "onnx", on_invalid="error")
    entry.manifest_path.write_text("{not json")
    with pytest.raises(CacheError, match="unreadable or incomplete"):
        cache.load(KEY, "onnx", on_invalid="error")
    entry.path.unlink()
    with pytest.raises(CacheError, match="is missing"):
        cache.load(KEY, "onnx", on_invalid="error")


def test_failed_build_leaves_nothing_behind(tmp_path):
    cache = ArtefactCache(tmp_path)

    def fail(path: Path) -> None:
        path.write_bytes(b"half written")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        cache.store(KEY, "onnx", fail)
    assert list((tmp_path / "onnx").iterdir()) == []
    assert cache.load(KEY, "onnx", on_invalid="error") is None


def test_local_model_fingerprint_tracks_config_and_weights(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    (model / "model.safetensors").write_bytes(b"w" * 10)
    first = model_fingerprint(str(model))
    assert first.startswith("local:") and model_fingerprint(str(model)) == first
    (model / "config.json").write_text('{"a": 2}')
    second = model_fingerprint(str(model))
    assert second != first
    (model / "model.safetensors").write_bytes(b"w" * 11)
    assert model_fingerprint(str(model)) != second


def test_hub_fingerprint_without_local_snapshot_names_revision():
    assert model_fingerprint("nobody/no-such-model") == "hub:unresolved"
    assert model_fingerprint("nobody/no-such-model", "v1.0") == "hub:v1.0"


def test_module_fingerprint_sees_weight_changes():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    assert module_fingerprint(a) == module_fingerprint(b)
    with torch.no_grad():
        b.weight[1, 2] += 1e-3
    assert module_fingerprint(a) != module_fingerprint(b)


def test_module_fingerprint_is_independent_of_thread_count():
    torch.manual_seed(1)
    module = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.LayerNorm(512))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = module_fingerprint(module)
        torch.set_num_threads(max(2, threads))
        assert module_fingerprint(module) == one
    finally:
        torch.set_num_threads(threads)
    assert module_fingerprint(module.to(torch.bfloat16)) != one  # dtype and bytes count


READ_ONLY_CHECK = """
import sys
from ros2_owl.backends.cache import ArtefactCache, CacheError
from ros2_owl.backends.export import export_cached
from test_export import ToyEncoder

cache = ArtefactCache(sys.argv[1])
entry = export_cached(ToyEncoder(), model_id="toy", cache=cache, max_batch=2)
print("reused", entry.path)
try:
    export_cached(ToyEncoder(seed=1), model_id="toy", cache=cache, max_batch=2)
except CacheError as error:
    print("refused", error)
"""


def _run_on_read_only_mount(root: Path, code: str) -> subprocess.CompletedProcess:
    """Run python `code` in a private mount namespace where `root` is a read-only bind mount."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode:
        pytest.skip("making a read-only filesystem needs unshare -m (root or CAP_SYS_ADMIN)")
    shell = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && exec "$2" -c "$3" "$1"'
    env = dict(os.environ)
    here = Path(__file__).resolve()  # test_export (ToyEncoder) beside it, the checkout above
    env["PYTHONPATH"] = os.pathsep.join(
        [str(here.parent), str(here.parents[2]), env.get("PYTHONPATH", "")]
    )
    argv = ["unshare", "-m", "sh", "-c", shell, "sh", str(root), sys.executable, code]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def test_read_only_cache_reads_a_valid_artefact_and_names_the_fix_otherwise(tmp_path):
    """A valid artefact is used without the build lock; nothing valid is one clear line."""
    from test_export import ToyEncoder

    from ros2_owl.backends.export import export_cached

    built = export_cached(ToyEncoder(), model_id="toy", cache=ArtefactCache(tmp_path), max_batch=2)
    for lock in tmp_path.rglob("*.lock"):
        lock.unlink()  # a cache copied onto read-only media has no lock files
    done = _run_on_read_only_mount(tmp_path, READ_ONLY_CHECK)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"reused {built.path}", done.stdout
    assert lines[1].startswith(f"refused the artefact cache {tmp_path} is not writable"), lines[1]
    assert "ROS2_OWL_CACHE" in lines[1] and len(lines) == 2
