"""Backend factory: choices, clear errors naming the fallback, ORT session settings, TensorRT."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch

from ros2_owl.backends import BACKENDS, BackendError, TorchImageEncoder, make_image_encoder
from ros2_owl.backends.onnxruntime_backend import (
    OnnxRuntimeImageEncoder,
    choose_providers,
    physical_cores,
    session_options,
)

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_CUDA = torch.cuda.is_available()


class ToyEncoder(torch.nn.Module):
    """Smallest encoder-shaped module: one conv 'patch embedding' and a box head."""

    output_names = ("feats", "boxes")
    image_size = 32

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = torch.nn.Conv2d(3, 8, 8, 8)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, pixel_values):
        feats = self.patch(pixel_values).flatten(2).transpose(1, 2)
        return feats, self.head(feats).sigmoid()


def test_unknown_backend_lists_choices():
    with pytest.raises(BackendError, match="unknown backend 'openvino'; choose one of auto, "):
        make_image_encoder("openvino", ToyEncoder(), model_id="toy")
    assert BACKENDS == ("auto", "torch", "onnxruntime", "tensorrt", "triton")


def test_bad_options_are_rejected_before_any_work(tmp_path):
    with pytest.raises(BackendError, match="max_batch must be >= 1"):
        make_image_encoder("onnxruntime", ToyEncoder(), model_id="t", max_batch=0)
    with pytest.raises(BackendError, match="on_invalid must be"):
        make_image_encoder("onnxruntime", ToyEncoder(), model_id="t", on_invalid="ignore")
    with pytest.raises(BackendError, match="unsupported dtype 'int4'"):
        make_image_encoder("onnxruntime", ToyEncoder(), model_id="t", dtype="int4")
    with pytest.raises(BackendError, match="backend='torch' with dtype='bfloat16'"):
        make_image_encoder(
            "onnxruntime", ToyEncoder(), model_id="t", dtype="bfloat16", cache_dir=tmp_path
        )
    assert not any(tmp_path.iterdir())  # nothing exported for a refused request


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_missing_tensorrt_names_the_fallback(tmp_path):
    with pytest.raises(BackendError) as info:
        make_image_encoder(
            "tensorrt",
            ToyEncoder(),
            model_id="toy",
            device="cuda",
            dtype="float16",
            cache_dir=tmp_path,
        )
    message = str(info.value)
    assert "`import tensorrt` failed" in message
    assert "backend='onnxruntime'" in message and "backend='torch'" in message
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
def test_tensorrt_without_gpu_names_the_fallback(tmp_path):
    from ros2_owl.backends.tensorrt_backend import require_cuda

    with pytest.raises(BackendError, match="needs a CUDA GPU but torch sees none; use backend="):
        require_cuda("cuda")
    with pytest.raises(BackendError, match="runs on a CUDA device, not cpu"):
        require_cuda("cpu")


def test_missing_onnxruntime_names_the_fallback(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an uninstalled package does
    with pytest.raises(BackendError, match=r"needs the onnxruntime package.*backend='torch'"):
        make_image_encoder("onnxruntime", ToyEncoder(), model_id="toy", cache_dir=tmp_path)


def test_cuda_without_cuda_provider_names_the_fallback():
    with pytest.raises(BackendError, match="needs onnxruntime-gpu.*device='cpu'.*backend='torch'"):
        choose_providers("cuda", ["CPUExecutionProvider"])
    assert choose_providers("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CPUExecutionProvider"
    ]
    with pytest.raises(BackendError, match="cpu or cuda, not 'mps'"):
        choose_providers("mps", ["CPUExecutionProvider"])


def test_session_uses_physical_cores_and_full_graph_optimisation():
    import onnxruntime as ort

    cores = physical_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    opts = session_options(ort)
    assert opts.intra_op_num_threads == cores
    assert opts.inter_op_num_threads == 1
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_onnxruntime_factory_returns_float32_dict_in_output_order(tmp_path):
    module = ToyEncoder()
    encoder = make_image_encoder("onnxruntime", module, model_id="toy", cache_dir=tmp_path)
    assert isinstance(encoder, OnnxRuntimeImageEncoder)
    assert encoder.name == "onnxruntime"
    assert encoder.session_providers == ["CPUExecutionProvider"]
    assert encoder.output_names == ("feats", "boxes")
    out = encoder(torch.rand(3, 3, 32, 32))
    assert list(out) == ["feats", "boxes"]
    assert out["boxes"].shape == (3, 16, 4) and out["boxes"].dtype == torch.float32


def test_onnxruntime_factory_does_not_move_the_callers_module(tmp_path):
    module = ToyEncoder().to(torch.bfloat16)
    make_image_encoder("onnxruntime", module, model_id="toy", cache_dir=tmp_path)
    assert module.head.weight.dtype == torch.bfloat16  # exported from a float32 copy


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_backend_dtypes_return_float32(dtype):
    module = ToyEncoder()
    encoder = make_image_encoder("torch", module, model_id="toy", dtype=dtype)
    assert isinstance(encoder, TorchImageEncoder)
    out = encoder(torch.rand(2, 3, 32, 32))
    assert all(t.dtype == torch.float32 for t in out.values())
    assert encoder.module.head.weight.dtype == getattr(torch, dtype)


def test_torch_backend_float16_on_cpu_is_refused():
    with pytest.raises(BackendError, match="float16 is not supported on CPU"):
        make_image_encoder("torch", ToyEncoder(), model_id="toy", dtype="float16")


def test_cuda_graphs_refuse_a_cpu_encoder():
    from ros2_owl.backends.cuda_graphs import CudaGraphEncoder

    encoder = make_image_encoder("torch", ToyEncoder(), model_id="toy")
    with pytest.raises(BackendError, match="CUDA graphs need a CUDA encoder, not one on cpu"):
        CudaGraphEncoder(encoder)


@pytest.mark.skipif(not (HAS_TENSORRT and HAS_CUDA), reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_engine_matches_torch_and_is_cached(tmp_path):
    module = ToyEncoder().cuda()
    options = dict(model_id="toy", device="cuda", dtype="float16", cache_dir=tmp_path, max_batch=4)
    encoder = make_image_encoder("tensorrt", module, **options)
    x = torch.rand(6, 3, 32, 32, device="cuda")  # above max_batch: split into chunks
    out = encoder(x)
    with torch.no_grad():
        feats, boxes = module(x)
    torch.testing.assert_close(out["boxes"], boxes, atol=2e-2, rtol=2e-2)
    engines = list((tmp_path / "tensorrt").glob("*.engine"))
    assert len(engines) == 1
    again = make_image_encoder("tensorrt", module, **options)
    assert list((tmp_path / "tensorrt").glob("*.engine")) == engines
    torch.testing.assert_close(again(x)["boxes"], out["boxes"])


def test_thread_count_override_from_environment(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setenv("ROS2_OWL_ORT_THREADS", "1")
    assert session_options(ort).intra_op_num_threads == 1
    monkeypatch.setenv("ROS2_OWL_ORT_THREADS", "zero")
    with pytest.raises(BackendError, match="ROS2_OWL_ORT_THREADS must be a positive integer"):
        session_options(ort)


def test_auto_dtype_means_float16_engines_for_tensorrt_only():
    """The node, CLI and build_engine share one rule, so they key the same cached engine."""
    from ros2_owl.backends import resolve_dtype

    assert resolve_dtype("tensorrt", "auto") == "float16"
    assert resolve_dtype("onnxruntime", "auto") == "float32"
    assert resolve_dtype("torch", "auto") == "float32"
    assert resolve_dtype("tensorrt", "float32") == "float32"
    assert resolve_dtype("torch", "bfloat16") == "bfloat16"
