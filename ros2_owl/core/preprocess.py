"""Model input preparation on tensors: input checks, resize kernels, per-model square rules, crops.

Everything runs in torch on the image's device (no PIL round trip per frame, no torchvision).

Preprocessing mirrors transformers 5.24's processors:

* OWL-ViT: stretch to SxS with antialiased bicubic, rescale to [0, 1], normalise. On CPU the
  resize runs on uint8 (torch's PIL-style kernel, as transformers' torchvision backend does);
  the PIL backend rounds its two passes in another order for some sizes, so on camera-like
  images the two differ by at most 2 grey levels (0.03 after normalising), < 1/3 level on
  average (test_preprocess). Float images and non-CPU devices (torch has no uint8 kernel
  there) take the same two passes in float, rounded and clamped to 8-bit levels after each pass
  like the uint8 kernel: the same tolerance (test_preprocess tests that path on CPU).
* OWLv2: rescale, pad to a square at the bottom/right with ``pad_value`` (0.0 = black, what
  transformers 5.24's processor uses), then scikit-image style resize: a Gaussian anti-alias
  filter (sigma = (factor - 1) / 2, mirror edges) and linear interpolation, computed as one
  banded matrix per axis. Matches the processor to < 1e-4.
* CLIP: mode "crop" is CLIPProcessor's rule (shortest edge to S, centre crop SxS); the
  predictor classifies every region, the whole frame included, with "pad_center" instead, so
  nothing of a wide frame is cut off.

Region crops take the parent box rounded outward to whole pixels and clipped to the image, and
then treat the crop exactly like a whole input image for that model; the square rule per model
is the padding rule (OWL-ViT stretches, OWLv2 pads bottom/right with ``pad_value``, CLIP pads the
short side equally on both sides with the normalisation mean, i.e. zeros after normalising).
Mapping model boxes back to pixels is the model's job (models/owl.py).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .settings import MAX_IMAGE_PIXELS as MAX_PIXELS
from .settings import MAX_IMAGE_SIDE as MAX_SIDE

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage


class ImageError(ValueError):
    """The input image cannot be used (empty, wrong dtype/shape, NaN, too large)."""


def image_size_problem(
    width: int, height: int, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS
) -> str | None:
    """Why a width x height image is refused (empty or over the one limit), or None if it fits;
    the predictor, the node's converter and the CLI's file reader all ask this."""
    if width <= 0 or height <= 0:
        return f"image is empty ({width}x{height} px)"
    if max(width, height) > max_side or width * height > max_pixels:
        return (
            f"image is {width}x{height} px; the limit is {max_side} px per side and "
            f"{max_pixels / 1e6:g} MP in total (the model sees at most ~1000 px): "
            "downscale it before detection"
        )
    return None


@contextlib.contextmanager
def open_encoded_image(
    source, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS
) -> Iterator[PILImage]:
    """Open an encoded image (a path or a binary file object) with Pillow, its size checked
    from the header against the one limit before any pixel is decoded (ImageError otherwise).
    Pillow's own decompression-bomb warning (at a higher size) is silenced: ours comes first."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(source)
        except Image.DecompressionBombError as error:
            raise ImageError(f"image is too large: {error}") from None
        with img:
            problem = image_size_problem(img.width, img.height, max_side, max_pixels)
            if problem:
                raise ImageError(problem)
            yield img


# --------------------------------------------------------------------------- input checks


def load_image(image, device: str | torch.device = "cpu") -> torch.Tensor:
    """Validate an RGB image and return it as [3, H, W] on `device` (uint8 or float in [0, 1]).

    Accepts a numpy array or torch tensor, HxWx3 (numpy or torch) or 3xHxW (torch only), dtype
    uint8 or floating point with values in [0, 1]. Images larger than MAX_SIDE px on a side or
    MAX_PIXELS in total are refused: downscale them first.
    """
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8 or np.issubdtype(image.dtype, np.floating):
            with warnings.catch_warnings():  # read-only views are fine: we never write to them
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                tensor = torch.from_numpy(np.ascontiguousarray(image))
        else:
            raise ImageError(
                f"unsupported image dtype {image.dtype}; give uint8 RGB or float RGB in [0, 1]"
            )
        chw = False
    elif isinstance(image, torch.Tensor):
        tensor, chw = image, None
    else:
        raise ImageError(
            f"expected a numpy array or torch tensor image, got {type(image).__name__}"
        )
    if tensor.ndim != 3:
        raise ImageError(f"expected an HxWx3 RGB image, got shape {tuple(tensor.shape)}")
    if chw is None:  # torch: HxWx3 preferred, 3xHxW accepted
        chw = tensor.shape[-1] != 3 and tensor.shape[0] == 3
    if not chw and tensor.shape[-1] != 3:
        raise ImageError(
            f"expected 3 colour channels (HxWx3 RGB), got shape {tuple(tensor.shape)}; "
            "convert grey/RGBA/BGR images to RGB first"
        )
    if tensor.dtype != torch.uint8 and not tensor.is_floating_point():
        raise ImageError(
            f"unsupported image dtype {tensor.dtype}; give uint8 RGB or float RGB in [0, 1]"
        )
    if not chw:
        tensor = tensor.permute(2, 0, 1)
    height, width = int(tensor.shape[1]), int(tensor.shape[2])
    problem = image_size_problem(width, height)
    if problem:
        raise ImageError(problem)
    tensor = tensor.to(device)
    if tensor.is_floating_point():
        tensor = tensor.float()
        low, high = torch.aminmax(tensor)
        if not (math.isfinite(low.item()) and math.isfinite(high.item())):
            raise ImageError("image contains NaN or infinite values")
        if low.item() < 0.0 or high.item() > 1.0:
            raise ImageError(
                f"float image values must lie in [0, 1], got [{low.item():.4g}, {high.item():.4g}]"
            )
    return tensor.contiguous()


def image_size(image: torch.Tensor) -> tuple[int, int]:
    """(width, height) of a [3, H, W] image tensor."""
    return int(image.shape[-1]), int(image.shape[-2])


def to_unit_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1]; float passes through."""
    return image.float() / 255.0 if image.dtype == torch.uint8 else image.float()


# --------------------------------------------------------------------------- resizing


def resize_bicubic(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bicubic (PIL/torchvision rule) resize of [3, h, w] to float [0, 1]."""
    if image.dtype == torch.uint8 and image.device.type == "cpu":
        if tuple(image.shape[-2:]) == (height, width):
            return image.float() / 255.0
        out = F.interpolate(
            image[None], (height, width), mode="bicubic", antialias=True, align_corners=False
        )
        return out[0].float() / 255.0
    if tuple(image.shape[-2:]) == (height, width):
        return to_unit_float(image)
    return _resize_bicubic_levels(image, height, width) / 255.0


def _resize_bicubic_levels(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The uint8 kernel's rule in float, for float images and non-CPU devices (no uint8 kernel).

    Two passes, horizontal then vertical, each rounded and clamped to whole 0..255 levels as
    the uint8 kernel (and PIL) does: without that, the bicubic overshoot of the first pass is
    amplified by the second (up to 14 levels off the processors). Returns float levels.
    """
    x = image.float() if image.dtype == torch.uint8 else image.float() * 255.0
    if x.shape[-1] != width:
        x = F.interpolate(x[None], (x.shape[-2], width), mode="bicubic", antialias=True)[0]
        x = x.round_().clamp_(0.0, 255.0)
    if x.shape[-2] != height:
        x = F.interpolate(x[None], (height, width), mode="bicubic", antialias=True)[0]
        x = x.round_().clamp_(0.0, 255.0)
    return x


def _mirror(index: torch.Tensor, n: int) -> torch.Tensor:
    """Reflect indices into [0, n) about the edge samples (scipy 'mirror', torch 'reflect')."""
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    index = index.remainder(period)
    return torch.where(index >= n, period - index, index)


def _antialias_linear_taps(n: int, size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights [size, taps] of skimage's resize along one axis.

    The Gaussian anti-alias filter (scipy gaussian_filter: sigma = (n/size - 1)/2, truncate 4,
    mirror edges) composed with linear interpolation (scipy zoom, order 1, grid_mode, mirror).
    """
    sigma = max(0.0, (n / size - 1) / 2)
    radius = int(4.0 * sigma + 0.5) if sigma > 0 else 0
    offsets = torch.arange(-radius, radius + 1, device=device)
    if sigma > 0:
        gauss = torch.exp(-0.5 * (offsets.double() / sigma) ** 2)
        gauss = gauss / gauss.sum()
    else:
        gauss = torch.ones(1, dtype=torch.float64, device=device)
    pos = (torch.arange(size, device=device, dtype=torch.float64) + 0.5) * (n / size) - 0.5
    left = torch.floor(pos)
    frac = pos - left
    left = left.long()
    centres = torch.stack((_mirror(left, n), _mirror(left + 1, n)), dim=1)  # [size, 2]
    index = _mirror(centres[:, :, None] + offsets[None, None, :], n).reshape(size, -1)
    weight = (torch.stack((1 - frac, frac), dim=1)[:, :, None] * gauss).reshape(size, -1)
    return index, weight.float()


def _resample_axis(x: torch.Tensor, size: int, dim: int, block: int = 64) -> torch.Tensor:
    """Apply _antialias_linear_taps along dim -2 or -1 as block-banded matrix products."""
    n = x.shape[dim]
    if n == size:
        return x
    index, weight = _antialias_linear_taps(n, size, x.device)
    matrix = torch.zeros(size, n, dtype=x.dtype, device=x.device)
    matrix.scatter_add_(1, index, weight.to(x.dtype))
    parts = []
    for o0 in range(0, size, block):
        rows = index[o0 : o0 + block]
        lo, hi = int(rows.min()), int(rows.max()) + 1
        a = matrix[o0 : o0 + block, lo:hi]
        if dim in (-2, x.ndim - 2):
            parts.append(a @ x[..., lo:hi, :])
        else:
            parts.append(x[..., lo:hi] @ a.T)
    return torch.cat(parts, dim=dim)


def resize_antialias_linear(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """OWLv2's resize (skimage rule): Gaussian anti-alias, then linear interpolation."""
    x = to_unit_float(image)
    return _resample_axis(_resample_axis(x, height, dim=-2), width, dim=-1)


def pad_bottom_right(image: torch.Tensor, value: float) -> torch.Tensor:
    """Pad a float [3, h, w] image to a square at the bottom/right with `value`."""
    h, w = image.shape[-2:]
    side = max(h, w)
    if h == w:
        return image
    return F.pad(image, (0, side - w, 0, side - h), value=value)


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel on a float [3, H, W] image."""
    m = torch.tensor(mean, dtype=image.dtype, device=image.device)[:, None, None]
    s = torch.tensor(std, dtype=image.dtype, device=image.device)[:, None, None]
    return (image - m) / s


@dataclass(frozen=True)
class Preprocessor:
    """One model's image rule: [3, h, w] uint8/float image -> normalised float [3, S, S].

    mode "stretch" (OWL-ViT), "pad" (OWLv2: bottom/right pad with pad_value), "crop" (CLIP
    whole image: shortest edge + centre crop) or "pad_center" (CLIP regions: centred pad
    with the normalisation mean).
    """

    size: int
    mode: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad_value: float = 0.0

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        s = self.size
        if self.mode == "stretch":
            x = resize_bicubic(image, s, s)
        elif self.mode == "pad":
            x = resize_antialias_linear(
                pad_bottom_right(to_unit_float(image), self.pad_value), s, s
            )
        elif self.mode == "crop":
            h, w = image.shape[-2:]
            short, long = min(h, w), max(h, w)
            new_long = int(s * long / short)
            nh, nw = (new_long, s) if w <= h else (s, new_long)
            x = resize_bicubic(image, nh, nw)
            top, left = (nh - s) // 2, (nw - s) // 2
            x = x[:, top : top + s, left : left + s]
        elif self.mode == "pad_center":
            h, w = image.shape[-2:]
            side = max(h, w)
            scale = s / side
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            x = normalize(resize_bicubic(image, nh, nw), self.mean, self.std)
            top, left = (s - nh) // 2, (s - nw) // 2
            return F.pad(x, (left, s - nw - left, top, s - nh - top), value=0.0)
        else:
            raise ValueError(f"unknown preprocessing mode {self.mode!r}")
        return normalize(x, self.mean, self.std)


def crop_box_pixels(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Round a box outward to whole pixels, clip it to the image, keep it at least 1 px wide."""
    x0 = min(max(int(math.floor(box[0])), 0), width - 1)
    y0 = min(max(int(math.floor(box[1])), 0), height - 1)
    x1 = max(min(int(math.ceil(box[2])), width), x0 + 1)
    y1 = max(min(int(math.ceil(box[3])), height), y0 + 1)
    return x0, y0, x1, y1


def crop_regions(
    image: torch.Tensor,
    boxes: Sequence[Sequence[float]],
    preprocess: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
    """Crop every box (see crop_box_pixels) and preprocess each as a whole image, in one batch."""
    width, height = image_size(image)
    pixel_boxes = [crop_box_pixels(b, width, height) for b in boxes]
    crops = [preprocess(image[:, y0:y1, x0:x1]) for x0, y0, x1, y1 in pixel_boxes]
    if not crops:
        return image.new_zeros((0, 3, 1, 1), dtype=torch.float32), []
    return torch.stack(crops), pixel_boxes
