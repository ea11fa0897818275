"""Image-encoder backends behind one factory: auto (the default), torch, onnxruntime,
tensorrt, triton (remote; explicit only, auto never picks it).

The predictor asks ``make_image_encoder`` for a backend and never learns which runs. ONNX
Runtime and TensorRT run graphs exported from the same torch module, verified against it at
export/build time and cached (see ``cache.py`` for the location and keying). Their packages
are imported only when asked for; a missing runtime raises BackendError naming the fallback.
``auto`` (auto.py) picks one of them for the machine; every encoder this factory returns has a
``selection`` (an AutoChoice: backend, dtype and why) for logs and diagnostics.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from ..core.settings import BACKENDS
from .auto import PRECISIONS, AutoChoice, check_precision
from .base import (
    BackendError,
    ImageEncoderBackend,
    TorchImageEncoder,
    parse_dtype,
    refuse_bfloat16,
)

LOG = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "AutoChoice",
    "BackendError",
    "ImageEncoderBackend",
    "TorchImageEncoder",
    "make_image_encoder",
    "resolve_dtype",
]


def resolve_dtype(backend: str, dtype: str) -> str:
    """'auto' -> float16 for TensorRT engines (what build_engine builds), float32 otherwise
    (backend 'auto' keeps 'auto': its chooser decides)."""
    if dtype == "auto" and backend != "auto":
        return "float16" if backend == "tensorrt" else "float32"
    return dtype


def make_image_encoder(
    backend: str,
    module: torch.nn.Module,
    *,
    model_id: str,
    device: str = "cpu",
    dtype: str = "auto",
    precision: str = "fp32",
    cache_dir: str | None = None,
    max_batch: int = 8,
    force: bool = False,
    on_invalid: str = "rebuild",
    progress=None,
    triton=None,
) -> ImageEncoderBackend:
    """Build the named backend for an encoder module (model_id/cache_dir key exported artefacts).

    ``precision``: 'fp32' or 'allow-reduced' (lets backend 'auto' choose bf16/int8 on CPU).
    ``on_invalid``: what a stale or corrupted cached artefact does — "rebuild" (log a warning,
    delete it, export/build again) or "error" (raise CacheError with the reason).
    ``triton``: a TritonTarget (server, model name, normalisation) for backend "triton".
    """
    check_precision(precision)
    kwargs = dict(
        model_id=model_id,
        device=device,
        cache_dir=cache_dir,
        max_batch=max_batch,
        force=force,
        on_invalid=on_invalid,
        progress=progress,
    )
    if backend == "triton":  # explicit only: auto never sends images off the robot
        encoder = _make_triton(module, triton, **kwargs)
        if encoder.name == "triton":
            why = f"asked for; {encoder.model_name} at {encoder.options.url}, wire {encoder.wire_dtype}"
            encoder.selection = AutoChoice("triton", "float32", why, {}, "user")
        else:  # triton_fallback local: the server was down at start
            why = "Triton server down at start, triton_fallback local"
            encoder.selection = replace(encoder.selection, reason=why, source="fallback")
        return encoder
    if backend == "auto":
        return _make_auto(module, dtype, precision, **kwargs)
    dtype = resolve_dtype(backend, dtype)
    encoder = _make_named(backend, module, dtype=dtype, **kwargs)
    encoder.selection = AutoChoice(backend, dtype, "asked for", {}, "user")
    return encoder


def _make_auto(module, dtype, precision, *, device, cache_dir, progress, **kwargs):
    """Backend 'auto': the CUDA rule, or the measured (and cached) fastest CPU candidate."""
    from .auto import choose_cpu, cuda_rule
    from .cache import ArtefactCache

    say = progress or LOG.info
    dev = torch.device(device)
    common = dict(device=device, cache_dir=cache_dir, progress=progress, **kwargs)
    if dev.type == "cuda":
        choice = cuda_rule(dev, dtype)
        encoder = _make_named(choice.backend, module, dtype=choice.dtype, **common)
    elif dev.type == "cpu":
        from .export import on_device

        def build(candidate):
            mod = module
            if candidate.backend == "torch":  # never cast the caller's module in place
                mod = on_device(module, dev, parse_dtype(candidate.dtype))
            return _make_named(candidate.backend, mod, dtype=candidate.dtype, **common)

        encoder, choice = choose_cpu(
            module,
            model_id=kwargs["model_id"],
            precision=precision,
            dtype=dtype,
            build=build,
            cache=ArtefactCache(cache_dir),
            max_batch=kwargs["max_batch"],
            say=say,
        )
    else:
        raise BackendError(f"backend 'auto' supports device cpu or cuda, not {dev.type!r}")
    say(f"backend auto for {type(module).__name__}: {choice.describe()}")
    encoder.selection = choice
    return encoder


def _make_named(
    backend, module, *, model_id, device, dtype, cache_dir, max_batch, force, on_invalid, progress
) -> ImageEncoderBackend:
    """One named backend with a concrete dtype (float32/float16/bfloat16, or int8 for ORT)."""
    if backend == "torch" and dtype != "int8":
        return TorchImageEncoder(module, device=device, dtype=dtype)
    if backend not in BACKENDS or backend == "auto":
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
    dev = torch.device(device)
    if dtype == "int8":
        return _make_int8(backend, module, options, dev)
    dt = parse_dtype(dtype)
    if backend == "onnxruntime":
        return _make_onnxruntime(module, options, dev, dt)
    from .tensorrt_backend import make_tensorrt_encoder

    return make_tensorrt_encoder(module, options, device=dev, dtype=dt)


def _make_triton(module, target, *, model_id, device, cache_dir, max_batch, progress, **_):
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


def _make_int8(backend, module, options, dev: torch.device):
    """ONNX Runtime int8 (dynamic quantisation) on CPU: the only int8 path."""
    if backend != "onnxruntime" or dev.type != "cpu":
        raise BackendError(
            f"dtype int8 runs with backend 'onnxruntime' on cpu only, not {backend!r} on "
            f"{dev}; use float32 (or bfloat16 with backend 'torch')"
        )
    from .export import on_device
    from .onnxruntime_backend import OnnxRuntimeImageEncoder, import_onnxruntime
    from .quantize import quantized_cached

    import_onnxruntime()
    module = on_device(module, torch.device("cpu"), torch.float32)
    entry = quantized_cached(module, options)
    return OnnxRuntimeImageEncoder(
        entry.path,
        device="cpu",
        output_names=module.output_names,
        image_size=module.image_size,
        max_batch=options.max_batch,
    )


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
