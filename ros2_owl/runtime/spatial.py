"""One camera's depth frames and intrinsics, paired with its colour frames by stamp (ROS-free).

The FrameSession owns one CameraDepth per camera that has depth; a front end feeds it depth
frames and intrinsics as they arrive, and the session's spatial step pairs each colour frame
and computes its 3D boxes (maths: core/depth.py). Depth frames are kept as the front end gave
them and converted (`to_array`) only when one pairs, so unpaired depth costs no copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.depth import Box3D, DepthConfig, DepthPairer, PinholeIntrinsics
from ..core.depth import boxes_3d as compute_boxes_3d

__all__ = ["CameraDepth", "DepthToArray"]

DepthToArray = Callable[[Any], tuple[np.ndarray, str]]  # a depth frame -> (HxW array, encoding)


class CameraDepth:
    """Depth pairing and 3D boxes for one camera, with the counters its diagnostics report."""

    def __init__(
        self,
        tolerance_s: float,
        to_array: DepthToArray,
        config: DepthConfig | None = None,
        history: int = 8,
    ):
        self.pairer: DepthPairer = DepthPairer(int(round(tolerance_s * 1e9)), history)
        self.config = config or DepthConfig()
        self._to_array = to_array
        self._intrinsics: PinholeIntrinsics | None = None
        self._lock = threading.Lock()
        self.depth_frames = 0
        self.no_camera_info = 0  # colour frames paired with depth but without intrinsics yet
        self.bad_depth = 0  # paired depth frames that could not be read
        self.no_3d = 0  # detections without a 3D box (too few valid depth pixels)
        self.last_problem = ""

    def add_depth(self, stamp_ns: int, frame) -> None:
        """Keep a depth frame for pairing (any thread)."""
        with self._lock:
            self.depth_frames += 1
        self.pairer.add(stamp_ns, frame)

    def set_intrinsics(self, intrinsics: PinholeIntrinsics) -> None:
        with self._lock:
            self._intrinsics = intrinsics

    def intrinsics_problem(self, problem: str) -> None:
        """Intrinsics that could not be used: reported, the last good ones kept."""
        with self._lock:
            self.last_problem = problem

    def boxes_3d(
        self,
        stamp_ns: int,
        boxes: Sequence[tuple[float, float, float, float]],
        image_size: tuple[int, int],
        masks: Sequence[Any] | None = None,
    ) -> tuple[Box3D | None, ...] | None:
        """3D boxes for the colour frame stamped `stamp_ns`, or None when no depth or
        intrinsics pair it (depth over each box's instance mask where `masks` has one)."""
        depth_frame = self.pairer.pair(stamp_ns)
        if depth_frame is None:
            return None
        with self._lock:
            intrinsics = self._intrinsics
        if intrinsics is None:
            with self._lock:
                self.no_camera_info += 1
            return None
        try:
            depth, encoding = self._to_array(depth_frame)
            out = compute_boxes_3d(
                boxes, depth, encoding, intrinsics.scaled_to(*image_size), self.config, masks
            )
        except ValueError as exc:
            with self._lock:
                self.bad_depth += 1
                self.last_problem = f"depth: {exc}"
            return None
        with self._lock:
            self.no_3d += sum(1 for box in out if box is None)
        return tuple(out)

    def values(self) -> dict[str, int | str]:
        """Counters for the camera's diagnostics status."""
        with self._lock:
            return {
                "depth_frames_received": self.depth_frames,
                "frames_paired_with_depth": self.pairer.paired,
                "frames_without_depth": self.pairer.unpaired,
                "frames_without_camera_info": self.no_camera_info,
                "depth_frames_bad": self.bad_depth,
                "detections_without_3d": self.no_3d,
                "last_depth_problem": self.last_problem or "none",
            }
