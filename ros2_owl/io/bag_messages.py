"""The node's message types for rosbags (no ROS needed): a typestore with ros2_owl's and
vision_msgs' definitions read from their .msg files, and a MessageFactory over it."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["BagMessages", "InterfaceNotFoundError", "bag_messages", "interface_dir"]

_REPO = Path(__file__).resolve().parents[2]
# Where the .msg files are when no ROS install has them: vision_msgs' definitions ship with the
# package (package data, also the source of the test/fixtures/vision_msgs colcon fallback);
# ros2_owl's own are the checkout's msg/ (pip users get them under
# <prefix>/share/ros2_owl/interfaces by setup.py).
_FALLBACK_DIRS = {
    "ros2_owl": _REPO / "msg",
    "vision_msgs": Path(__file__).resolve().parent / "interfaces" / "vision_msgs" / "msg",
}
# ROS 2 .msg files may declare default values; rosbags' field definitions do not carry them.
# Of the types the node publishes only Quaternion has a non-zero one (w = 1, the identity).
_FIELD_DEFAULTS = {("geometry_msgs/msg/Quaternion", "w"): 1.0}
_NUMPY = {"bool": np.bool_, "byte": np.uint8, "char": np.uint8}


class InterfaceNotFoundError(RuntimeError):
    """No .msg files were found for a package the output bag needs."""


def interface_dir(package: str) -> Path:
    """The msg/ folder of `package`: a ROS install (AMENT_PREFIX_PATH) first, so a real
    vision_msgs wins, then a pip install's copy, then the package's own (vision_msgs) or this
    checkout's (ros2_owl)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates = [Path(p) / "share" / package / "msg" for p in prefixes]
    candidates.append(Path(sys.prefix) / "share" / "ros2_owl" / "interfaces" / package / "msg")
    candidates.append(_FALLBACK_DIRS[package])
    for folder in candidates:
        if any(folder.glob("*.msg")):
            return folder
    tried = ", ".join(str(c) for c in candidates)
    raise InterfaceNotFoundError(f"no {package} .msg files found (tried {tried})")


class BagMessages:
    """A rosbags typestore (ROS 2 Kilted base types + ours) and a MessageFactory for it."""

    def __init__(self) -> None:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        self.typestore = get_typestore(Stores.ROS2_KILTED)
        self.sources: dict[str, Path] = {}
        for package in ("vision_msgs", "ros2_owl"):
            folder = interface_dir(package)
            self.sources[package] = folder
            types = {}
            for path in sorted(folder.glob("*.msg")):
                text = path.read_text(encoding="utf-8")
                types.update(get_types_from_msg(text, f"{package}/msg/{path.stem}"))
            self.typestore.register(types)

    def fields(self, type_name: str) -> list[tuple[str, tuple]]:
        """(name, rosbags field description) of every field of `type_name`, in order."""
        return list(self.typestore.fielddefs[type_name][1])

    def new(self, type_name: str):
        """A message with every field at its ROS default (zeros, '', empty sequences)."""
        values = {
            name: _FIELD_DEFAULTS.get((type_name, name), self._default(desc))
            for name, desc in self.fields(type_name)
        }
        return self.typestore.types[type_name](**values)

    def array(self, dtype: str, values):
        return np.asarray(values, dtype=_NUMPY.get(dtype, dtype))

    def _default(self, desc):
        from rosbags.interfaces import Nodetype

        kind, detail = desc
        if kind == Nodetype.BASE:
            name = detail[0]
            return "" if name == "string" else False if name == "bool" else _zero(name)
        if kind == Nodetype.NAME:
            return self.new(detail)
        item, size = detail
        if item[0] == Nodetype.BASE and item[1][0] != "string":
            dtype = _NUMPY.get(item[1][0], item[1][0])
            return np.zeros(size if kind == Nodetype.ARRAY else 0, dtype=dtype)
        return [self._default(item) for _ in range(size if kind == Nodetype.ARRAY else 0)]

    @staticmethod
    def type_name(message) -> str:
        """'pkg/msg/Name' of an rclpy or rosbags message."""
        name = getattr(message, "__msgtype__", None)
        if name is None:  # rclpy: module pkg.msg._name, class Name
            name = f"{type(message).__module__.split('.')[0]}/msg/{type(message).__name__}"
        return name

    def serialize(self, message) -> bytes:
        """CDR bytes (little endian, as rosbag2 stores them)."""
        return bytes(self.typestore.serialize_cdr(message, message.__msgtype__))

    def deserialize(self, data, type_name: str):
        return self.typestore.deserialize_cdr(data, type_name)


def _zero(name: str):
    return 0.0 if name.startswith("float") else 0


@lru_cache(maxsize=1)
def bag_messages() -> BagMessages:
    """The process-wide BagMessages (registering types compiles code: do it once)."""
    return BagMessages()
