"""The ros2_owl interfaces (and the vision_msgs we publish) survive rclpy serialization and
travel between two processes over real DDS with every field intact."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from fixtures_ros import _import_rclpy, peer_script

REPO = Path(__file__).resolve().parents[2]
MSG_NAMES = sorted(p.stem for p in (REPO / "msg").glob("*.msg"))
SRV_NAMES = sorted(p.stem for p in (REPO / "srv").glob("*.srv"))


def _fill(msg, seed: int):
    """Set every field of `msg` to a distinct non-default value (recursing into nested types)."""
    from rosidl_parser import definition as d

    for i, ((name, _), slot) in enumerate(
        zip(msg.get_fields_and_field_types().items(), msg.SLOT_TYPES, strict=True)
    ):
        setattr(msg, name, _value(slot, msg, name, seed * 31 + i, d))
    return msg


def _value(slot, msg, name, seed, d):
    if isinstance(slot, d.AbstractSequence | d.Array):
        size = slot.size if isinstance(slot, d.Array) else 2 + seed % 2
        return [_value(slot.value_type, msg, name, seed + k, d) for k in range(size)]
    if isinstance(slot, d.AbstractString):
        return f"text-{seed}-ünï"
    if isinstance(slot, d.NamespacedType):
        module = importlib.import_module(".".join(slot.namespaces))
        return _fill(getattr(module, slot.name)(), seed + 1)
    typename = slot.typename
    if typename == "boolean":
        return bool(seed % 2)
    if typename in ("float", "double"):
        return seed + 0.25
    if typename in ("char", "octet"):
        return bytes([seed % 128]) if typename == "octet" else chr(65 + seed % 26)
    if "int" in typename:
        return seed % 100 + 1
    raise AssertionError(f"unhandled field type {typename} in {type(msg).__name__}.{name}")


def _as_tuple(msg):
    """A comparable view of a message: nested messages and arrays become tuples."""
    if hasattr(msg, "get_fields_and_field_types"):
        return tuple(_as_tuple(getattr(msg, f)) for f in msg.get_fields_and_field_types())
    if isinstance(msg, list | tuple) or type(msg).__name__ in ("array", "ndarray"):
        return tuple(_as_tuple(x) for x in msg)
    return msg


def _interface_types():
    _import_rclpy()
    msg_mod = importlib.import_module("ros2_owl.msg")
    srv_mod = importlib.import_module("ros2_owl.srv")
    types = [getattr(msg_mod, n) for n in MSG_NAMES]
    for n in SRV_NAMES:
        srv = getattr(srv_mod, n)
        types += [srv.Request, srv.Response]
    return types


def test_every_interface_file_is_generated():
    types = _interface_types()
    assert len(types) == len(MSG_NAMES) + 2 * len(SRV_NAMES)
    assert {"TreeDetection", "TreeDetectionArray", "LabelScore"} <= set(MSG_NAMES)
    assert "SetPrompt" in SRV_NAMES


@pytest.mark.parametrize("index", range(len(MSG_NAMES) + 2 * len(SRV_NAMES)))
def test_interface_round_trips_through_rclpy_serialization(index):
    from rclpy.serialization import deserialize_message, serialize_message

    msg_type = _interface_types()[index]
    original = _fill(msg_type(), seed=index + 1)
    data = serialize_message(original)
    back = deserialize_message(data, msg_type)
    assert _as_tuple(back) == _as_tuple(original)
    assert _as_tuple(back) != _as_tuple(msg_type()), "filler left the message at its defaults"


def test_tree_detection_fields_follow_vision_msgs_conventions():
    _import_rclpy()
    from ros2_owl.msg import TreeDetection, TreeDetectionArray

    fields = TreeDetection.get_fields_and_field_types()
    assert fields["class_id"] == "string"
    assert fields["score"] == "double"
    assert fields["bbox"] == "vision_msgs/BoundingBox2D"
    assert TreeDetectionArray.get_fields_and_field_types()["header"] == "std_msgs/Header"


def _echo_round_trip(ros, ros_process, type_name: str, msg_type, msg):
    """Send `msg` to an echo peer process and return what came back."""
    peer = ros_process(peer_script("echo.py") + [type_name, "echo_in", "echo_out"], "echo")
    collector = ros.collector(msg_type, "echo_out")
    pub = ros.publisher(msg_type, "echo_in")
    ros.wait_for_subscribers(pub)
    ros.wait_for_publishers("echo_out")
    back = ros.publish_until(pub, msg, collector, timeout=20)
    assert peer.alive(), peer.output()
    return back


def test_tree_detection_array_travels_between_processes(ros, ros_process):
    from ros2_owl.msg import LabelScore, TreeClassification, TreeDetection, TreeDetectionArray

    msg = TreeDetectionArray(prompt="[a person [a face] (standing, sitting)]")
    msg.header.frame_id = "camera_optical"
    msg.header.stamp.sec = 1234
    msg.header.stamp.nanosec = 5678
    msg.labels = ["image", "a person", "a face", "standing", "sitting"]
    person = TreeDetection(id=1, parent_id=0, label_index=1, class_id="a person", score=0.875)
    person.bbox.center.position.x = 320.5
    person.bbox.center.position.y = 240.25
    person.bbox.size_x = 100.0
    person.bbox.size_y = 200.0
    person.classifications = [
        TreeClassification(
            node_index=2,
            results=[
                LabelScore(label_index=3, class_id="standing", score=0.75),
                LabelScore(label_index=4, class_id="sitting", score=0.25),
            ],
        )
    ]
    face = TreeDetection(id=2, parent_id=1, label_index=2, class_id="a face", score=0.5)
    msg.detections = [person, face]

    back = _echo_round_trip(
        ros, ros_process, "ros2_owl/msg/TreeDetectionArray", TreeDetectionArray, msg
    )

    assert back.prompt == msg.prompt
    assert (back.header.frame_id, back.header.stamp.sec, back.header.stamp.nanosec) == (
        "camera_optical",
        1234,
        5678,
    )
    assert list(back.labels) == msg.labels
    assert [(d.id, d.parent_id, d.class_id, d.score) for d in back.detections] == [
        (1, 0, "a person", 0.875),
        (2, 1, "a face", 0.5),
    ]
    b = back.detections[0].bbox
    assert (b.center.position.x, b.center.position.y, b.size_x, b.size_y) == (
        320.5,
        240.25,
        100.0,
        200.0,
    )
    scores = back.detections[0].classifications[0].results
    assert [(s.class_id, s.score) for s in scores] == [("standing", 0.75), ("sitting", 0.25)]


def test_detection2d_array_travels_between_processes(ros, ros_process):
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    msg = Detection2DArray()
    msg.header.frame_id = "cam0"
    det = Detection2D(id="7")
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = "a forklift"
    hyp.hypothesis.score = 0.625
    det.results = [hyp]
    det.bbox.center.position.x = 10.5
    det.bbox.center.position.y = 20.5
    det.bbox.size_x = 4.0
    det.bbox.size_y = 8.0
    msg.detections = [det]

    back = _echo_round_trip(
        ros, ros_process, "vision_msgs/msg/Detection2DArray", Detection2DArray, msg
    )

    assert back.header.frame_id == "cam0"
    (d,) = back.detections
    assert d.id == "7"
    assert (d.results[0].hypothesis.class_id, d.results[0].hypothesis.score) == (
        "a forklift",
        0.625,
    )
    assert (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y) == (
        10.5,
        20.5,
        4.0,
        8.0,
    )
