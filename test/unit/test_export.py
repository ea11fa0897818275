"""ONNX export: dynamic batch, named outputs, verification against torch, cached reuse."""

from __future__ import annotations

import threading

import onnx
import pytest
import torch

from ros2_owl.backends import BackendError, make_image_encoder
from ros2_owl.backends.cache import ArtefactCache, CacheError
from ros2_owl.backends.export import (
    TOLERANCES,
    ExportError,
    Tolerance,
    compare,
    export_cached,
    export_onnx,
    onnx_key,
    verify_onnx,
)
from ros2_owl.backends.onnxruntime_backend import OnnxRuntimeImageEncoder


class ToyEncoder(torch.nn.Module):
    """Patch embedding + two heads: the shape of an OWL image encoder in miniature."""

    output_names = ("feats", "boxes")

    def __init__(self, image_size: int = 32, seed: int = 0, cheat: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.image_size = image_size
        self.patch = torch.nn.Conv2d(3, 16, 8, 8)
        self.norm = torch.nn.LayerNorm(16)
        self.head = torch.nn.Linear(16, 4)
        self.cheat = cheat

    def forward(self, pixel_values: torch.Tensor):
        feats = self.norm(self.patch(pixel_values).flatten(2).transpose(1, 2))
        boxes = self.head(feats).sigmoid()
        if self.cheat and torch.compiler.is_exporting():
            boxes = boxes + 0.01  # a graph that silently differs from eager torch
        return feats, boxes


@pytest.fixture
def cache(tmp_path) -> ArtefactCache:
    return ArtefactCache(tmp_path / "cache")


def test_export_has_named_outputs_and_dynamic_batch(tmp_path):
    path = tmp_path / "toy.onnx"
    export_onnx(ToyEncoder(), path, max_batch=4)
    graph = onnx.load(str(path)).graph
    assert [o.name for o in graph.output] == ["feats", "boxes"]
    assert [i.name for i in graph.input] == ["pixel_values"]
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic, not fixed
    reports = verify_onnx(path, ToyEncoder(), batch_sizes=(1, 3, 4))
    assert [r.batch_size for r in reports] == [1, 3, 4]
    assert all(r.ok for r in reports)


def test_an_export_on_a_thread_leaves_what_other_threads_print_alone(tmp_path, capsys):
    """The background upgrade exports beside serve's frames: its prints (serve's URL) stay."""
    done = threading.Event()

    def export():
        try:
            export_onnx(ToyEncoder(), tmp_path / "toy.onnx", max_batch=2)
        finally:
            done.set()

    thread = threading.Thread(target=export)
    thread.start()
    printed = 0
    while not done.wait(0.005):  # print all through the export (a loop, not a wait for it)
        print("a line of the main thread")
        printed += 1
    thread.join()
    out = capsys.readouterr().out
    assert printed > 0 and out.count("a line of the main thread") == printed
    assert "[torch.onnx]" not in out  # the exporter itself is quiet


def test_graph_that_disagrees_with_torch_is_not_cached(cache):
    with pytest.raises(ExportError, match=r"disagrees with torch at batch 1: .*boxes: 1\.00e-02"):
        export_cached(ToyEncoder(cheat=True), model_id="toy", cache=cache, max_batch=2)
    assert list(cache.entries()) == []
    assert [p.suffix for p in (cache.root / "onnx").iterdir()] == [".lock"]


def test_module_without_encoder_attributes_is_rejected(tmp_path):
    with pytest.raises(ExportError, match="needs `output_names`"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")


def test_compare_reports_shape_mismatch_and_nan_as_failures():
    ref = {"a": torch.ones(2, 3), "b": torch.zeros(2)}
    bad = {"a": torch.ones(2, 4), "b": torch.tensor([0.0, float("nan")])}
    report = compare(bad, ref, TOLERANCES["float32"])
    assert not report.ok
    assert report.max_abs == {"a": float("inf"), "b": float("inf")}
    ok = compare({"a": ref["a"] + 1.5e-3, "b": ref["b"]}, ref, Tolerance(1e-3, 1e-3))
    assert ok.ok and ok.limits["a"] == pytest.approx(2e-3)


def test_cached_export_is_reused_and_force_rebuilds(cache):
    module = ToyEncoder()
    first = export_cached(module, model_id="toy", cache=cache, max_batch=4)
    assert first.manifest["info"]["parity"]["4"]["boxes"] < 1e-5
    mtime = first.path.stat().st_mtime_ns
    again = export_cached(module, model_id="toy", cache=cache, max_batch=4)
    assert again.path == first.path and again.path.stat().st_mtime_ns == mtime
    forced = export_cached(module, model_id="toy", cache=cache, max_batch=4, force=True)
    assert forced.path == first.path and forced.path.stat().st_mtime_ns != mtime


def test_key_separates_input_size_batch_and_weights():
    a = onnx_key(ToyEncoder(32), model_id="toy")
    assert onnx_key(ToyEncoder(32), model_id="toy") == a
    assert a.precision == "float32" and a.backend == "onnx" and a.input_size == 32
    assert onnx_key(ToyEncoder(48), model_id="toy").digest() != a.digest()
    assert onnx_key(ToyEncoder(32), model_id="toy", max_batch=4).digest() != a.digest()
    assert onnx_key(ToyEncoder(32, seed=1), model_id="toy").digest() != a.digest()


def test_changing_input_size_never_reuses_old_artefact(cache):
    small = make_image_encoder("onnxruntime", ToyEncoder(32), model_id="toy", cache_dir=cache.root)
    large = make_image_encoder("onnxruntime", ToyEncoder(48), model_id="toy", cache_dir=cache.root)
    assert len(list(cache.entries("onnx"))) == 2
    assert small(torch.randn(1, 3, 32, 32))["feats"].shape == (1, 16, 16)
    assert large(torch.randn(1, 3, 48, 48))["feats"].shape == (1, 36, 16)
    with pytest.raises(ValueError, match="must be 48x48"):
        large(torch.randn(1, 3, 32, 32))


def test_changing_precision_never_reuses_old_artefact(cache):
    fp32 = onnx_key(ToyEncoder(), model_id="toy")
    fp16 = onnx_key(ToyEncoder().half(), model_id="toy")
    assert fp16.precision == "float16" and cache.path_for(fp16, "onnx") != cache.path_for(
        fp32, "onnx"
    )
    make_image_encoder("onnxruntime", ToyEncoder(), model_id="toy", cache_dir=cache.root)
    with pytest.raises(BackendError, match="float16 only on CUDA"):
        make_image_encoder(
            "onnxruntime", ToyEncoder(), model_id="toy", cache_dir=cache.root, dtype="float16"
        )
    assert cache.load(fp16, "onnx") is None


def test_corrupted_artefact_refused_or_rebuilt_through_factory(cache):
    module = ToyEncoder()
    make_image_encoder("onnxruntime", module, model_id="toy", cache_dir=cache.root)
    (entry,) = cache.entries("onnx")
    data = bytearray(entry.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="is corrupted"):
        make_image_encoder(
            "onnxruntime", module, model_id="toy", cache_dir=cache.root, on_invalid="error"
        )
    encoder = make_image_encoder("onnxruntime", module, model_id="toy", cache_dir=cache.root)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats, boxes = module(x)
    out = encoder(x)
    torch.testing.assert_close(out["boxes"], boxes, atol=1e-5, rtol=1e-5)
    assert cache.load(onnx_key(module, model_id="toy"), "onnx", on_invalid="error") is not None


def test_ort_encoder_runs_any_batch_with_torch_tensors(cache):
    module = ToyEncoder()
    entry = export_cached(module, model_id="toy", cache=cache, max_batch=4)
    encoder = OnnxRuntimeImageEncoder(entry.path, output_names=module.output_names)
    assert encoder.image_size == 32 and encoder.output_names == ("feats", "boxes")
    for batch in (1, 4, 6):  # above max_batch still runs: the ONNX batch axis is symbolic
        x = torch.randn(batch, 3, 32, 32, dtype=torch.float64)  # cast to float32 inside
        out = encoder(x)
        with torch.no_grad():
            ref = module(x.float())
        assert list(out) == ["feats", "boxes"]
        for got, want in zip(out.values(), ref, strict=True):
            assert got.dtype == torch.float32 and got.device.type == "cpu"
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"must be \[B,3,S,S\]"):
        encoder(torch.randn(3, 32, 32))
