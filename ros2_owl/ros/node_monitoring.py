"""owl_node's monitoring: diagnostics per camera, the no-frame warning, throttled warnings.

OwlNode (ros/node.py) owns one NodeMonitor: it opens the /diagnostics publisher at configure,
its timers call `publish` and `check_no_frames` while active, and `close` frees it at cleanup.
"""

from __future__ import annotations

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray

from ros2_owl.ros.cameras import Camera, no_frame_message
from ros2_owl.ros.diagnostics import build_diagnostics, camera_status, encoder_facts, node_status

__all__ = ["NodeMonitor"]


class NodeMonitor:
    """Diagnostics and warnings of one OwlNode; reads its settings, session, cameras and depth
    inputs, never writes them."""

    def __init__(self, node: Any, guard: Any) -> None:
        self._node, self._guard = node, guard
        self._warn_times: dict[str, float] = {}
        self._previous: dict[int, Any] = {}
        self._publisher = None
        self.no_frame_timer = None  # once per activation: the check cancels it

    def open(self) -> None:
        """The /diagnostics lifecycle publisher (configure)."""
        self._publisher = self._node.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)

    def close(self) -> None:
        """Back to unconfigured: publisher gone, no previous counts kept."""
        if self._publisher is not None:
            self._node.destroy_lifecycle_publisher(self._publisher)
            self._publisher = None
        self._previous.clear()

    def warn(self, cam: Camera, text: str, period: float = 5.0) -> None:
        """A warning about one camera, repeats muted for `period` seconds."""
        now = time.monotonic()
        key = cam.resolved_topic
        if now - self._warn_times.get(key, float("-inf")) >= period:
            self._warn_times[key] = now
            self._node.get_logger().warning(
                f"{cam.resolved_topic}: {text} (repeats are muted {period:g} s)"
            )

    def check_no_frames(self) -> None:
        if self.no_frame_timer is not None:
            self.no_frame_timer.cancel()  # once per activation
        node, s = self._node, self._node.settings
        for cam in node.cameras:
            if not cam.stats.received:
                publishers = node.get_publishers_info_by_topic(cam.resolved_topic)
                node.get_logger().warning(
                    no_frame_message(
                        cam, s.no_frame_warning, s.input_reliability, s.input_depth, publishers
                    )
                )

    def _camera_extras(self, cam: Camera) -> dict:
        """Tracking and depth counters of one camera for its diagnostics status."""
        extra: dict = {}
        session = self._node.session
        tracking = session.tracking if session is not None else None
        if tracking is not None:
            extra["active_tracks"] = tracking.active_tracks.get(cam.resolved_topic, 0)
        depth = self._node.depth_inputs.get(cam.index)
        if depth is not None:
            extra.update(depth.values())
        robot = self._node.robot_outputs
        if robot is not None:
            extra.update(robot.values(cam.index))
        return extra

    def publish(self) -> None:
        node = self._node
        name = node.get_fully_qualified_name()
        s = node.settings
        predictor = node.predictor
        if predictor is None or self._publisher is None:
            return  # a tick racing deactivate/cleanup
        upgrade = predictor.upgrade
        statuses = [
            node_status(
                name,
                model=s.model,
                clip_model=s.clip_model or "none",
                backend=s.backend,
                backend_choice=predictor.backend_summary(),
                backend_upgrade=upgrade.status.describe() if upgrade else "none",
                device=s.device,
                prompt=s.prompt,
                callback_errors=self._guard.errors,
                last_callback_error=self._guard.last_error or "none",
                **encoder_facts(predictor.owl_encoder),
            )
        ]
        for cam in node.cameras:
            snap = cam.stats.snapshot()
            previous = self._previous.get(cam.index)
            extra = self._camera_extras(cam)
            statuses.append(camera_status(name, snap, previous, s.no_frame_warning, extra))
            self._previous[cam.index] = snap
        self._publisher.publish(build_diagnostics(node.get_clock().now().to_msg(), statuses))
