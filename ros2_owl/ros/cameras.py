"""Camera inputs and outputs: topic -> output namespace scheme, input QoS, output publishers."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from ros2_owl.io.topics import (  # noqa: F401  (re-exported: the node imports them here)
    camera_outputs,
    is_compressed_topic,
    output_prefixes,
    output_topic,
)
from ros2_owl.ros.diagnostics import CameraStats

__all__ = [
    "Camera",
    "input_qos",
    "output_publishers",
    "is_compressed_topic",
    "no_frame_message",
    "output_prefixes",
    "output_topic",
]


def output_publishers(with_depth: bool) -> dict[str, tuple[type, QoSProfile]]:
    """Each output's message class and QoS, from io/topics.py's one table."""
    out = {}
    for name, spec in camera_outputs(with_depth).items():
        package, _, message = spec.type.rpartition("/")
        kind = getattr(importlib.import_module(package.replace("/", ".")), message)
        qos = QoSProfile(depth=spec.depth, reliability=ReliabilityPolicy.RELIABLE)
        if spec.transient_local:
            qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
        out[name] = (kind, qos)
    return out


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
