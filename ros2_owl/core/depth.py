"""3D boxes from a depth image registered to the colour camera (arrays + pinhole intrinsics in).

For each 2D box: the depth is the median of the valid pixels in the central part of the box
(zero, NaN, inf and out-of-range values ignored; too few valid pixels -> no 3D). The box
centre is deprojected with the pinhole model into the camera optical frame (x right, y down,
z forward, metres); its size is the box extent at that depth (x, y) and the spread of the
valid depths between two percentiles (z). The centre lies on the visible surface (median
depth), not at the object's volumetric centre.

Only K is used: distortion is ignored, which is exact for rectified images and a small error
near the borders of raw ones. Box coordinates are continuous pixel edges (pixel i spans
[i, i + 1)), K's principal point uses pixel centres, hence the half-pixel shift.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

__all__ = [
    "DEPTH_ENCODINGS",
    "Box3D",
    "DepthConfig",
    "DepthPairer",
    "PinholeIntrinsics",
    "boxes_3d",
    "depth_in_metres",
    "percentiles",
]

DEPTH_ENCODINGS = {"16UC1": 0.001, "32FC1": 1.0}  # encoding -> metres per stored unit
T = TypeVar("T")


@dataclass(frozen=True)
class PinholeIntrinsics:
    """fx, fy, cx, cy in pixels of an image of width x height (CameraInfo.k, row-major)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> PinholeIntrinsics:
        """From a row-major 3x3 K (ValueError when it is not a usable camera matrix)."""
        if len(k) != 9:
            raise ValueError(f"K must have 9 values, got {len(k)}")
        fx, fy, cx, cy = float(k[0]), float(k[4]), float(k[2]), float(k[5])
        if not (fx > 0 and fy > 0 and np.isfinite([fx, fy, cx, cy]).all()):
            raise ValueError(f"K has no usable focal lengths (fx={fx}, fy={fy})")
        return cls(fx, fy, cx, cy, int(width), int(height))

    def scaled_to(self, width: int, height: int) -> PinholeIntrinsics:
        """The same camera for an image resized to width x height."""
        if (width, height) == (self.width, self.height) or not (self.width and self.height):
            return self
        sx, sy = width / self.width, height / self.height
        cx = (self.cx + 0.5) * sx - 0.5  # pixel-centre principal point scales about edges
        cy = (self.cy + 0.5) * sy - 0.5
        return PinholeIntrinsics(self.fx * sx, self.fy * sy, cx, cy, width, height)

    def deproject(self, u: float, v: float, z: float) -> tuple[float, float, float]:
        """Pixel-centre coordinates (u, v) at depth z metres -> (x, y, z) in the optical frame."""
        return ((u - self.cx) * z / self.fx, (v - self.cy) * z / self.fy, z)


@dataclass(frozen=True)
class DepthConfig:
    """Which depth pixels count and how many are needed for a 3D box."""

    central_fraction: float = 0.5  # side fraction of the 2D box sampled, around its centre
    min_valid_fraction: float = 0.2  # of the sampled pixels; fewer -> no 3D
    min_depth_m: float = 0.05
    max_depth_m: float = 20.0
    spread_percentiles: tuple[float, float] = (10.0, 90.0)  # depth extent -> box size z

    def __post_init__(self) -> None:
        if not 0.0 < float(self.central_fraction) <= 1.0:
            raise ValueError(f"central_fraction must be in (0, 1], got {self.central_fraction}")
        if not 0.0 < float(self.min_valid_fraction) <= 1.0:
            raise ValueError(f"min_valid_fraction must be in (0, 1], got {self.min_valid_fraction}")
        if not 0.0 <= float(self.min_depth_m) < float(self.max_depth_m):
            raise ValueError("depth range must satisfy 0 <= min_depth_m < max_depth_m")
        low, high = self.spread_percentiles
        if not 0.0 <= low <= high <= 100.0:
            raise ValueError(f"spread_percentiles must be 0 <= low <= high <= 100, got {low, high}")


@dataclass(frozen=True)
class Box3D:
    """An axis-aligned box in the camera optical frame (metres)."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    valid_pixels: int  # depth pixels the median was taken over


def depth_in_metres(depth: np.ndarray, encoding: str) -> tuple[np.ndarray, float]:
    """The stored depth array and its metres-per-unit scale (ValueError on other encodings)."""
    scale = DEPTH_ENCODINGS.get(encoding)
    if scale is None:
        raise ValueError(
            f"depth encoding {encoding!r} is not supported (use {', '.join(DEPTH_ENCODINGS)})"
        )
    want = np.uint16 if encoding == "16UC1" else np.float32
    if depth.ndim != 2 or depth.dtype != want:
        raise ValueError(
            f"{encoding} depth must be an HxW {np.dtype(want)} array, got "
            f"{depth.shape} {depth.dtype}"
        )
    return depth, scale


def _central_window(box, fraction: float, sx: float, sy: float, shape) -> tuple[slice, slice]:
    """Depth-pixel rows/columns of the central part of `box` (colour pixels, scaled by sx/sy)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy
    hw, hh = max((x1 - x0) * sx * fraction / 2, 0.5), max((y1 - y0) * sy * fraction / 2, 0.5)
    c0 = min(max(int(np.floor(cx - hw)), 0), shape[1])
    c1 = min(max(int(np.ceil(cx + hw)), c0), shape[1])
    r0 = min(max(int(np.floor(cy - hh)), 0), shape[0])
    r1 = min(max(int(np.ceil(cy + hh)), r0), shape[0])
    return slice(r0, r1), slice(c0, c1)


def percentiles(values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """np.percentile's default (linear) percentiles of a 1-D array, from one partition.

    np.percentile costs ~0.2 ms per call in overhead alone, the whole budget of a small box.
    """
    n = values.size
    pos = [float(q) / 100.0 * (n - 1) for q in qs]
    lo = [int(p) for p in pos]  # floor: pos >= 0
    hi = [min(i + 1, n - 1) for i in lo]
    part = np.partition(values, sorted({*lo, *hi}))
    return np.array(
        [
            float(part[a]) + (float(part[b]) - float(part[a])) * (p - a)
            for p, a, b in zip(pos, lo, hi, strict=True)
        ]
    )


def _box_3d(window: np.ndarray, scale: float, box, intrinsics, config: DepthConfig):
    """The Box3D of one detection from its raw depth window (None: too few valid pixels)."""
    if window.size == 0:
        return None
    low_m, high_m = float(config.min_depth_m), float(config.max_depth_m)
    if window.dtype == np.uint16:  # compare in stored units: no float copy of the window
        valid = window[(window >= np.ceil(low_m / scale)) & (window <= high_m / scale)]
    else:  # NaN and inf fail both comparisons
        valid = window[(window >= low_m) & (window <= high_m)]
    if valid.size == 0 or valid.size < config.min_valid_fraction * window.size:
        return None
    low_q, high_q = config.spread_percentiles
    low, z, high = (float(v) * scale for v in percentiles(valid, (low_q, 50.0, high_q)))
    x0, y0, x1, y1 = box
    center = intrinsics.deproject((x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5, z)
    size = ((x1 - x0) * z / intrinsics.fx, (y1 - y0) * z / intrinsics.fy, high - low)
    return Box3D(center, size, int(valid.size))


def _mask_pixels(raw: np.ndarray, mask) -> np.ndarray:
    """Depth values under a colour-image mask, sampled at the nearest colour pixel of each
    depth pixel (depth and colour registered, resolutions may differ)."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.minimum(
        ((np.arange(raw.shape[0]) + 0.5) * mask.shape[0] / raw.shape[0]).astype(int),
        mask.shape[0] - 1,
    )
    cols = np.minimum(
        ((np.arange(raw.shape[1]) + 0.5) * mask.shape[1] / raw.shape[1]).astype(int),
        mask.shape[1] - 1,
    )
    return raw[mask[rows][:, cols]]


def boxes_3d(
    boxes: Sequence[tuple[float, float, float, float]],
    depth: np.ndarray,
    encoding: str,
    intrinsics: PinholeIntrinsics,
    config: DepthConfig | None = None,
    masks: Sequence | None = None,
) -> list[Box3D | None]:
    """One Box3D (or None: too few valid depth pixels) per (x0, y0, x1, y1) colour-image box.

    `intrinsics` are those of the colour image the boxes are in; boxes are clipped to it first
    (as the 2D messages are). A depth image of another resolution (still registered to the
    colour camera) is sampled at the scaled positions. Where `masks` gives a box an instance
    mask (bool HxW in colour pixels), the depth is taken over the mask, not the box's centre.
    """
    config = config or DepthConfig()
    raw, scale = depth_in_metres(depth, encoding)
    w, h = float(intrinsics.width), float(intrinsics.height)
    sx, sy = raw.shape[1] / w, raw.shape[0] / h
    out: list[Box3D | None] = []
    masks = list(masks) if masks is not None else [None] * len(boxes)
    for (x0, y0, x1, y1), mask in zip(boxes, masks, strict=True):
        box = (
            min(max(x0, 0.0), w),
            min(max(y0, 0.0), h),
            min(max(x1, 0.0), w),
            min(max(y1, 0.0), h),
        )
        if box[2] <= box[0] or box[3] <= box[1]:
            out.append(None)
            continue
        if mask is not None:
            out.append(_box_3d(_mask_pixels(raw, mask), scale, box, intrinsics, config))
            continue
        rows, cols = _central_window(box, float(config.central_fraction), sx, sy, raw.shape)
        out.append(_box_3d(raw[rows, cols], scale, box, intrinsics, config))
    return out


class DepthPairer(Generic[T]):
    """Pairs each colour frame with the latest depth frame at or before its stamp.

    Depth frames older than the colour stamp by more than `tolerance_ns` do not pair; such
    colour frames are counted in `unpaired` and go on without 3D. Thread-safe (depth arrives
    on the executor thread, pairing runs on the inference worker).
    """

    def __init__(self, tolerance_ns: int, history: int = 16):
        if tolerance_ns < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance_ns} ns")
        self.tolerance_ns = int(tolerance_ns)
        self._frames: deque[tuple[int, T]] = deque(maxlen=max(1, int(history)))
        self._lock = threading.Lock()
        self.paired = 0
        self.unpaired = 0

    def add(self, stamp_ns: int, frame: T) -> None:
        """Store one depth frame (out-of-order stamps are kept in stamp order)."""
        with self._lock:
            if self._frames and stamp_ns < self._frames[-1][0]:
                items = sorted([*self._frames, (stamp_ns, frame)], key=lambda item: item[0])
                self._frames = deque(items[-self._frames.maxlen :], maxlen=self._frames.maxlen)
            else:
                self._frames.append((stamp_ns, frame))

    def pair(self, stamp_ns: int) -> T | None:
        """The depth frame for a colour frame stamped `stamp_ns`, or None (counted)."""
        with self._lock:
            for depth_stamp, frame in reversed(self._frames):
                if depth_stamp <= stamp_ns:
                    if stamp_ns - depth_stamp <= self.tolerance_ns:
                        self.paired += 1
                        return frame
                    break
            self.unpaired += 1
            return None
