"""TreeResult -> the node's output messages, for any ROS message library (no ROS import).

The node fills rclpy messages (ros/messages.py) and `ros2-owl bag` fills rosbags messages
(recordings.py) from these same functions, so a bag written offline holds exactly what the
live node would have published. A MessageFactory says how to make one message of a type.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

__all__ = [
    "MessageFactory",
    "bbox_from_corners",
    "clip_box",
    "detection_array",
    "detection_id",
    "image_classification",
    "label_info",
    "mask_image",
    "mask_labels",
    "rgb_image",
    "tree_array",
    "tree_nodes",
]


class MessageFactory(Protocol):
    """Makes messages of one library (rclpy classes or a rosbags typestore)."""

    def new(self, type_name: str) -> Any:
        """A message of `type_name` ('pkg/msg/Name') with every field at its default."""

    def array(self, dtype: str, values) -> Any:
        """A value for a primitive array field ('int32', 'uint8') from a sequence or buffer."""


def clip_box(box, image_size) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) clipped to the (width, height) image; unchanged when size is None."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if image_size is not None:
        w, h = float(image_size[0]), float(image_size[1])
        x0, x1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
        y0, y1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
    return x0, y0, x1, y1


def fill_bbox(out, box, image_size):
    """Write corners into an existing vision_msgs 4.x BoundingBox2D (centre.position, size)."""
    x0, y0, x1, y1 = clip_box(box, image_size)
    centre = out.center.position
    centre.x = (x0 + x1) / 2.0
    centre.y = (y0 + y1) / 2.0
    out.size_x = x1 - x0
    out.size_y = y1 - y0
    return out


def bbox_from_corners(make: MessageFactory, box, image_size=None):
    """(x0, y0, x1, y1) pixels -> BoundingBox2D, clipped to the (width, height) image when
    given: consumers index pixels with it."""
    return fill_bbox(make.new("vision_msgs/msg/BoundingBox2D"), box, image_size)


def detection_id(det, tracking: bool) -> str:
    """Detection2D/3D.id: the track id when tracking is on ('' before the track is confirmed),
    else the per-frame instance id the tree message uses for parent ids."""
    if tracking:
        return str(det.track_id) if det.track_id else ""
    return str(det.id)


def detection_array(make: MessageFactory, result, header, tracking: bool = False):
    """One Detection2D per box: class_id = label text, real score, id = detection_id().

    Messages are filled in place: rosidl constructors build every nested default (a
    PoseWithCovariance with its 36-double array per hypothesis), so this halves the cost.
    """
    out = make.new("vision_msgs/msg/Detection2DArray")
    out.header = header
    append = out.detections.append
    for det in result.detections:
        msg = make.new("vision_msgs/msg/Detection2D")
        msg.header = header
        hyp = make.new("vision_msgs/msg/ObjectHypothesisWithPose")
        hyp.hypothesis.class_id = det.label
        hyp.hypothesis.score = float(det.score)
        msg.results.append(hyp)
        fill_bbox(msg.bbox, det.box, result.image_size)
        msg.id = detection_id(det, tracking)
        append(msg)
    return out


def _classification(make: MessageFactory, cls):
    out = make.new("ros2_owl/msg/TreeClassification")
    out.node_index = cls.node_index
    for s in cls.scores:
        score = make.new("ros2_owl/msg/LabelScore")
        score.label_index, score.class_id, score.score = s.label_index, s.label, float(s.score)
        out.results.append(score)
    return out


def tree_array(make: MessageFactory, result, header):
    """The full tree result: parent ids, nesting and classify groups, with its prompt."""
    out = make.new("ros2_owl/msg/TreeDetectionArray")
    out.header, out.prompt = header, result.prompt
    out.labels = list(result.tree.label_texts)
    for det in result.detections:
        msg = make.new("ros2_owl/msg/TreeDetection")
        msg.id, msg.parent_id, msg.label_index = det.id, det.parent_id, det.label_index
        msg.track_id = det.track_id
        msg.class_id, msg.score = det.label, float(det.score)
        fill_bbox(msg.bbox, det.box, result.image_size)
        for cls in det.classifications:
            msg.classifications.append(_classification(make, cls))
        if det.mask is not None:
            msg.has_mask, msg.mask_score = True, float(det.mask.score)
            if det.mask.box is not None:
                fill_bbox(msg.mask_bbox, det.mask.box, result.image_size)
        out.detections.append(msg)
    for cls in result.image_classifications:
        out.image_classifications.append(_classification(make, cls))
    return out


def image_classification(make: MessageFactory, result, header):
    """Whole-image classify groups as one vision_msgs/Classification (None when there are none)."""
    if not result.image_classifications:
        return None
    out = make.new("vision_msgs/msg/Classification")
    out.header = header
    for cls in result.image_classifications:
        for s in cls.scores:
            hyp = make.new("vision_msgs/msg/ObjectHypothesis")
            hyp.class_id, hyp.score = s.label, float(s.score)
            out.results.append(hyp)
    return out


def label_info(make: MessageFactory, tree, threshold: float, header):
    """class_map of every label of the prompt (index -> text), the default threshold."""
    out = make.new("vision_msgs/msg/LabelInfo")
    out.header, out.threshold = header, float(threshold)
    for i, text in enumerate(tree.label_texts):
        vc = make.new("vision_msgs/msg/VisionClass")
        vc.class_id, vc.class_name = i, text
        out.class_map.append(vc)
    return out


def tree_nodes(make: MessageFactory, tree) -> list:
    """The prompt's groups as PromptTreeNode messages (op, input label, output labels)."""
    nodes = []
    for n in tree.nodes:
        msg = make.new("ros2_owl/msg/PromptTreeNode")
        msg.op, msg.input, msg.outputs = n.op, n.input, make.array("int32", n.outputs)
        nodes.append(msg)
    return nodes


def rgb_image(make: MessageFactory, rgb: np.ndarray, header):
    """An rgb8 sensor_msgs/Image of an HxWx3 uint8 array (the annotated image)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    return _image(make, header, "rgb8", rgb)


def mask_labels(result) -> np.ndarray | None:
    """HxW uint16 label image: each pixel the id of the detection whose mask covers it (0 =
    none; where masks overlap the higher score wins). None when the prompt marks no label
    {mask}; all zeros when it does and nothing was found."""
    if result.tree is None or not result.tree.mask_labels():
        return None
    width, height = result.image_size
    labels = np.zeros((height, width), np.uint16)
    masked = [d for d in result.detections if d.mask is not None]
    for det in sorted(masked, key=lambda d: d.score):
        labels[np.asarray(det.mask.mask, dtype=bool)] = det.id
    return labels


def mask_image(make: MessageFactory, result, header):
    """The frame's instance masks as one mono16 sensor_msgs/Image on the input's header
    (mask_labels; None when the prompt marks no label {mask})."""
    labels = mask_labels(result)
    if labels is None:
        return None
    return _image(make, header, "mono16", labels.astype("<u2"))


def _image(make: MessageFactory, header, encoding: str, pixels: np.ndarray):
    """A little-endian sensor_msgs/Image of an HxW or HxWxC array, rows unpadded."""
    pixels = np.ascontiguousarray(pixels)
    msg = make.new("sensor_msgs/msg/Image")
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * (pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1))
    msg.data = make.array("uint8", pixels.view(np.uint8).reshape(-1))
    return msg
