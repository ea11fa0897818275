"""Input sizes for nested regions: 'native' (every crop at the model's size) or 'adaptive'.

A 150x300 px region gains nothing from a 768x768 encoding: 'adaptive' encodes it at the
smallest multiple of the patch size that covers its longer side, bounded below by
``MIN_PATCHES`` patches a side (128 px for a /32 model, 64 px for a /16 one) and above by the
model's native size, with the position embeddings interpolated the way transformers does with
``interpolate_pos_encoding=True``. Sizes are rounded up to a few buckets (1/3, 1/2, 2/3 and all
of the native size) so regions of a level share encoder calls and ONNX Runtime / TensorRT need
one artefact per bucket, not one per size. ``RegionEncoders`` holds the encoder per size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

MIN_PATCHES = 4
BUCKET_FRACTIONS = (1 / 3, 1 / 2, 2 / 3, 1.0)


def bucket_sizes(native: int, patch: int) -> tuple[int, ...]:
    """The input sizes adaptive may use, smallest first (patch multiples, native last)."""
    low = min(native, MIN_PATCHES * patch)
    sizes = {min(native, max(low, math.ceil(native * f / patch) * patch)) for f in BUCKET_FRACTIONS}
    return tuple(sorted(sizes))


def region_input_size(width: float, height: float, native: int, patch: int) -> int:
    """Smallest bucket covering the region's longer side (in input pixels)."""
    need = math.ceil(max(width, height) / patch) * patch
    return next((s for s in bucket_sizes(native, patch) if s >= need), native)


def group_by_size(
    frames: Sequence[tuple[int, int, int, int]], native: int, patch: int, mode: str
) -> dict[int, list[int]]:
    """Row indices of pixel frames (x0, y0, x1, y1) grouped by the input size each gets."""
    groups: dict[int, list[int]] = {}
    for row, (x0, y0, x1, y1) in enumerate(frames):
        size = native if mode == "native" else region_input_size(x1 - x0, y1 - y0, native, patch)
        groups.setdefault(size, []).append(row)
    return groups


class RegionEncoders:
    """The OWL encoder per input size for one predictor: the native one, the same torch module
    for every size (it interpolates), or one ONNX Runtime / TensorRT artefact per bucket (same
    backend and dtype as the native encoder), built on first use and cached like any export."""

    def __init__(self, owl, native: Callable[[], object], device, cache_dir: str | None):
        self.owl, self.native = owl, native  # native() -> the predictor's current OWL encoder
        self.device, self.cache_dir = torch.device(device), cache_dir
        self.by_size: dict[int, object] = {}

    def problem(self, mode: str) -> str | None:
        """Why `mode` cannot run here: a remote encoder (backend triton) serves one input size."""
        encoder = self.native()
        if mode == "adaptive" and encoder.name != "torch" and getattr(self.owl.encoder, "freed", 0):
            return (
                f"region_resolution 'adaptive' needs OWL's torch image encoder to export its "
                f"size buckets, and it was freed after the backend upgrade to {encoder.name}; "
                "start with region_resolution 'adaptive' (the module is then kept)"
            )
        if mode == "adaptive" and encoder.name == "triton":
            size = self.owl.info.image_size
            return (
                f"region_resolution 'adaptive' needs a local backend: backend triton serves one "
                f"input size ({size}x{size}); use region_resolution 'native'"
            )
        return None

    def groups(self, img: torch.Tensor, regions: Sequence, mode: str) -> dict[int, list]:
        """Regions (with .box in image pixels) by input size, smallest first."""
        from .preprocess import crop_box_pixels, image_size

        native = self.owl.info.image_size
        if mode == "native":
            return {native: list(regions)}
        width, height = image_size(img)
        frames = [crop_box_pixels(r.box, width, height) for r in regions]
        rows = group_by_size(frames, native, self.owl.encoder.patch_size, mode)
        return {size: [regions[i] for i in rows[size]] for size in sorted(rows)}

    def at(self, size: int):
        """The encoder for size x size inputs."""
        encoder = self.native()
        if size == self.owl.info.image_size or encoder.name == "torch":
            return encoder
        if size not in self.by_size:
            self.by_size[size] = self._build(encoder, size)
        return self.by_size[size]

    def _build(self, encoder, size: int):
        from ..backends import make_image_encoder
        from ..models.owl import FixedSizeEncoder

        choice = getattr(encoder, "selection", None)
        return make_image_encoder(
            choice.backend if choice else encoder.name,
            FixedSizeEncoder(self.owl.encoder, size),
            model_id=self.owl.info.model_id,
            device=str(self.device),
            dtype=choice.dtype if choice else "auto",
            cache_dir=self.cache_dir,
            max_batch=int(encoder.max_batch or 8),
        )
