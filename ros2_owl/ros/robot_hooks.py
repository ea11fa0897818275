"""The node's two hooks into the robot outputs and ~/detect, kept apart from node.py so its
state machine only calls them (configure builds the outputs, __init__ starts the service)."""

from __future__ import annotations

__all__ = ["make_robot_outputs", "start_detect_service"]


def make_robot_outputs(node, settings, configure_error: type[Exception]):
    """RobotOutputs when any of them is asked for, else None; a missing message package is a
    configure error naming it (foxglove_msgs, tf2_msgs and visualization_msgs are imported only
    when their output is on)."""
    from ros2_owl.ros.robot_outputs import RobotOutputs

    try:
        robot = RobotOutputs(node, settings, node._guard)
    except ImportError as exc:
        raise configure_error(f"{exc}: install that ROS package for this output") from exc
    return robot if robot.enabled else None


def start_detect_service(node):
    from ros2_owl.ros.detect_service import DetectService

    return DetectService(node)
