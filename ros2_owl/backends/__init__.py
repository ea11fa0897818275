"""Image-encoder backends behind one factory: torch, onnxruntime, tensorrt, triton (remote).

The predictor asks ``make_image_encoder`` for a backend and never learns which runs. ONNX
Runtime and TensorRT run graphs exported from the same torch module, verified against it at
export/build time and cached (see ``cache.py`` for the location and keying). Their packages
are imported only when asked for; a missing runtime raises BackendError naming the fallback.
"""

from __future__ import annotations

import torch

from ..settings import BACKENDS
from .base import (
    BackendError,
    ImageEncoderBackend,
    TorchImageEncoder,
    parse_dtype,
    refuse_bfloat16,
)

__all__ = [
    "BACKENDS",
    "BackendError",
    "ImageEncoderBackend",
    "TorchImageEncoder",
    "make_image_encoder",
    "resolve_dtype",
]


def resolve_dtype(backend: str, dtype: str) -> str:
    """'auto' -> float16 for TensorRT engines (what build_engine builds), float32 otherwise."""
    if dtype == "auto":
        return "float16" if backend == "tensorrt" else "float32"
    return dtype


def make_image_encoder(
    backend: str,
    module: torch.nn.Module,
    *,
    model_id: str,
    device: str = "cpu",
    dtype: str = "auto",
    cache_dir: str | None = None,
    max_batch: int = 8,
    force: bool = False,
    on_invalid: str = "rebuild",
    progress=None,
    triton=None,
) -> ImageEncoderBackend:
    """Build the named backend for an encoder module (model_id/cache_dir key exported artefacts).

    ``on_invalid``: what a stale or corrupted cached artefact does — "rebuild" (log a warning,
    delete it, export/build again) or "error" (raise CacheError with the reason).
    ``triton``: a TritonTarget (server, model name, normalisation) for backend "triton".
    """
    if backend == "triton":
        return _make_triton(module, triton, model_id, device, cache_dir, max_batch, progress)
    dtype = resolve_dtype(backend, dtype)
    if backend == "torch":
        return TorchImageEncoder(module, device=device, dtype=dtype)
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if on_invalid not in ("rebuild", "error"):
        raise BackendError(f"on_invalid must be 'rebuild' or 'error', not {on_invalid!r}")
    if max_batch < 1:
        raise BackendError(f"max_batch must be >= 1, got {max_batch}")
    from .cache import ArtefactCache
    from .export import ExportOptions

    options = ExportOptions(
        model_id, ArtefactCache(cache_dir), max_batch, force, on_invalid, progress
    )
    dt = parse_dtype(dtype)
    dev = torch.device(device)
    if backend == "onnxruntime":
        return _make_onnxruntime(module, options, dev, dt)
    from .tensorrt_backend import make_tensorrt_encoder

    return make_tensorrt_encoder(module, options, device=dev, dtype=dt)


def _make_triton(module, target, model_id, device, cache_dir, max_batch, progress):
    """The remote encoder; the local onnxruntime one only when the target's fallback asks."""
    from .triton_backend import make_triton_encoder

    if target is None:
        raise BackendError("backend 'triton' needs triton settings (url, model name)")

    def local():
        return make_image_encoder(
            "onnxruntime",
            module,
            model_id=model_id,
            device=device,
            cache_dir=cache_dir,
            max_batch=max_batch,
            progress=progress,
        )

    return make_triton_encoder(module, target, local)


def _make_onnxruntime(module, options, dev: torch.device, dt: torch.dtype):
    """Export (or reuse) the verified ONNX graph, then open an ORT session on it."""
    from .export import on_device
    from .onnxruntime_backend import OnnxRuntimeImageEncoder, choose_providers, import_onnxruntime

    ort = import_onnxruntime()
    choose_providers(dev, ort.get_available_providers())  # clear error before a long export
    if dt == torch.bfloat16:
        raise refuse_bfloat16("onnxruntime", "runs float32 (or float16 on CUDA)")
    if dt == torch.float16 and dev.type != "cuda":
        raise BackendError(
            "backend 'onnxruntime' runs float16 only on CUDA; on CPU use dtype='float32', or "
            "backend='torch' with dtype='bfloat16' for reduced precision"
        )
    # The graph is traced in the dtype it will run in; fp16 is traced on the GPU.
    module = on_device(module, dev if dt == torch.float16 else torch.device("cpu"), dt)
    entry = options.export(module)
    return OnnxRuntimeImageEncoder(
        entry.path,
        device=dev,
        output_names=module.output_names,
        image_size=module.image_size,
        max_batch=options.max_batch,
    )
