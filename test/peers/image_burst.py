"""Test peer: sends N best-effort rgb8 frames to IN_TOPIC, counts those echoed on OUT_TOPIC and
prints one JSON line {"sent": N, "received": K, "first_bytes_ok": bool}.

usage: image_burst.py OUT_TOPIC ECHO_TOPIC N WIDTH HEIGHT
"""

import json
import sys
import threading
import time

import rclpy
import rclpy.executors
from owl_support import spin_in_background
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


def main() -> None:
    out_topic, echo_topic = sys.argv[1:3]
    count, width, height = (int(a) for a in sys.argv[3:6])
    rclpy.init()
    node = rclpy.create_node("image_burst_peer")
    seen: dict[str, bytes] = {}
    cond = threading.Condition()

    def on_echo(msg: Image) -> None:
        with cond:
            seen[msg.header.frame_id] = bytes(msg.data[:3])
            cond.notify_all()

    node.create_subscription(Image, echo_topic, on_echo, qos_profile_sensor_data)
    pub = node.create_publisher(Image, out_topic, qos_profile_sensor_data)
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    stop_spinning = spin_in_background(executor)

    def frame(name: str, value: int) -> Image:
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
        msg.header.frame_id = name
        msg.data = bytes([value]) * (height * width * 3)
        return msg

    def wait_echo(name: str, timeout: float) -> bool:
        with cond:
            return cond.wait_for(lambda: name in seen, timeout)

    deadline = time.monotonic() + 20
    while pub.get_subscription_count() < 1 or node.count_publishers(echo_topic) < 1:
        if time.monotonic() > deadline:
            raise SystemExit("echo peer not discovered within 20 s")
        time.sleep(0.02)
    # warm-up until one frame makes the round trip: the first samples can race reader matching
    while not wait_echo("warmup", 0.5):
        if time.monotonic() > deadline:
            raise SystemExit("no warm-up frame came back within 20 s")
        pub.publish(frame("warmup", 255))
    for i in range(count):
        pub.publish(frame(f"frame-{i}", i % 256))
        wait_echo(f"frame-{i}", 0.5)  # paces the burst; a lost frame just costs the timeout
    received = sum(f"frame-{i}" in seen for i in range(count))
    ok = all(
        seen[f"frame-{i}"] == bytes([i % 256]) * 3 for i in range(count) if f"frame-{i}" in seen
    )
    print(json.dumps({"sent": count, "received": received, "first_bytes_ok": ok}), flush=True)
    stop_spinning()
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
