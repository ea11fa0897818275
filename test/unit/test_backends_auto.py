"""backend='auto': the measured winner, the cached decision, and reduced precision only on request."""

from __future__ import annotations

import pytest
import torch
from test_backends import ToyEncoder

from ros2_owl.backends import BackendError, TorchImageEncoder, make_image_encoder
from ros2_owl.backends import auto as auto_mod
from ros2_owl.backends.auto import Candidate, choose_cpu, cpu_candidates, cuda_rule
from ros2_owl.backends.cache import ArtefactCache

TORCH = Candidate("torch", "float32")
SLOW = Candidate("fake-slow", "float32")
FAST_REDUCED = Candidate("fake-fast", "bfloat16", reduced=True)


class RepeatingEncoder:
    """A backend that does the same work `repeats` times per call: slower by construction."""

    def __init__(self, inner, repeats: int, name: str):
        self.inner, self.repeats, self.name = inner, repeats, name
        self.output_names = inner.output_names

    def __call__(self, pixel_values):
        for _ in range(self.repeats - 1):
            self.inner(pixel_values)
        return self.inner(pixel_values)


class CachedOutputEncoder:
    """A backend that returns stored outputs without computing: faster than any real one."""

    name = "fake-fast"

    def __init__(self, inner, pixels):
        self.output_names = inner.output_names
        self.outputs = inner(pixels)

    def __call__(self, pixel_values):
        return self.outputs


class Builder:
    """Builds real torch or fake backends for a candidate and records which were built."""

    def __init__(self, module):
        self.module = module
        self.built: list[str] = []

    def __call__(self, candidate: Candidate):
        self.built.append(candidate.label)
        real = TorchImageEncoder(self.module)
        if candidate.backend == "fake-slow":
            return RepeatingEncoder(real, 30, "fake-slow")
        if candidate.backend == "broken":
            raise RuntimeError("runtime missing on this machine")
        if candidate.backend == "fake-fast":
            size = self.module.image_size
            return CachedOutputEncoder(real, torch.zeros(1, 3, size, size))
        return real


def _choose(tmp_path, builder, candidates, precision="fp32", dtype="auto"):
    return choose_cpu(
        builder.module,
        model_id="toy",
        precision=precision,
        dtype=dtype,
        build=builder,
        cache=ArtefactCache(tmp_path),
        candidates=candidates,
    )


def test_fake_slow_backend_loses(tmp_path):
    builder = Builder(ToyEncoder())
    encoder, choice = _choose(tmp_path, builder, [SLOW, TORCH])
    assert (choice.backend, choice.dtype, choice.source) == ("torch", "float32", "measured")
    assert isinstance(encoder, TorchImageEncoder)
    assert choice.timings_ms["fake-slow float32"] > choice.timings_ms["torch float32"]
    assert "fastest of 2 measured" in choice.reason and "next fake-slow float32" in choice.reason
    assert builder.built == ["fake-slow float32", "torch float32"]


def test_a_candidate_that_cannot_run_is_skipped_with_its_reason(tmp_path):
    messages: list[str] = []
    builder = Builder(ToyEncoder())
    _, choice = choose_cpu(
        builder.module,
        model_id="toy",
        precision="fp32",
        dtype="auto",
        build=builder,
        cache=ArtefactCache(tmp_path),
        candidates=[Candidate("broken", "float32"), TORCH],
        say=messages.append,
    )
    assert choice.backend == "torch" and list(choice.timings_ms) == ["torch float32"]
    assert "auto: skipping broken float32: runtime missing on this machine" in messages
    with pytest.raises(BackendError, match="no runnable candidate: broken float32: runtime"):
        _choose(tmp_path / "other", Builder(ToyEncoder()), [Candidate("broken", "float32")])


def test_decision_is_cached_and_reused_without_measuring(tmp_path, monkeypatch):
    first = Builder(ToyEncoder())
    _, choice = _choose(tmp_path, first, [SLOW, TORCH])
    again = Builder(ToyEncoder())
    encoder, cached = _choose(tmp_path, again, [SLOW, TORCH])
    assert again.built == ["torch float32"]  # only the winner is built; nothing is measured
    assert cached.source == "cache" and cached.backend == choice.backend
    assert cached.timings_ms == choice.timings_ms and isinstance(encoder, TorchImageEncoder)
    stored = [e for e in ArtefactCache(tmp_path).entries("auto")]
    assert len(stored) == 1 and stored[0].manifest["info"]["backend"] == "torch"
    # another thread count (or CPU, or runtime version) is another key: measured again
    monkeypatch.setattr(auto_mod, "thread_counts", lambda: "torch99-ort99")
    other = Builder(ToyEncoder())
    _, remeasured = _choose(tmp_path, other, [SLOW, TORCH])
    assert remeasured.source == "measured" and len(other.built) == 2
    assert len(list(ArtefactCache(tmp_path).entries("auto"))) == 2


def test_reduced_precision_never_chosen_without_allow_reduced(tmp_path):
    builder = Builder(ToyEncoder())
    _, choice = _choose(tmp_path, builder, [TORCH, FAST_REDUCED], precision="fp32")
    assert choice.backend == "torch" and "fake-fast bfloat16" not in builder.built
    assert "fake-fast bfloat16" not in choice.timings_ms  # not even measured
    allowed = Builder(ToyEncoder())
    _, reduced = _choose(tmp_path, allowed, [TORCH, FAST_REDUCED], precision="allow-reduced")
    assert (reduced.backend, reduced.dtype) == ("fake-fast", "bfloat16")
    # the shipped candidate list: fp32 keeps no reduced one, allow-reduced adds bf16 and int8
    assert all(not c.reduced for c in cpu_candidates("fp32", "auto"))
    labels = {c.label for c in cpu_candidates("allow-reduced", "auto")}
    assert {"torch bfloat16", "onnxruntime int8", "onnxruntime float32"} <= labels
    # an explicit dtype is the user's own choice and limits the pool to it
    assert [c.label for c in cpu_candidates("fp32", "bfloat16")] == ["torch bfloat16"]


def test_bad_precision_is_one_clear_error():
    with pytest.raises(BackendError, match="precision must be one of fp32, allow-reduced"):
        make_image_encoder("auto", ToyEncoder(), model_id="toy", precision="int4")


def test_auto_on_real_backends_picks_a_measured_fp32_one(tmp_path):
    module = ToyEncoder()
    messages: list[str] = []
    encoder = make_image_encoder(
        "auto", module, model_id="toy", cache_dir=tmp_path, progress=messages.append
    )
    choice = encoder.selection
    assert choice.source == "measured" and choice.dtype == "float32"
    assert set(choice.timings_ms) == {"onnxruntime float32", "torch float32"}
    assert choice.backend == min(choice.timings_ms, key=choice.timings_ms.get).split()[0]
    assert any("backend auto for ToyEncoder" in m for m in messages)
    x = torch.randn(2, 3, 32, 32)
    expected = TorchImageEncoder(ToyEncoder())(x)
    got = encoder(x)
    for name in module.output_names:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-5)
    assert next(module.parameters()).dtype == torch.float32  # caller's module never cast
    again = make_image_encoder("auto", ToyEncoder(), model_id="toy", cache_dir=tmp_path)
    assert again.selection.source == "cache" and again.selection.backend == choice.backend
    named = make_image_encoder("torch", ToyEncoder(), model_id="toy")
    assert named.selection.describe() == "torch float32 (user: asked for)"


def test_int8_onnxruntime_runs_near_fp32_and_is_cached(tmp_path):
    module = ToyEncoder()
    encoder = make_image_encoder(
        "onnxruntime", module, model_id="toy", dtype="int8", cache_dir=tmp_path
    )
    assert "int8" in encoder.onnx_path.name
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ref = TorchImageEncoder(ToyEncoder())(x)
    got = encoder(x)
    assert got["boxes"].shape == ref["boxes"].shape
    assert float((got["boxes"] - ref["boxes"]).abs().max()) < 0.05
    again = make_image_encoder(
        "onnxruntime", ToyEncoder(), model_id="toy", dtype="int8", cache_dir=tmp_path
    )
    assert again.onnx_path == encoder.onnx_path
    with pytest.raises(BackendError, match="dtype int8 runs with backend 'onnxruntime' on cpu"):
        make_image_encoder("torch", ToyEncoder(), model_id="toy", dtype="int8")


def test_cuda_rule_prefers_tensorrt_when_importable(monkeypatch):
    found = {"tensorrt": object()}
    monkeypatch.setattr(auto_mod.importlib.util, "find_spec", lambda name: found.get(name))
    choice = cuda_rule(torch.device("cuda"), "auto")
    assert (choice.backend, choice.dtype, choice.source) == ("tensorrt", "float16", "rule")
    found.clear()
    assert cuda_rule(torch.device("cuda"), "auto").backend == "torch"
    assert cuda_rule(torch.device("cuda"), "float32").dtype == "float32"


def test_auto_never_picks_the_remote_backend(tmp_path, monkeypatch):
    """triton is explicit only: not a CPU candidate, not the CUDA rule, not registrable, and a
    triton target handed to backend 'auto' is never used."""
    assert all(c.backend not in auto_mod.REMOTE_BACKENDS for c in auto_mod.CPU_CANDIDATES)
    with pytest.raises(BackendError, match="'triton' is remote and chosen explicitly"):
        auto_mod.register_cpu_candidate(Candidate("triton", "float32"))
    assert all(c.backend != "triton" for c in auto_mod.CPU_CANDIDATES)
    for importable in (True, False):
        monkeypatch.setattr(
            auto_mod.importlib.util,
            "find_spec",
            lambda name, ok=importable: object() if ok else None,
        )
        assert cuda_rule(torch.device("cuda"), "auto").backend != "triton"
    monkeypatch.undo()

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"backend auto read the triton target's {name}")

    encoder = make_image_encoder(
        "auto", ToyEncoder(), model_id="toy", cache_dir=tmp_path, triton=Untouchable()
    )
    assert encoder.selection.backend in ("torch", "onnxruntime")
