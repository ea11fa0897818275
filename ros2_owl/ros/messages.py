"""TreeResult / Tree -> rclpy messages: result_messages' mapping with rclpy's classes."""

from __future__ import annotations

import array
import importlib

import numpy as np

from ros2_owl.io import result_messages
from ros2_owl.io.images import ImageConversionError

__all__ = [
    "RCLPY",
    "RclpyMessages",
    "bbox_from_corners",
    "corners_from_bbox",
    "detection_array",
    "detection_id",
    "image_classification",
    "label_info",
    "rgb_to_image_msg",
    "mask_image",
    "tree_array",
    "tree_nodes",
]

_TYPECODES = {"int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


class RclpyMessages:
    """MessageFactory over the generated rclpy message classes ('pkg/msg/Name' -> pkg.msg.Name)."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}

    def new(self, type_name: str):
        cls = self._classes.get(type_name)
        if cls is None:
            package, _, name = type_name.split("/")
            cls = getattr(importlib.import_module(f"{package}.msg"), name)
            self._classes[type_name] = cls
        return cls()

    def array(self, dtype: str, values):
        if dtype == "uint8":
            return np.asarray(values, np.uint8).tobytes()
        return array.array(_TYPECODES[dtype], values)


RCLPY = RclpyMessages()


def bbox_from_corners(box, image_size: tuple[int, int] | None = None):
    """(x0, y0, x1, y1) pixels -> vision_msgs 4.x BoundingBox2D, clipped to the image."""
    return result_messages.bbox_from_corners(RCLPY, box, image_size)


def corners_from_bbox(bbox) -> tuple[float, float, float, float]:
    cx, cy = bbox.center.position.x, bbox.center.position.y
    return (cx - bbox.size_x / 2, cy - bbox.size_y / 2, cx + bbox.size_x / 2, cy + bbox.size_y / 2)


detection_id = result_messages.detection_id


def detection_array(result, header, tracking: bool = False):
    return result_messages.detection_array(RCLPY, result, header, tracking)


def tree_array(result, header):
    return result_messages.tree_array(RCLPY, result, header)


def image_classification(result, header):
    return result_messages.image_classification(RCLPY, result, header)


def mask_image(result, header):
    return result_messages.mask_image(RCLPY, result, header)


def label_info(tree, threshold: float, header):
    return result_messages.label_info(RCLPY, tree, threshold, header)


def tree_nodes(tree) -> list:
    return result_messages.tree_nodes(RCLPY, tree)


def rgb_to_image_msg(rgb: np.ndarray, header=None):
    """Build an rgb8 sensor_msgs/Image from an HxWx3 uint8 array."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    return result_messages.rgb_image(RCLPY, rgb, header)
