"""ONNX Runtime vs torch parity for every exported encoder graph (tiny random models).

Tolerances (stated): ONNX Runtime fp32 vs torch fp32, max abs error per output <= 1e-5 (observed
<= 4e-7 on these models; the export-time gate is 1e-3 + 1e-3 * max|output|). torch bf16 vs fp32
is a different precision, not a bug: on these 2-layer models its box drift is ~2e-3 of the
input size (~0.2 px at 96 px); it is checked <= 1e-2 here and measured on full size by
benchmarks/bench_backends.py.
"""

from __future__ import annotations

import copy

import pytest
import torch

from ros2_owl.backends import make_image_encoder
from ros2_owl.backends.cache import ArtefactCache
from ros2_owl.backends.export import onnx_key
from ros2_owl.models.clip import ClipModel
from ros2_owl.models.owl import OwlModel

ORT_ATOL = 1e-5
BF16_BOX_ATOL = 1e-2
MAX_BATCH = 4


@pytest.fixture(scope="module")
def artefact_dir(model_cache_dir):
    """Persistent like the test models: the cache's own keying decides what is reused."""
    return model_cache_dir / "artefacts"


@pytest.fixture(scope="module", params=["owlvit", "owlv2", "clip"])
def encoder_case(request, artefact_dir, tiny_owlvit_dir, tiny_owlv2_dir, tiny_clip_dir):
    """(model dir, torch encoder module, ORT backend) for each exported graph."""
    model_dir, loader = {
        "owlvit": (tiny_owlvit_dir, OwlModel.load),
        "owlv2": (tiny_owlv2_dir, OwlModel.load),
        "clip": (tiny_clip_dir, ClipModel.load),
    }[request.param]
    module = loader(str(model_dir)).encoder.eval()
    backend = make_image_encoder(
        "onnxruntime", module, model_id=str(model_dir), cache_dir=artefact_dir, max_batch=MAX_BATCH
    )
    return request.param, model_dir, module, backend


EXPECTED_OUTPUTS = {
    "owlvit": ("class_embeds", "logit_shift", "logit_scale", "pred_boxes"),
    "owlv2": ("class_embeds", "logit_shift", "logit_scale", "pred_boxes", "objectness"),
    "clip": ("image_embeds",),
}


@pytest.mark.parametrize("batch", [1, 3, MAX_BATCH])
def test_onnxruntime_matches_torch(encoder_case, batch):
    kind, _, module, backend = encoder_case
    assert backend.output_names == EXPECTED_OUTPUTS[kind] == module.output_names
    size = module.image_size
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        reference = dict(zip(module.output_names, module(x), strict=True))
    got = backend(x)
    assert list(got) == list(module.output_names)
    for name, ref in reference.items():
        assert got[name].shape == ref.shape, name
        assert got[name].dtype == torch.float32
        err = float((got[name] - ref).abs().max())
        assert err <= ORT_ATOL, f"{kind} {name}: max abs error {err:.2e} > {ORT_ATOL}"


def test_export_recorded_parity_in_manifest(encoder_case, artefact_dir):
    kind, model_dir, module, _ = encoder_case
    key = onnx_key(module, model_id=str(model_dir), max_batch=MAX_BATCH)
    entry = ArtefactCache(artefact_dir).load(key, "onnx", on_invalid="error")
    manifest = entry.manifest
    assert manifest["key"]["output_names"] == list(EXPECTED_OUTPUTS[kind])
    assert manifest["key"]["revision"].startswith("local:")
    parity = manifest["info"]["parity"]
    assert set(parity) == {"1", "2", str(MAX_BATCH)}
    assert all(v <= ORT_ATOL for per_batch in parity.values() for v in per_batch.values())


def test_second_factory_call_reuses_the_cached_graph(encoder_case, artefact_dir):
    _, model_dir, module, _ = encoder_case
    path = ArtefactCache(artefact_dir).path_for(
        onnx_key(module, model_id=str(model_dir), max_batch=MAX_BATCH), "onnx"
    )
    before = path.stat().st_mtime_ns
    make_image_encoder(
        "onnxruntime", module, model_id=str(model_dir), cache_dir=artefact_dir, max_batch=MAX_BATCH
    )
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_backend_precisions(encoder_case, dtype):
    kind, model_dir, module, _ = encoder_case
    encoder = make_image_encoder(
        "torch", copy.deepcopy(module), model_id=str(model_dir), dtype=dtype
    )
    size = module.image_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = dict(zip(module.output_names, module(x), strict=True))
    got = encoder(x)
    assert all(t.dtype == torch.float32 for t in got.values())
    name = "pred_boxes" if kind != "clip" else "image_embeds"
    drift = float((got[name] - reference[name]).abs().max())
    if dtype == "float32":
        assert drift == 0.0
    else:
        assert 0.0 < drift <= BF16_BOX_ATOL, f"bf16 drift {drift:.2e}"
