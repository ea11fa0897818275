"""Test peer: republishes every message of one type from one topic to another, unchanged.

usage: echo.py PACKAGE/msg/TYPE IN_TOPIC OUT_TOPIC [--sensor-qos]
(--sensor-qos: best-effort SensorDataQoS both ways, as camera drivers publish)
"""

import importlib
import sys

import rclpy
from rclpy.executors import ExternalShutdownException


def main() -> None:
    type_name, in_topic, out_topic = sys.argv[1:4]
    package, _, name = type_name.split("/")
    msg_type = getattr(importlib.import_module(f"{package}.msg"), name)
    qos = 10
    if "--sensor-qos" in sys.argv[4:]:
        from rclpy.qos import qos_profile_sensor_data

        qos = qos_profile_sensor_data
    rclpy.init()
    node = rclpy.create_node("echo_peer")
    pub = node.create_publisher(msg_type, out_topic, qos)
    node.create_subscription(msg_type, in_topic, pub.publish, qos)
    node.get_logger().info(f"echoing {type_name} {in_topic} -> {out_topic}")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
