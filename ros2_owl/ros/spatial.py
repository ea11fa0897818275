"""Depth + CameraInfo inputs of one camera and the Detection3DArray they give (maths: depth.py).

Depth messages are stored as they arrive (executor thread) and converted only when the
inference worker pairs one with a colour frame, so unpaired depth costs no copy.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from ros2_owl.core.depth import DEPTH_ENCODINGS, Box3D, DepthConfig, DepthPairer, PinholeIntrinsics
from ros2_owl.core.depth import boxes_3d as compute_boxes_3d
from ros2_owl.ros.messages import detection_id

__all__ = [
    "DepthInput",
    "camera_info_topic",
    "depth_to_array",
    "detection_3d_array",
    "intrinsics_from_camera_info",
    "stamp_ns",
    "subscribe_depth",
]


def stamp_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def camera_info_topic(image_topic: str) -> str:
    """image_transport's convention: CameraInfo beside the image ('cam/image_raw' -> 'cam/camera_info')."""
    base = image_topic.rstrip("/")
    if base.endswith("/compressed"):
        base = base[: -len("/compressed")]
    parent = base.rpartition("/")[0]
    return f"{parent}/camera_info" if parent else "camera_info"


def depth_to_array(msg) -> tuple[np.ndarray, str]:
    """A 16UC1 / 32FC1 sensor_msgs/Image as an HxW array (a view of its bytes when possible)."""
    encoding = msg.encoding
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"depth encoding {encoding!r} is not supported (16UC1 or 32FC1)")
    dtype = np.dtype(np.uint16 if encoding == "16UC1" else np.float32)
    dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    if width <= 0 or height <= 0 or step < width * dtype.itemsize:
        raise ValueError(f"bad depth image layout: {width}x{height}, step {step}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * height:
        raise ValueError(f"depth image has {data.size} bytes, needs {step * height}")
    rows = data[: step * height].reshape(height, step)[:, : width * dtype.itemsize]
    array = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
    native = (sys.byteorder == "little") != bool(msg.is_bigendian)
    return (array if native else array.astype(dtype.newbyteorder("="))), encoding


def intrinsics_from_camera_info(msg) -> PinholeIntrinsics:
    """K and the image size of a sensor_msgs/CameraInfo (ValueError when K is unusable)."""
    return PinholeIntrinsics.from_k(list(msg.k), int(msg.width), int(msg.height))


class DepthInput:
    """One camera's depth frames and intrinsics, with the counters diagnostics report."""

    def __init__(self, tolerance_s: float, config: DepthConfig | None = None, history: int = 8):
        self.pairer: DepthPairer = DepthPairer(int(round(tolerance_s * 1e9)), history)
        self.config = config or DepthConfig()
        self._intrinsics: PinholeIntrinsics | None = None
        self._lock = threading.Lock()
        self.depth_frames = 0
        self.no_camera_info = 0  # colour frames paired with depth but without CameraInfo yet
        self.bad_depth = 0  # paired depth frames that could not be read
        self.no_3d = 0  # detections without a 3D box (too few valid depth pixels)
        self.last_problem = ""

    def on_depth(self, msg) -> None:
        """Executor thread: keep the message for pairing (converted only when used)."""
        with self._lock:
            self.depth_frames += 1
        self.pairer.add(stamp_ns(msg.header.stamp), msg)

    def on_camera_info(self, msg) -> None:
        """Executor thread: the newest usable intrinsics (an unusable K is counted, not kept)."""
        try:
            intrinsics = intrinsics_from_camera_info(msg)
        except ValueError as exc:
            with self._lock:
                self.last_problem = f"camera_info: {exc}"
            return
        with self._lock:
            self._intrinsics = intrinsics

    def boxes_3d(self, header, boxes, image_size, masks=None) -> list[Box3D | None] | None:
        """Worker: 3D boxes for this colour frame, or None when no depth/intrinsics pair it
        (depth over each box's instance mask where `masks` has one)."""
        depth_msg = self.pairer.pair(stamp_ns(header.stamp))
        if depth_msg is None:
            return None
        with self._lock:
            intrinsics = self._intrinsics
        if intrinsics is None:
            with self._lock:
                self.no_camera_info += 1
            return None
        try:
            depth, encoding = depth_to_array(depth_msg)
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
        return out

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


def detection_3d_array(result, boxes, header, tracking: bool) -> Detection3DArray:
    """Detections that got a 3D box, with the ids and label text/score of the 2D message."""
    out = Detection3DArray(header=header)
    for det, box in zip(result.detections, boxes, strict=True):
        if box is None:
            continue
        msg = Detection3D()
        msg.header = header
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = det.label
        hyp.hypothesis.score = float(det.score)
        position = hyp.pose.pose.position
        position.x, position.y, position.z = box.center
        msg.results.append(hyp)
        centre = msg.bbox.center.position
        centre.x, centre.y, centre.z = box.center
        msg.bbox.center.orientation.w = 1.0
        msg.bbox.size.x, msg.bbox.size.y, msg.bbox.size.z = box.size
        msg.id = detection_id(det, tracking)
        out.detections.append(msg)
    return out


def subscribe_depth(node, cam, depth: DepthInput, depth_topic, info_topic, in_qos) -> list:
    """The depth and CameraInfo subscriptions feeding one camera's DepthInput (`info_topic`
    None: the `camera_info` beside the image topic); returned so deactivate can remove them."""
    info_topic = info_topic or camera_info_topic(cam.topic)
    return [
        node.create_subscription(Image, depth_topic, depth.on_depth, in_qos),
        node.create_subscription(CameraInfo, info_topic, depth.on_camera_info, in_qos),
    ]
