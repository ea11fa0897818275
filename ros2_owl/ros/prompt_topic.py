"""The optional prompt topic: a std_msgs/String sets the prompt (e.g. from Foxglove's Publish
panel) through the same path and refusals as ~/set_prompt; every answer goes out on
~/prompt_status (latched, so a panel opened later still sees the last one)."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

__all__ = ["PromptTopic", "STATUS_QOS"]

IN_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
STATUS_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class PromptTopic:
    """Subscription on `prompt_topic` and the status publisher (both removed by close)."""

    def __init__(self, node, topic: str, guard):
        self._node = node
        self.status = node.create_publisher(String, "~/prompt_status", STATUS_QOS)
        self._sub = node.create_subscription(
            String, topic, guard.call(f"prompt topic {topic}", self._on_prompt), IN_QOS
        )

    def _on_prompt(self, msg: String) -> None:
        change = self._node.apply_prompt(msg.data)
        if change.ok:
            text = f"ok: prompt now {msg.data!r}"
            self._node.get_logger().info(f"prompt set by topic: {msg.data!r}")
        else:
            text = f"refused: {change.message}"
            first = change.message.splitlines()[0] if change.message else ""
            self._node.get_logger().warning(f"prompt topic: refused {msg.data!r:.80}: {first}")
        self.status.publish(String(data=text))

    def close(self) -> None:
        self._node.destroy_subscription(self._sub)
        self._node.destroy_publisher(self.status)
