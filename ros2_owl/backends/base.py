"""The image-encoder backend interface shared by the predictor and the runtimes (torch/ORT/TRT)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class BackendError(RuntimeError):
    """A backend cannot be built or run (missing runtime, bad option); the message says why."""


def refuse_bfloat16(backend: str, runs: str) -> BackendError:
    """The error for a runtime backend asked for bfloat16, naming the backend that has it."""
    return BackendError(
        f"backend {backend!r} {runs}; for bfloat16 use backend='torch' with dtype='bfloat16'"
    )


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map a user-facing dtype name to torch, with an error listing the accepted names."""
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise BackendError(f"unsupported dtype {dtype}; use float32, float16 or bfloat16")
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise BackendError(
            f"unsupported dtype {dtype!r}; use one of {', '.join(sorted(DTYPES))}"
        ) from None


@runtime_checkable
class ImageEncoderBackend(Protocol):
    """Runs an image encoder: normalised pixels [B,3,S,S] -> named float32 outputs."""

    name: str
    output_names: tuple[str, ...]
    max_batch: int  # the largest batch one call takes (0 = any): callers chunk above it

    def __call__(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]: ...


class TorchImageEncoder:
    """Runs an encoder nn.Module in eager torch on one device/dtype; outputs come back float32."""

    name = "torch"
    max_batch = 0  # eager torch takes any batch

    def __init__(
        self, module: torch.nn.Module, device: str | torch.device = "cpu", dtype="float32"
    ) -> None:
        self.device = torch.device(device)
        self.dtype = parse_dtype(dtype)
        if self.device.type == "cpu" and self.dtype == torch.float16:
            raise BackendError("float16 is not supported on CPU; use float32 or bfloat16")
        self.module = module.to(device=self.device, dtype=self.dtype).eval()
        self.output_names: tuple[str, ...] = tuple(module.output_names)
        self.image_size: int = int(getattr(module, "image_size", 0))

    def __call__(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode a batch; inputs are moved/cast to the module's device and dtype."""
        x = pixel_values.to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            outputs = self.module(x)
        return {n: t.to(torch.float32) for n, t in zip(self.output_names, outputs, strict=True)}
