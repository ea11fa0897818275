"""/tf and /tf_static into a TransformBuffer (transforms.py), with the QoS tf2_ros listens with.

tf2_ros has no wheel here, so this is its listener's job done with the real tf2_msgs/TFMessage:
/tf reliable, volatile, depth 100; /tf_static reliable, transient local, depth 100 (so frames
broadcast before the node started arrive). Callbacks only store; lookups never wait.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ros2_owl.core.transforms import TransformBuffer

__all__ = ["DYNAMIC_QOS", "STATIC_QOS", "TfListener"]

DYNAMIC_QOS = QoSProfile(
    depth=100,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
STATIC_QOS = QoSProfile(
    depth=100,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


class TfListener:
    """The node's transform buffer and its two subscriptions (removed by close)."""

    def __init__(self, node, guard, cache_s: float = 10.0):
        from tf2_msgs.msg import TFMessage  # imported only when target_frame is set

        self.buffer = TransformBuffer(cache_s)
        self.bad_transforms = 0
        self.last_problem = ""
        self._node = node
        self._subs = [
            node.create_subscription(
                TFMessage, "/tf", guard.call("/tf", lambda m: self._store(m, False)), DYNAMIC_QOS
            ),
            node.create_subscription(
                TFMessage,
                "/tf_static",
                guard.call("/tf_static", lambda m: self._store(m, True)),
                STATIC_QOS,
            ),
        ]

    def _store(self, msg, static: bool) -> None:
        for t in msg.transforms:
            tr, q = t.transform.translation, t.transform.rotation
            stamp = int(t.header.stamp.sec) * 1_000_000_000 + int(t.header.stamp.nanosec)
            try:
                self.buffer.set_transform(
                    t.header.frame_id,
                    t.child_frame_id,
                    stamp,
                    (tr.x, tr.y, tr.z),
                    (q.x, q.y, q.z, q.w),
                    static,
                )
            except ValueError as exc:  # counted, shown in diagnostics; the rest is kept
                self.bad_transforms += 1
                self.last_problem = f"bad transform: {exc}"

    def close(self) -> None:
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []
