"""The ROS side of 3D: depth Image and CameraInfo messages into the session's CameraDepth
(runtime/spatial.py: pairing, counters), and the Detection3DArray a result's 3D boxes give.

Depth messages are handed over as they arrive (executor thread); `depth_to_array` converts one
only when the inference worker pairs it with a colour frame, so unpaired depth costs no copy.
"""

from __future__ import annotations

import sys

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from ros2_owl.core.depth import DEPTH_ENCODINGS, PinholeIntrinsics
from ros2_owl.ros.messages import detection_id
from ros2_owl.runtime.spatial import CameraDepth

__all__ = [
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


def subscribe_depth(node, cam, depth: CameraDepth, depth_topic, info_topic, in_qos) -> list:
    """The depth and CameraInfo subscriptions feeding one camera's CameraDepth (`info_topic`
    None: the `camera_info` beside the image topic); returned so deactivate can remove them."""
    info_topic = info_topic or camera_info_topic(cam.topic)

    def on_depth(msg) -> None:
        depth.add_depth(stamp_ns(msg.header.stamp), msg)

    def on_camera_info(msg) -> None:
        try:  # an unusable K is reported, the last good intrinsics kept
            depth.set_intrinsics(intrinsics_from_camera_info(msg))
        except ValueError as exc:
            depth.intrinsics_problem(f"camera_info: {exc}")

    return [
        node.create_subscription(Image, depth_topic, on_depth, in_qos),
        node.create_subscription(CameraInfo, info_topic, on_camera_info, in_qos),
    ]
