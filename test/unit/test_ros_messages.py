"""TreeResult -> vision_msgs / ros2_owl messages: every field where users expect it."""

from __future__ import annotations

import pytest
from fixtures_ros import _import_rclpy

from ros2_owl.core.prompt import parse_prompt
from ros2_owl.core.results import Classification, Detection, LabelScore, TreeResult

TREE = parse_prompt("[a person [a face] (standing, sitting)] (indoor, outdoor)")
STANDING = Classification(2, 1, (LabelScore(4, "standing", 0.75), LabelScore(5, "sitting", 0.25)))
RESULT = TreeResult(
    TREE,
    "[a person [a face] (standing, sitting)] (indoor, outdoor)",
    (640, 480),
    (
        Detection(1, 0, 1, "a person", 0.9, (100.0, 50.0, 300.0, 470.0), (STANDING,)),
        Detection(2, 1, 2, "a face", 0.4, (150.0, -5.0, 250.0, 100.0)),  # top edge outside
    ),
    (Classification(1, 0, (LabelScore(6, "indoor", 0.6), LabelScore(7, "outdoor", 0.4))),),
)


@pytest.fixture
def header():
    _import_rclpy()
    from std_msgs.msg import Header

    h = Header(frame_id="cam_optical")
    h.stamp.sec, h.stamp.nanosec = 12, 345
    return h


def test_detection_array(header):
    from ros2_owl.ros.messages import detection_array

    msg = detection_array(RESULT, header)
    assert msg.header == header
    person, face = msg.detections
    assert person.header == header and person.id == "1" and face.id == "2"
    assert person.results[0].hypothesis.class_id == "a person"
    assert person.results[0].hypothesis.score == pytest.approx(0.9)
    assert (person.bbox.center.position.x, person.bbox.center.position.y) == (200.0, 260.0)
    assert (person.bbox.size_x, person.bbox.size_y) == (200.0, 420.0)
    # clipped to the image: y from 0 to 100
    assert (face.bbox.center.position.y, face.bbox.size_y) == (50.0, 100.0)


def test_tree_array_keeps_nesting_and_classifications(header):
    from ros2_owl.ros.messages import tree_array

    msg = tree_array(RESULT, header)
    assert msg.prompt == RESULT.prompt and msg.labels[:3] == ["image", "a person", "a face"]
    person, face = msg.detections
    assert (person.id, person.parent_id, face.id, face.parent_id) == (1, 0, 2, 1)
    assert (face.label_index, face.class_id) == (2, "a face")
    (cls,) = person.classifications
    assert cls.node_index == 2
    assert [(r.label_index, r.class_id, r.score) for r in cls.results] == [
        (4, "standing", 0.75),
        (5, "sitting", 0.25),
    ]
    assert face.classifications == []
    assert [r.class_id for r in msg.image_classifications[0].results] == ["indoor", "outdoor"]


def test_image_classification_and_label_info(header):
    from ros2_owl.ros.messages import image_classification, label_info

    cls = image_classification(RESULT, header)
    assert [(r.class_id, r.score) for r in cls.results] == [("indoor", 0.6), ("outdoor", 0.4)]
    no_cls = TreeResult(TREE, "p", (1, 1), ())
    assert image_classification(no_cls, header) is None
    info = label_info(TREE, 0.25, header)
    assert info.threshold == pytest.approx(0.25)
    assert [(c.class_id, c.class_name) for c in info.class_map][:2] == [
        (0, "image"),
        (1, "a person"),
    ]
    assert len(info.class_map) == len(TREE.labels)


def test_bbox_round_trip():
    _import_rclpy()
    from ros2_owl.ros.messages import bbox_from_corners, corners_from_bbox

    assert corners_from_bbox(bbox_from_corners((1.0, 2.0, 5.0, 10.0))) == (1.0, 2.0, 5.0, 10.0)
    assert corners_from_bbox(bbox_from_corners((-4, -4, 50, 50), (20, 30))) == (0, 0, 20, 30)
