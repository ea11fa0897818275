"""What a robot team wires next, per camera: 3D detections in `target_frame`, RViz markers and
Foxglove image annotations (all opt-in; builders in overlay_messages.py, tf maths in
transforms.py). Called by the inference thread for each processed frame; never waits.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from ros2_owl.core.transforms import Transform, TransformError, quat_multiply
from ros2_owl.io.overlay_messages import MarkerIds, image_annotations, marker_array
from ros2_owl.ros.messages import RCLPY

__all__ = ["RobotOutputs", "transform_detections_3d"]


def _transform_pose(pose, transform: Transform) -> None:
    """A geometry_msgs/Pose of the source frame, in place, into the target frame."""
    p, q = pose.position, pose.orientation
    p.x, p.y, p.z = (float(v) for v in transform.apply((p.x, p.y, p.z)))
    own = (q.x, q.y, q.z, q.w) if any((q.x, q.y, q.z, q.w)) else (0.0, 0.0, 0.0, 1.0)
    q.x, q.y, q.z, q.w = (float(v) for v in quat_multiply(transform.rotation, np.asarray(own)))


def transform_detections_3d(msg, transform: Transform, frame_id: str):
    """Move a Detection3DArray (box centres, orientations, hypothesis poses) into `frame_id`."""
    header = Header(stamp=msg.header.stamp, frame_id=frame_id)  # the input's header is shared
    msg.header = header
    for det in msg.detections:
        det.header = header
        _transform_pose(det.bbox.center, transform)
        for hyp in det.results:
            _transform_pose(hyp.pose.pose, transform)
    return msg


class _TargetCounters:
    def __init__(self) -> None:
        self.transformed = 0
        self.untransformed = 0
        self.skipped = 0
        self.last_problem = ""


class RobotOutputs:
    """Per-camera publishers and state of the opt-in robot outputs; built at configure."""

    def __init__(self, node, settings, guard):
        self.target_frame = settings.target_frame.strip().lstrip("/")
        self.skip_missing = settings.transform_missing == "skip"
        self.markers = settings.publish_markers
        self.annotations = settings.publish_image_annotations
        self._types: dict[str, type] = {}
        if self.markers:  # imported first: a missing package fails before anything is made
            from visualization_msgs.msg import MarkerArray

            self._types["markers"] = MarkerArray
        if self.annotations:
            from foxglove_msgs.msg import ImageAnnotations

            self._types["image_annotations"] = ImageAnnotations
        self.tf = self.prompt_topic = None
        if self.target_frame:
            from ros2_owl.ros.tf_listener import TfListener

            self.tf = TfListener(node, guard)
        if settings.prompt_topic.strip():
            from ros2_owl.ros.prompt_topic import PromptTopic

            self.prompt_topic = PromptTopic(node, settings.prompt_topic.strip(), guard)
        self._marker_ids: dict[int, MarkerIds] = {}
        self._counters: dict[int, _TargetCounters] = {}
        self._lock = threading.Lock()
        self._logger = node.get_logger()
        self._warned: dict[int, float] = {}
        self._topics: dict[int, str] = {}  # camera index -> its input topic, for warnings

    @property
    def enabled(self) -> bool:
        return bool(self._types or self.tf or self.prompt_topic)

    def add_camera(self, node, cam, output_topic) -> None:
        """The camera's lifecycle publishers (destroyed with its others at cleanup)."""
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        for name, kind in self._types.items():
            topic = output_topic(cam.prefix, name)
            cam.publishers[name] = node.create_lifecycle_publisher(kind, topic, qos)
        self._marker_ids[cam.index] = MarkerIds()
        self._topics[cam.index] = cam.resolved_topic or cam.topic
        self._counters[cam.index] = _TargetCounters()

    def to_target(self, cam_index: int, msg):
        """The 3D message in target_frame at its stamp; unchanged without a target_frame, or
        untransformed / None (skip) when the transform is missing, as transform_missing says."""
        if not self.target_frame or self.tf is None:
            return msg
        counters = self._counters.setdefault(cam_index, _TargetCounters())
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        try:
            transform = self.tf.buffer.lookup(self.target_frame, msg.header.frame_id, stamp)
        except TransformError as exc:
            with self._lock:
                counters.last_problem = str(exc)
                if self.skip_missing:
                    counters.skipped += 1
                else:
                    counters.untransformed += 1
            self._warn_missing(cam_index, str(exc))
            return None if self.skip_missing else msg
        with self._lock:
            counters.transformed += 1
        return transform_detections_3d(msg, transform, self.target_frame)

    def _warn_missing(self, cam_index: int, reason: str, period: float = 5.0) -> None:
        """One line per camera and `period` seconds: why a frame has no transform."""
        now = time.monotonic()
        if now - self._warned.get(cam_index, float("-inf")) < period:
            return
        self._warned[cam_index] = now
        what = "published without 3D" if self.skip_missing else "published untransformed"
        topic = self._topics.get(cam_index, f"camera {cam_index}")
        self._logger.warning(f"{topic}: {reason}; {what} (repeats muted {period:g} s)")

    def frame_done(self, cam, result, header, msg_3d, tracking: bool, key) -> None:
        """Annotations for every frame; markers for a frame that has (transformed) 3D boxes."""
        pubs = cam.publishers
        if self.annotations:
            pubs["image_annotations"].publish(image_annotations(RCLPY, result, header, tracking))
        if self.markers and msg_3d is not None:
            labels = {d.label: d.label_index for d in result.detections}
            ids = self._marker_ids.setdefault(cam.index, MarkerIds())
            pubs["markers"].publish(marker_array(RCLPY, msg_3d, labels, ids, key))

    def values(self, cam_index: int) -> dict:
        """target_frame counters of one camera for its diagnostics status."""
        if not self.target_frame:
            return {}
        c = self._counters.get(cam_index) or _TargetCounters()
        with self._lock:
            out = {
                "target_frame": self.target_frame,
                "frames_transformed": c.transformed,
                "frames_without_transform": c.untransformed + c.skipped,
                "frames_skipped_without_transform": c.skipped,
                "last_transform_problem": c.last_problem or "none",
            }
        if self.tf is not None and self.tf.bad_transforms:
            out["bad_transforms_received"] = self.tf.bad_transforms
        return out

    def close(self) -> None:
        if self.tf is not None:
            self.tf.close()
        if self.prompt_topic is not None:
            self.prompt_topic.close()
        self.tf = self.prompt_topic = None
