"""owl_node's monitoring: diagnostics per camera, the no-frame warning, throttled warnings.

A mixin of OwlNode (ros/node.py), which provides `cameras`, `predictor`, `_outputs`, the
guard, `_live` and the timers/publisher that call these while the node is active.
"""

from __future__ import annotations

import time

from ros2_owl.ros.cameras import Camera, no_frame_message
from ros2_owl.ros.diagnostics import build_diagnostics, camera_status, encoder_facts, node_status

__all__ = ["MonitoringMixin"]


class MonitoringMixin:
    """Diagnostics and warnings of OwlNode."""

    def _warn_throttled(self, cam: Camera, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        key = cam.resolved_topic
        if now - self._warn_times.get(key, float("-inf")) >= period:
            self._warn_times[key] = now
            self.get_logger().warning(
                f"{cam.resolved_topic}: {text} (repeats are muted {period:g} s)"
            )

    def _check_no_frames(self) -> None:
        if self._no_frame_timer is not None:
            self._no_frame_timer.cancel()  # once per activation
        s = self._live.settings
        for cam in self.cameras:
            if not cam.stats.received:
                publishers = self.get_publishers_info_by_topic(cam.resolved_topic)
                self.get_logger().warning(
                    no_frame_message(
                        cam, s.no_frame_warning, s.input_reliability, s.input_depth, publishers
                    )
                )

    def _camera_extras(self, cam: Camera) -> dict:
        """Tracking and depth counters of one camera for its diagnostics status."""
        extra: dict = {}
        out = self._outputs
        if out.tracking is not None:
            extra["active_tracks"] = out.tracking.active_tracks.get(cam.resolved_topic, 0)
        if cam.index in out.depth:
            extra.update(out.depth[cam.index].values())
        return extra

    def _publish_diagnostics(self) -> None:
        name = self.get_fully_qualified_name()
        s = self._live.settings
        predictor = self.predictor
        if predictor is None or self._diag_pub is None:
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
        for cam in self.cameras:
            snap = cam.stats.snapshot()
            previous = self._previous_stats.get(cam.index)
            extra = self._camera_extras(cam)
            statuses.append(camera_status(name, snap, previous, s.no_frame_warning, extra))
            self._previous_stats[cam.index] = snap
        self._diag_pub.publish(build_diagnostics(self.get_clock().now().to_msg(), statuses))
