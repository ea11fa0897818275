"""The Fast DDS profile for camera-sized images, and the environment that makes Fast DDS load it.

Fast DDS 2.x (ROS 2 Humble, Jazzy) reads its XML profile from FASTRTPS_DEFAULT_PROFILES_FILE;
Fast DDS 3.x (Kilted and later) renamed it FASTDDS_DEFAULT_PROFILES_FILE and ignores the old
name. Setting only the new one left Jazzy on its 512 KiB shared-memory default (720p frames
lost), so both are set wherever the profile is used. No rclpy import: safe before rclpy loads.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PROFILE_FILE", "PROFILE_VARIABLES", "large_image_env"]

PROFILE_FILE = "fastdds_large_shm.xml"  # in config/ (installed to share/ros2_owl/config/)
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def large_image_env(profile: str | Path) -> dict[str, str]:
    """Variables for a process that sends or receives large images: the profile for either
    Fast DDS generation, and discovery left to the profile's transports."""
    env = {name: str(profile) for name in PROFILE_VARIABLES}
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"
    return env
