"""Camera inputs: topic -> output namespace scheme, QoS, and the one-slot mailbox per camera."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from ros2_owl.io.topics import (  # noqa: F401  (re-exported: the node imports them here)
    OUTPUTS,
    is_compressed_topic,
    output_prefixes,
    output_topic,
)
from ros2_owl.ros.diagnostics import CameraStats

__all__ = [
    "Camera",
    "Mailbox",
    "input_qos",
    "is_compressed_topic",
    "no_frame_message",
    "output_prefixes",
    "output_topic",
]


def input_qos(reliability: str, depth: int) -> QoSProfile:
    """SensorDataQoS by default (best effort, volatile, keep last `depth`)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=(
            ReliabilityPolicy.RELIABLE
            if reliability == "reliable"
            else ReliabilityPolicy.BEST_EFFORT
        ),
        durability=DurabilityPolicy.VOLATILE,
    )


@dataclass
class Camera:
    """One input topic with its outputs and counters."""

    index: int
    topic: str  # as configured (relative names resolve in the node namespace)
    prefix: str  # output namespace
    compressed: bool
    stats: CameraStats
    publishers: dict[str, Any] = field(default_factory=dict)
    resolved_topic: str = ""
    last_accepted: float = float("-inf")


def no_frame_message(
    cam: Camera, seconds: float, reliability: str, depth: int, publishers: list
) -> str:
    """Why a camera may be silent: its topic, our QoS, and who publishes there with what QoS."""
    seen = (
        ", ".join(
            f"{p.node_namespace.rstrip('/')}/{p.node_name} "
            f"({p.qos_profile.reliability.name.lower()}, type {p.topic_type})"
            for p in publishers
        )
        or "none"
    )
    kind = "CompressedImage" if cam.compressed else "Image"
    return (
        f"no frame received on {cam.resolved_topic} ({kind}) within {seconds:g} s; subscribed "
        f"with QoS reliability={reliability}, depth={depth}; publishers seen: {seen}. A reliable "
        "subscriber gets nothing from a best-effort publisher; check the topic name and remappings."
    )


@dataclass
class _Pending:
    camera: Camera
    msg: Any
    received: float  # time.monotonic() when the callback ran


class Mailbox:
    """One slot per camera: a newer frame replaces an unprocessed one (counted as dropped).

    The worker takes the slot whose frame waited longest, so cameras share the model fairly.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: dict[int, _Pending] = {}
        self._closed = False

    def put(self, camera: Camera, msg: Any, received: float | None = None) -> None:
        with self._cond:
            if camera.index in self._slots:
                camera.stats.frame_dropped()
            self._slots[camera.index] = _Pending(
                camera, msg, time.monotonic() if received is None else received
            )
            self._cond.notify()

    def take(self, timeout: float | None = None) -> _Pending | None:
        """The oldest pending frame, waiting for one; None when closed or on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._slots or self._closed, timeout):
                return None
            if self._closed:
                return None
            index = min(self._slots, key=lambda i: self._slots[i].received)
            return self._slots.pop(index)

    def take_batch(self, limit: int, timeout: float | None = None) -> list[_Pending]:
        """Up to `limit` pending frames, longest waiting first, one per camera (waits for the
        first). A camera left out is among the newest, so it is first in line next time: no
        camera waits more than one batch for the others."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._slots or self._closed, timeout):
                return []
            if self._closed:
                return []
            order = sorted(self._slots, key=lambda i: self._slots[i].received)[: max(1, limit)]
            return [self._slots.pop(i) for i in order]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._slots.clear()
            self._cond.notify_all()
