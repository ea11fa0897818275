"""overlay_messages.py and robot_outputs.py with the real rclpy message classes: Foxglove
annotations for nested detections, marker ids across frames (DELETE, DELETEALL), and
transform_missing: untransformed on a real rclpy node."""

from __future__ import annotations

import pytest
from fixtures_ros import _import_rclpy

from ros2_owl.core.prompt import parse_prompt
from ros2_owl.core.results import Detection, TreeResult

PROMPT = "[a person [a face]]"


@pytest.fixture(scope="module")
def factory():
    _import_rclpy()
    from ros2_owl.ros.messages import RCLPY

    return RCLPY


def result(track_ids=(0, 0)) -> TreeResult:
    person = Detection(1, 0, 1, "a person", 0.91, (10.0, 20.0, 110.0, 220.0), track_id=track_ids[0])
    face = Detection(2, 1, 2, "a face", 0.456, (40.0, 30.0, 70.0, 70.0), track_id=track_ids[1])
    return TreeResult(parse_prompt(PROMPT), PROMPT, (640, 480), (person, face))


def header(sec: int = 7):
    from std_msgs.msg import Header

    h = Header(frame_id="cam_optical")
    h.stamp.sec, h.stamp.nanosec = sec, 25
    return h


def test_image_annotations_have_every_box_and_caption_nested_ones_too(factory):
    from foxglove_msgs.msg import ImageAnnotations
    from rclpy.serialization import deserialize_message, serialize_message

    from ros2_owl.io.overlay_messages import LINE_LOOP, image_annotations

    msg = image_annotations(factory, result((4, 9)), header(), tracking=True)
    msg = deserialize_message(serialize_message(msg), ImageAnnotations)  # what goes on the wire
    assert [p.type for p in msg.points] == [LINE_LOOP, LINE_LOOP]
    face = msg.points[1]
    assert [(p.x, p.y) for p in face.points] == [(40, 30), (70, 30), (70, 70), (40, 70)]
    assert [t.text for t in msg.texts] == ["a person 0.91 #4", "a face 0.46 #9"]
    assert all(a.timestamp.sec == 7 and a.timestamp.nanosec == 25 for a in msg.points + msg.texts)
    assert msg.points[0].outline_color != msg.points[1].outline_color  # one colour per label
    plain = image_annotations(factory, result(), header(), tracking=False)
    assert [t.text for t in plain.texts] == ["a person 0.91", "a face 0.46"]


def detections_3d(ids):
    from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

    out = Detection3DArray(header=header())
    for i in ids:
        det = Detection3D(id=i)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = "a person", 0.5
        det.results.append(hyp)
        det.bbox.center.position.z = 2.0
        det.bbox.center.orientation.w = 1.0
        det.bbox.size.x = det.bbox.size.y = 0.5
        out.detections.append(det)
    return out


def test_markers_delete_vanished_ids_and_clear_on_a_prompt_change(factory):
    from ros2_owl.io.overlay_messages import ADD, DELETE, DELETEALL, MarkerIds, marker_array

    ids = MarkerIds()
    labels = {"a person": 1}

    def actions(msg):
        return [(m.ns.rsplit("/", 1)[-1], m.id, m.action) for m in msg.markers]

    first = marker_array(factory, detections_3d(["3", "5", ""]), labels, ids, "p1")
    assert actions(first) == [
        ("boxes", 3, ADD),
        ("labels", 3, ADD),
        ("boxes", 5, ADD),
        ("labels", 5, ADD),
    ]
    assert first.markers[0].scale.z == pytest.approx(1e-3)  # flat boxes stay visible
    assert first.markers[1].text == "a person 0.50 #3"
    second = marker_array(factory, detections_3d(["5"]), labels, ids, "p1")
    assert actions(second) == [
        ("boxes", 3, DELETE),
        ("labels", 3, DELETE),
        ("boxes", 5, ADD),
        ("labels", 5, ADD),
    ]
    third = marker_array(factory, detections_3d(["1"]), labels, ids, "p2")
    assert third.markers[0].action == DELETEALL
    assert actions(third)[1:] == [("boxes", 1, ADD), ("labels", 1, ADD)]
    assert all(m.header.frame_id == "cam_optical" for m in third.markers)


def test_missing_transform_untransformed_keeps_the_camera_frame(rclpy_context):
    from ros2_owl.core.settings import settings_from
    from ros2_owl.ros.guard import CallbackGuard
    from ros2_owl.ros.robot_outputs import RobotOutputs

    rclpy, context = rclpy_context
    node = rclpy.create_node("robot_outputs_test", context=context)
    try:
        s = settings_from({"target_frame": "base_link", "transform_missing": "untransformed"})
        robot = RobotOutputs(node, s, CallbackGuard(node.get_logger()))
        msg = robot.to_target(0, detections_3d(["2"]))
        assert msg is not None and msg.header.frame_id == "cam_optical"
        robot.tf.buffer.set_transform("base_link", "cam_optical", 0, (1, 2, 3), (0, 0, 0, 1), True)
        moved = robot.to_target(0, detections_3d(["2"]))
        assert moved.header.frame_id == "base_link"
        assert moved.detections[0].bbox.center.position.z == pytest.approx(5.0)
        values = robot.values(0)
        assert values["frames_transformed"] == 1 and values["frames_without_transform"] == 1
        assert values["frames_skipped_without_transform"] == 0
        assert "'cam_optical' -> 'base_link'" in values["last_transform_problem"]
        robot.close()
    finally:
        node.destroy_node()
