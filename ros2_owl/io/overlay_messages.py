"""Detections as overlays for viewers, for any ROS message library (no ROS import).

RViz: a visualization_msgs/MarkerArray from a Detection3DArray (a CUBE and a TEXT_VIEW_FACING
label per detection, ids from Detection3D.id so they stay with the track when tracking is on).
Foxglove: a foxglove_msgs/ImageAnnotations for the input image (a LINE_LOOP per box and a text
with label and score, nested detections too), stamped like the image so Foxglove draws it over
that frame without a re-encoded copy. Messages come from a MessageFactory (result_messages).
"""

from __future__ import annotations

from ros2_owl.core.draw import label_colour
from ros2_owl.io.result_messages import MessageFactory, clip_box

__all__ = ["MarkerIds", "image_annotations", "marker_array", "marker_id"]

# visualization_msgs/Marker constants (type and action fields)
CUBE, TEXT_VIEW_FACING = 1, 9
ADD, DELETE, DELETEALL = 0, 2, 3
BOX_NS, LABEL_NS = "ros2_owl/boxes", "ros2_owl/labels"
# foxglove_msgs/PointsAnnotation.type
LINE_LOOP = 2
TEXT_SIZE_M = 0.08  # RViz text height
FONT_PX = 12.0


def marker_id(detection_id: str) -> int | None:
    """Marker id of a Detection3D id: its number (track or instance id); None when it has none
    (a track not confirmed yet has no stable id, so it gets no marker)."""
    try:
        value = int(detection_id)
    except ValueError:
        return None
    return value if 0 < value < 2**31 else None


class MarkerIds:
    """One camera's markers on screen: which ids vanished (DELETE) and when to clear (DELETEALL)."""

    def __init__(self) -> None:
        self._shown: set[int] = set()
        self._key: object = None

    def update(self, ids: set[int], key: object) -> tuple[bool, list[int]]:
        """-> (clear everything first: the prompt changed, ids of the last frame now gone)."""
        changed = self._key is not None and key != self._key
        gone = [] if changed else sorted(self._shown - ids)
        self._shown, self._key = set(ids), key
        return changed, gone


def _colour(make: MessageFactory, type_name: str, label_index: int, alpha: float):
    out = make.new(type_name)
    r, g, b = label_colour(label_index)
    out.r, out.g, out.b, out.a = r / 255.0, g / 255.0, b / 255.0, alpha
    return out


def _marker(make: MessageFactory, header, ns: str, ident: int, action: int):
    m = make.new("visualization_msgs/msg/Marker")
    m.header = header
    m.ns, m.id, m.action = ns, ident, action
    return m


def _box_markers(make: MessageFactory, header, det, ident: int, label_index: int) -> list:
    """The CUBE (translucent) and its label above it, in the detection's frame."""
    hyp = det.results[0].hypothesis if det.results else None
    cube = _marker(make, header, BOX_NS, ident, ADD)
    cube.type = CUBE
    cube.pose = det.bbox.center
    cube.scale.x, cube.scale.y, cube.scale.z = (
        max(det.bbox.size.x, 1e-3),
        max(det.bbox.size.y, 1e-3),
        max(det.bbox.size.z, 1e-3),
    )
    cube.color = _colour(make, "std_msgs/msg/ColorRGBA", label_index, 0.4)
    text = _marker(make, header, LABEL_NS, ident, ADD)
    text.type = TEXT_VIEW_FACING
    text.pose.position.x = det.bbox.center.position.x
    text.pose.position.y = det.bbox.center.position.y
    text.pose.position.z = det.bbox.center.position.z
    text.pose.orientation.w = 1.0
    text.scale.z = TEXT_SIZE_M
    text.color = _colour(make, "std_msgs/msg/ColorRGBA", label_index, 1.0)
    label = hyp.class_id if hyp is not None else "?"
    score = f" {hyp.score:.2f}" if hyp is not None else ""
    text.text = f"{label}{score} #{ident}"
    return [cube, text]


def marker_array(make: MessageFactory, detections_3d, label_indices, ids: MarkerIds, key):
    """MarkerArray for one Detection3DArray: DELETEALL first when `key` (the prompt) changed,
    DELETE for ids shown last frame and gone now, then a box and a label per detection."""
    out = make.new("visualization_msgs/msg/MarkerArray")
    header = detections_3d.header
    items = []
    for det in detections_3d.detections:
        ident = marker_id(det.id)
        if ident is not None:
            items.append((ident, det))
    clear, gone = ids.update({ident for ident, _ in items}, key)
    if clear:
        out.markers.append(_marker(make, header, "", 0, DELETEALL))
    for ident in gone:
        out.markers.extend(_marker(make, header, ns, ident, DELETE) for ns in (BOX_NS, LABEL_NS))
    for ident, det in items:
        label = det.results[0].hypothesis.class_id if det.results else ""
        out.markers.extend(_box_markers(make, header, det, ident, label_indices.get(label, 0)))
    return out


def _point(make: MessageFactory, x: float, y: float):
    p = make.new("foxglove_msgs/msg/Point2")
    p.x, p.y = float(x), float(y)
    return p


def image_annotations(make: MessageFactory, result, header, tracking: bool = False):
    """ImageAnnotations for one frame: every detection's box (LINE_LOOP) and its caption
    ('label 0.45', plus '#track' when tracking), timestamped with the image's stamp."""
    out = make.new("foxglove_msgs/msg/ImageAnnotations")
    for det in result.detections:
        x0, y0, x1, y1 = clip_box(det.box, result.image_size)
        box = make.new("foxglove_msgs/msg/PointsAnnotation")
        box.timestamp = header.stamp
        box.type = LINE_LOOP
        box.points = [_point(make, x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        box.outline_color = _colour(make, "foxglove_msgs/msg/Color", det.label_index, 1.0)
        box.thickness = 2.0
        out.points.append(box)
        text = make.new("foxglove_msgs/msg/TextAnnotation")
        text.timestamp = header.stamp
        text.position = _point(make, x0, max(y0, FONT_PX))  # bottom-left of the text
        track = f" #{det.track_id}" if tracking and det.track_id else ""
        text.text = f"{det.label} {det.score:.2f}{track}"
        text.font_size = FONT_PX
        text.text_color = make.new("foxglove_msgs/msg/Color")
        text.text_color.r = text.text_color.g = text.text_color.b = text.text_color.a = 1.0
        text.background_color = _colour(make, "foxglove_msgs/msg/Color", det.label_index, 0.8)
        out.texts.append(text)
    return out
