"""Process start of owl_node: rclpy.init whose argument errors become one line, not a stack.

rcl rejects a bad `--ros-args` line (override rule, remap, params file, log level) inside
rclpy.init with an RCLError that names the argument, plus an "[ERROR] [rcl]" log line and C
source locations; the user needs only the first part.
"""

from __future__ import annotations

import re

import rclpy
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.logging import LoggingSeverity, get_logger_effective_level, set_logger_level

__all__ = ["StartupError", "init_ros", "ros_arguments_problem"]

_SOURCE_LOCATION = re.compile(r", at [^,]+:\d+")


class StartupError(RuntimeError):
    """The node cannot start with these parameters; the message says which and why."""


def ros_arguments_problem(exc: BaseException) -> str:
    """rcl's error for a bad ROS argument, without its prefix and C source locations."""
    text = _SOURCE_LOCATION.sub("", str(exc).strip())
    text = text.removeprefix("failed to initialize rcl: ").replace(". Error: error not set", "")
    if isinstance(exc, _rclpy.UnknownROSArgsError):
        return f"unknown ROS arguments {text}"
    return f"bad ROS arguments: {text.splitlines()[0] if text else type(exc).__name__}"


def init_ros(args: list[str] | None) -> None:
    """rclpy.init; a bad ROS argument raises StartupError (rcl's own log line held back)."""
    set_logger_level("rcl", LoggingSeverity.FATAL)
    try:
        rclpy.init(args=args)
    except (_rclpy.RCLError, _rclpy.UnknownROSArgsError) as exc:
        raise StartupError(ros_arguments_problem(exc)) from None
    finally:  # back to the default unless the arguments' --log-level set the rcl logger
        if get_logger_effective_level("rcl") == LoggingSeverity.FATAL:
            set_logger_level("rcl", LoggingSeverity.UNSET)
