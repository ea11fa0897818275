"""TreeResult / Tree -> vision_msgs and ros2_owl messages (pure field copying, no maths)."""

from __future__ import annotations

from vision_msgs.msg import (
    BoundingBox2D,
    Classification,
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
    VisionClass,
)

from ros2_owl.msg import (
    LabelScore,
    PromptTreeNode,
    TreeClassification,
    TreeDetection,
    TreeDetectionArray,
)

__all__ = [
    "bbox_from_corners",
    "corners_from_bbox",
    "detection_array",
    "detection_id",
    "image_classification",
    "label_info",
    "tree_array",
    "tree_nodes",
]


def _clip(box, image_size) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    if image_size is not None:
        w, h = float(image_size[0]), float(image_size[1])
        x0, x1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
        y0, y1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
    return x0, y0, x1, y1


def _fill_bbox(out: BoundingBox2D, box, image_size) -> BoundingBox2D:
    """Write corners into an existing BoundingBox2D (cheaper than building nested messages)."""
    x0, y0, x1, y1 = _clip(box, image_size)
    centre = out.center.position
    centre.x = (x0 + x1) / 2.0
    centre.y = (y0 + y1) / 2.0
    out.size_x = x1 - x0
    out.size_y = y1 - y0
    return out


def bbox_from_corners(box, image_size: tuple[int, int] | None = None) -> BoundingBox2D:
    """(x0, y0, x1, y1) pixels -> vision_msgs 4.x BoundingBox2D (centre.position, size),
    clipped to the (width, height) image when given: consumers index pixels with it."""
    return _fill_bbox(BoundingBox2D(), box, image_size)


def corners_from_bbox(bbox: BoundingBox2D) -> tuple[float, float, float, float]:
    cx, cy = bbox.center.position.x, bbox.center.position.y
    return (cx - bbox.size_x / 2, cy - bbox.size_y / 2, cx + bbox.size_x / 2, cy + bbox.size_y / 2)


def detection_id(det, tracking: bool) -> str:
    """Detection2D/3D.id: the track id when tracking is on ('' before the track is confirmed),
    else the per-frame instance id the tree message uses for parent ids."""
    if tracking:
        return str(det.track_id) if det.track_id else ""
    return str(det.id)


def detection_array(result, header, tracking: bool = False) -> Detection2DArray:
    """One Detection2D per box: class_id = label text, real score, id = detection_id().

    Messages are filled in place: rosidl constructors build every nested default (a
    PoseWithCovariance with its 36-double array per hypothesis), so this halves the cost.
    """
    out = Detection2DArray(header=header)
    append = out.detections.append
    for det in result.detections:
        msg = Detection2D()
        msg.header = header
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = det.label
        hyp.hypothesis.score = float(det.score)
        msg.results.append(hyp)
        _fill_bbox(msg.bbox, det.box, result.image_size)
        msg.id = detection_id(det, tracking)
        append(msg)
    return out


def _classification(cls) -> TreeClassification:
    return TreeClassification(
        node_index=cls.node_index,
        results=[
            LabelScore(label_index=s.label_index, class_id=s.label, score=float(s.score))
            for s in cls.scores
        ],
    )


def tree_array(result, header) -> TreeDetectionArray:
    """The full tree result: parent ids, nesting and classify groups, with its prompt."""
    out = TreeDetectionArray(header=header, prompt=result.prompt)
    out.labels = list(result.tree.label_texts)
    for det in result.detections:
        msg = TreeDetection(
            id=det.id,
            parent_id=det.parent_id,
            track_id=det.track_id,
            label_index=det.label_index,
            class_id=det.label,
            score=float(det.score),
        )
        _fill_bbox(msg.bbox, det.box, result.image_size)
        if det.classifications:
            msg.classifications = [_classification(c) for c in det.classifications]
        out.detections.append(msg)
    out.image_classifications = [_classification(c) for c in result.image_classifications]
    return out


def image_classification(result, header) -> Classification | None:
    """Whole-image classify groups as one vision_msgs/Classification (None when there are none)."""
    if not result.image_classifications:
        return None
    out = Classification(header=header)
    for cls in result.image_classifications:
        for s in cls.scores:
            out.results.append(ObjectHypothesis(class_id=s.label, score=float(s.score)))
    return out


def label_info(tree, threshold: float, header) -> LabelInfo:
    """class_map of every label of the prompt (index -> text), the default threshold."""
    out = LabelInfo(header=header, threshold=float(threshold))
    out.class_map = [
        VisionClass(class_id=i, class_name=text) for i, text in enumerate(tree.label_texts)
    ]
    return out


def tree_nodes(tree) -> list[PromptTreeNode]:
    return [PromptTreeNode(op=n.op, input=n.input, outputs=list(n.outputs)) for n in tree.nodes]
