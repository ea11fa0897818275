"""Image-encoder backends behind one factory (torch now; ONNX Runtime / TensorRT are added here)."""

from __future__ import annotations

import torch

from .base import BackendError, ImageEncoderBackend, TorchImageEncoder

__all__ = ["BackendError", "ImageEncoderBackend", "TorchImageEncoder", "make_image_encoder"]


def make_image_encoder(
    backend: str,
    module: torch.nn.Module,
    *,
    model_id: str,
    device: str = "cpu",
    dtype: str = "float32",
    cache_dir: str | None = None,
    max_batch: int = 8,
) -> ImageEncoderBackend:
    """Build the named backend for an encoder module (model_id/cache_dir key exported artefacts)."""
    if backend == "torch":
        return TorchImageEncoder(module, device=device, dtype=dtype)
    raise BackendError(f"unknown backend {backend!r}; available here: torch")
