"""The Fast DDS profile for camera-sized images, and the environment that makes Fast DDS load it.

Fast DDS 2.x (ROS 2 Humble, Jazzy) reads its XML profile only from FASTRTPS_DEFAULT_PROFILES_FILE;
Fast DDS 3.x (Kilted and later) reads FASTDDS_DEFAULT_PROFILES_FILE, and Kilted's rmw_fastrtps
warns once per process that the old name is deprecated. Setting only the new name left Jazzy on
its 512 KiB shared-memory default (720p frames lost), so the old name is added where Fast DDS is
2.x or its version is unknown. No rclpy import: safe before rclpy loads.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "PROFILE_FILE",
    "PROFILE_VARIABLE",
    "PROFILE_VARIABLE_FAST_DDS_2",
    "fast_dds_major",
    "large_image_env",
    "profile_variables",
]

PROFILE_FILE = "fastdds_large_shm.xml"  # in config/ (installed to share/ros2_owl/config/)
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"  # Fast DDS 3.x; set always
PROFILE_VARIABLE_FAST_DDS_2 = "FASTRTPS_DEFAULT_PROFILES_FILE"  # the only one 2.x reads
# Distributions whose Fast DDS is 2.x or older, for when no Fast DDS install can be found
FAST_DDS_2_DISTROS = frozenset({"foxy", "galactic", "humble", "iron", "jazzy"})
# The CMake package (and so the version file) was renamed from fastrtps to fastdds in 3.0
_VERSION_FILES = (
    "share/fastdds/cmake/fastdds-config-version.cmake",
    "share/fastrtps/cmake/fastrtps-config-version.cmake",
)
_VERSION = re.compile(r'set\(PACKAGE_VERSION "(\d+)\.')


def _installed_major(prefix: Path) -> int | None:
    """Major version of the Fast DDS installed under one prefix, from its CMake version file."""
    for relative in _VERSION_FILES:
        try:
            match = _VERSION.search((prefix / relative).read_text(errors="replace"))
        except OSError:
            continue
        if match:
            return int(match.group(1))
    return None


def fast_dds_major(
    environ: Mapping[str, str] | None = None, prefixes: Sequence[str | Path] | None = None
) -> int | None:
    """Major version of the Fast DDS this environment's ROS uses: the first install found on
    AMENT_PREFIX_PATH (then this Python's prefix, where the ROS wheels live), else from
    ROS_DISTRO; None when neither tells."""
    environ = os.environ if environ is None else environ
    if prefixes is None:
        prefixes = [p for p in environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
        prefixes.append(sys.prefix)
    for prefix in prefixes:
        major = _installed_major(Path(prefix))
        if major is not None:
            return major
    distro = environ.get("ROS_DISTRO", "").strip().lower()
    if not distro:
        return None
    return 2 if distro in FAST_DDS_2_DISTROS else 3


def profile_variables(major: int | None) -> tuple[str, ...]:
    """The variables that must name the profile for Fast DDS `major` (None: unknown): the new
    name always, the old one unless 3.x (an unread old name costs a warning, a missing one the
    profile)."""
    if major is not None and major >= 3:
        return (PROFILE_VARIABLE,)
    return (PROFILE_VARIABLE, PROFILE_VARIABLE_FAST_DDS_2)


def large_image_env(
    profile: str | Path, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Variables for a process that sends or receives large images: the profile under the
    names the Fast DDS of `environ` (default: this process's) reads, and discovery left to the
    profile's transports."""
    env = {name: str(profile) for name in profile_variables(fast_dds_major(environ))}
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"
    return env
