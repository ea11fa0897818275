"""sensor_msgs Image / CompressedImage <-> HxWx3 uint8 RGB arrays, without cv_bridge."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ros2_owl.core.preprocess import ImageError, image_size_problem, open_encoded_image
from ros2_owl.core.settings import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE

__all__ = [
    "DEFAULT_LIMITS",
    "ImageConversionError",
    "ImageLimits",
    "SUPPORTED_ENCODINGS",
    "compressed_to_rgb",
    "decode_compressed",
    "image_to_rgb",
    "message_to_rgb",
    "raw_to_rgb",
]


class ImageConversionError(ValueError):
    """A frame that cannot be turned into an RGB image; the message says what is wrong."""


@dataclass(frozen=True)
class ImageLimits:
    """Bounds that reject absurd frames before any large allocation happens; the defaults are
    the predictor's one image-size limit (settings.MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS)."""

    max_side: int = MAX_IMAGE_SIDE
    max_pixels: int = MAX_IMAGE_PIXELS


DEFAULT_LIMITS = ImageLimits()

# encoding -> (channels, bytes per channel). Layout-specific decoders are chosen below.
_PACKED = {
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "rgb16": (3, 2),
    "bgr16": (3, 2),
    "rgba16": (4, 2),
    "bgra16": (4, 2),
    "mono8": (1, 1),
    "mono16": (1, 2),
    "8UC1": (1, 1),
    "8UC3": (3, 1),  # OpenCV's default channel order: BGR
    "8UC4": (4, 1),  # BGRA
    "16UC1": (1, 2),
}
_BGR_ORDER = {"bgr8", "bgra8", "bgr16", "bgra16", "8UC3", "8UC4"}
_YUV422 = {"uyvy": "uyvy", "yuv422": "uyvy", "yuyv": "yuyv", "yuv422_yuy2": "yuyv"}
_NV = {"nv12": (0, 1), "nv21": (1, 0)}  # (U offset, V offset) inside each interleaved pair
_BAYER = {
    f"bayer_{pattern}{bits}": (pattern, bits // 8)
    for pattern in ("rggb", "bggr", "gbrg", "grbg")
    for bits in (8, 16)
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(
    sorted([*_PACKED, *_YUV422, *_NV, *_BAYER], key=str.lower)
)


def message_to_rgb(msg, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Convert an Image or CompressedImage message (told apart by their fields)."""
    if hasattr(msg, "encoding"):
        return image_to_rgb(msg, limits)
    if hasattr(msg, "format"):
        return compressed_to_rgb(msg, limits)
    raise ImageConversionError(f"not an image message: {type(msg).__name__}")


def image_to_rgb(msg, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Convert a sensor_msgs/Image; a view of the message bytes when the layout allows."""
    return raw_to_rgb(
        msg.data,
        width=msg.width,
        height=msg.height,
        step=msg.step,
        encoding=msg.encoding,
        is_bigendian=bool(msg.is_bigendian),
        limits=limits,
    )


def compressed_to_rgb(msg, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Convert a sensor_msgs/CompressedImage (JPEG, PNG or anything Pillow reads)."""
    return decode_compressed(msg.data, msg.format, limits)


def _check_size(width: int, height: int, limits: ImageLimits) -> None:
    problem = image_size_problem(width, height, limits.max_side, limits.max_pixels)
    if problem:
        raise ImageConversionError(problem)


def _as_bytes(data) -> np.ndarray:
    """A uint8 view of any buffer (array.array, bytes, memoryview); lists are copied."""
    if isinstance(data, list | tuple):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def _rows(data, width_bytes: int, height: int, step: int, total: int | None = None) -> np.ndarray:
    """View the buffer as `height` rows of `width_bytes`, skipping the padding of each step."""
    buf = _as_bytes(data)
    expected = step * height if total is None else total
    if step < width_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than the {width_bytes} bytes one row needs"
        )
    if buf.size != expected:
        raise ImageConversionError(
            f"data has {buf.size} bytes but the header needs {expected} "
            f"(height {height}, step {step})"
        )
    return buf[: step * height].reshape(height, step)[:, :width_bytes]


def raw_to_rgb(
    data,
    *,
    width: int,
    height: int,
    step: int,
    encoding: str,
    is_bigendian: bool = False,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Decode raw pixel bytes to HxWx3 uint8 RGB (rgb8/rgba8: no copy)."""
    _check_size(width, height, limits)
    if encoding in _PACKED:
        channels, depth = _PACKED[encoding]
        rows = _rows(data, width * channels * depth, height, step)
        if depth == 2:
            rows = rows.view(">u2" if is_bigendian else "<u2")
            rows = (rows >> 8).astype(np.uint8)
        pixels = rows.reshape(height, width, channels)
        if channels == 1:
            return np.repeat(pixels, 3, axis=2)
        if encoding in _BGR_ORDER:
            return np.ascontiguousarray(pixels[:, :, 2::-1])
        return pixels[:, :, :3]
    if encoding in _YUV422:
        if width % 2:
            raise ImageConversionError(f"{encoding} needs an even width, got {width}")
        quads = _rows(data, width * 2, height, step).reshape(height, width // 2, 4)
        order = (1, 3, 0, 2) if _YUV422[encoding] == "uyvy" else (0, 2, 1, 3)  # Y0 Y1 U V
        y = quads[:, :, order[:2]]
        return _yuv_to_rgb(y, quads[:, :, order[2]], quads[:, :, order[3]]).reshape(
            height, width, 3
        )
    if encoding in _NV:
        if width % 2 or height % 2:
            raise ImageConversionError(f"{encoding} needs an even size, got {width}x{height}")
        y = _rows(data, width, height, step, total=step * height * 3 // 2)
        uv = _as_bytes(data)[step * height :].reshape(height // 2, step)[:, :width]
        u_off, v_off = _NV[encoding]
        # group each 2x2 block: y -> (h/2, w/2, 4) in the order of (row, col) pairs
        blocks = y.reshape(height // 2, 2, width // 2, 2).transpose(0, 2, 1, 3)
        rgb = _yuv_to_rgb(
            blocks.reshape(height // 2, width // 2, 4), uv[:, u_off::2], uv[:, v_off::2]
        )
        rgb = rgb.reshape(height // 2, width // 2, 2, 2, 3).transpose(0, 2, 1, 3, 4)
        return np.ascontiguousarray(rgb).reshape(height, width, 3)
    if encoding in _BAYER:
        pattern, depth = _BAYER[encoding]
        if width < 2 or height < 2:
            raise ImageConversionError(f"{encoding} needs at least 2x2 pixels")
        rows = _rows(data, width * depth, height, step)
        if depth == 2:
            rows = rows.view(">u2" if is_bigendian else "<u2")
        rgb = _demosaic(rows.astype(np.int32), pattern)
        if depth == 2:
            rgb >>= 8
        return rgb.astype(np.uint8)
    known = ", ".join(SUPPORTED_ENCODINGS)
    raise ImageConversionError(f"unsupported encoding {encoding!r} (supported: {known})")


# BT.601 limited range (the V4L2 convention) in exact integers: coefficients x 1000, so
# R = (1164 (Y-16) + 1596 (V-128) + 500) // 1000 is the float formula rounded half up, with no
# intermediate rounding and no overflow (int32; |sum| < 600,000).
_LUT_Y = (np.arange(256, dtype=np.int32) - 16) * 1164 + 500
_LUT_RV = (np.arange(256, dtype=np.int32) - 128) * 1596
_LUT_GU = (np.arange(256, dtype=np.int32) - 128) * -392
_LUT_GV = (np.arange(256, dtype=np.int32) - 128) * -813
_LUT_BU = (np.arange(256, dtype=np.int32) - 128) * 2017


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV to RGB (the V4L2 convention). `y` has one more axis than
    u/v, holding the pixels that share each chroma sample; returns y.shape + (3,)."""
    luma = _LUT_Y[y]
    chroma = np.stack([_LUT_RV[v], _LUT_GU[u] + _LUT_GV[v], _LUT_BU[u]], axis=-1)
    rgb = luma[..., None] + chroma[..., None, :]
    rgb //= 1000
    np.clip(rgb, 0, 255, out=rgb)
    return rgb.astype(np.uint8)


def _demosaic(raw: np.ndarray, pattern: str) -> np.ndarray:
    """Bilinear demosaic of a Bayer mosaic; `pattern` names the colours of the top-left 2x2."""
    h, w = raw.shape
    p = np.pad(raw, 1, mode="reflect")  # reflection keeps the colour of every neighbour
    cross = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) // 4
    diag = (p[:-2, :-2] + p[:-2, 2:] + p[2:, :-2] + p[2:, 2:]) // 4
    horiz = (p[1:-1, :-2] + p[1:-1, 2:]) // 2
    vert = (p[:-2, 1:-1] + p[2:, 1:-1]) // 2
    out = np.empty((h, w, 3), np.int32)
    channel = {"r": 0, "g": 1, "b": 2}
    for dy in (0, 1):
        for dx in (0, 1):
            site = pattern[dy * 2 + dx]
            sl = (slice(dy, None, 2), slice(dx, None, 2))
            if site == "g":
                beside = channel[pattern[dy * 2 + (1 - dx)]]  # colour left/right of this green
                out[sl + (1,)] = raw[sl]
                out[sl + (beside,)] = horiz[sl]
                out[sl + (2 - beside,)] = vert[sl]
            else:
                own = channel[site]
                out[sl + (own,)] = raw[sl]
                out[sl + (1,)] = cross[sl]
                out[sl + (2 - own,)] = diag[sl]
    return out


def decode_compressed(data, fmt: str, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode JPEG/PNG bytes with Pillow; the size is checked before pixels are decoded."""
    from PIL import UnidentifiedImageError

    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ImageConversionError(f"compressedDepth images are not colour images ({fmt!r})")
    raw = bytes(data) if not isinstance(data, bytes | bytearray | memoryview) else data
    if len(raw) == 0:
        raise ImageConversionError("empty compressed image")
    try:
        with open_encoded_image(io.BytesIO(raw), limits.max_side, limits.max_pixels) as img:
            img.load()
            if img.mode.startswith("I"):  # 16/32-bit grey (e.g. 16-bit PNG): keep the top byte
                grey = np.asarray(img).astype(np.int64)
                shift = 8 if img.mode.startswith("I;16") or grey.max(initial=0) < 65536 else 24
                grey = np.clip(grey >> shift, 0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.array(img.convert("RGB"))  # writable: torch.from_numpy warns otherwise
    except ImageError as exc:  # empty or over the size limit, read from the header
        raise ImageConversionError(str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageConversionError(
            f"corrupt or unreadable {fmt or 'compressed'} image: {exc}"
        ) from exc
