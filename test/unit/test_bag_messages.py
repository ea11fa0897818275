"""The message classes the bag writer uses are the node's definitions: same fields as msg/ and
vision_msgs (the built rclpy classes and the real vision_msgs 4.1.1 sources), and the same CDR
bytes as rclpy's serialisation of the node's messages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from fixtures_ros import _import_rclpy

from ros2_owl.core.prompt import parse_prompt
from ros2_owl.core.results import Classification, Detection, LabelScore, TreeResult
from ros2_owl.io import result_messages
from ros2_owl.io.bag_messages import bag_messages, interface_dir
from ros2_owl.io.topics import OUTPUT_TOPICS

REPO = Path(__file__).resolve().parents[2]
# the real vision_msgs 4.1.1 sources: the extras folder setup.sh was given (ROS2_OWL_EXTRAS, as
# .ci/run sets it), else shared/ beside the checkout or beside its worktrees
REAL_VISION_MSGS = next(
    (
        extras / "src" / "vision_msgs" / "msg"
        for extras in (
            *([Path(os.environ["ROS2_OWL_EXTRAS"])] if os.environ.get("ROS2_OWL_EXTRAS") else []),
            REPO.parent / "shared" / "ros2-extras",
            REPO.parent.parent / "shared" / "ros2-extras",
        )
        if (extras / "src" / "vision_msgs").is_dir()
    ),
    REPO / "missing",
)
OURS = sorted(p.stem for p in (REPO / "msg").glob("*.msg"))
VISION = [
    "BoundingBox2D",
    "Classification",
    "Detection2D",
    "Detection2DArray",
    "LabelInfo",
    "ObjectHypothesis",
    "ObjectHypothesisWithPose",
    "Point2D",
    "Pose2D",
    "VisionClass",
]
TREE = parse_prompt("[a person [a face] (standing, sitting)] (indoor, outdoor)")
RESULT = TreeResult(
    TREE,
    TREE.to_prompt(),
    (640, 480),
    (
        Detection(
            1,
            0,
            1,
            "a person",
            0.9,
            (100.0, 50.0, 300.0, 470.0),
            (
                Classification(
                    3, 1, (LabelScore(3, "standing", 0.75), LabelScore(4, "sitting", 0.25))
                ),
            ),
        ),
        Detection(2, 1, 2, "a face", 0.4, (150.0, -5.0, 250.0, 100.0)),
    ),
    (Classification(2, 0, (LabelScore(5, "indoor", 0.6), LabelScore(6, "outdoor", 0.4))),),
)


def _bag_fields(type_name: str) -> list[tuple[str, str]]:
    """(name, 'pkg/Type' or base type, with [] / [N]) of a rosbags type, as rosidl spells them."""
    from rosbags.interfaces import Nodetype

    def spell(desc) -> str:
        kind, detail = desc
        if kind == Nodetype.BASE:
            return {"float64": "double", "float32": "float", "bool": "boolean"}.get(
                detail[0], detail[0]
            )
        if kind == Nodetype.NAME:
            package, _, name = detail.split("/")
            return f"{package}/{name}"
        item, size = detail
        inner = spell(item)
        return f"sequence<{inner}>" if kind == Nodetype.SEQUENCE else f"{inner}[{size}]"

    return [(name, spell(desc)) for name, desc in bag_messages().fields(type_name)]


@pytest.mark.parametrize(
    "type_name", [f"ros2_owl/msg/{n}" for n in OURS] + [f"vision_msgs/msg/{n}" for n in VISION]
)
def test_bag_types_have_the_rclpy_fields(type_name):
    _import_rclpy()
    import importlib

    package, _, name = type_name.split("/")
    cls = getattr(importlib.import_module(f"{package}.msg"), name)
    rclpy_fields = [
        (k, v.replace("uint16", "uint16")) for k, v in cls.get_fields_and_field_types().items()
    ]
    assert _bag_fields(type_name) == rclpy_fields


@pytest.mark.skipif(not REAL_VISION_MSGS.is_dir(), reason="no vision_msgs 4.1.1 sources here")
def test_bag_types_match_real_vision_msgs_sources():
    from rosbags.typesys import get_types_from_msg

    for name in VISION:
        text = (REAL_VISION_MSGS / f"{name}.msg").read_text()
        real = get_types_from_msg(text, f"vision_msgs/msg/{name}")[f"vision_msgs/msg/{name}"][1]
        assert [(f, d) for f, d in real] == bag_messages().fields(f"vision_msgs/msg/{name}"), name
    assert interface_dir("ros2_owl").is_dir()


def test_every_output_type_is_registered():
    types = bag_messages()
    for type_name in (output.type for output in OUTPUT_TOPICS.values()):
        msg = types.new(type_name)
        assert types.deserialize(types.serialize(msg), type_name) is not None


def _rclpy_header():
    from std_msgs.msg import Header

    header = Header(frame_id="cam_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    return header


def _bag_header():
    header = bag_messages().new("std_msgs/msg/Header")
    header.frame_id = "cam_optical"
    header.stamp.sec, header.stamp.nanosec = 12, 345
    return header


@pytest.mark.parametrize(
    "build",
    [
        lambda make, header: result_messages.detection_array(make, RESULT, header),
        lambda make, header: result_messages.tree_array(make, RESULT, header),
        lambda make, header: result_messages.image_classification(make, RESULT, header),
        lambda make, header: result_messages.label_info(make, TREE, 0.25, header),
        lambda make, header: result_messages.rgb_image(
            make, np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3), header
        ),
    ],
    ids=["detections", "tree", "classification", "label_info", "annotated_image"],
)
def test_bag_messages_are_the_cdr_bytes_rclpy_publishes(build):
    """rclpy reads the bag's CDR back as exactly the node's message, and the bytes equal
    rclpy's own except for alignment padding (which Fast CDR leaves uninitialised)."""
    _import_rclpy()
    from rclpy.serialization import deserialize_message, serialize_message

    from ros2_owl.ros.messages import RCLPY

    node_msg = build(RCLPY, _rclpy_header())
    ours = bag_messages().serialize(build(bag_messages(), _bag_header()))
    assert deserialize_message(ours, type(node_msg)) == node_msg
    theirs = serialize_message(node_msg)
    assert len(ours) == len(theirs)
    type_name = bag_messages().type_name(node_msg)
    assert bag_messages().serialize(bag_messages().deserialize(theirs, type_name)) == ours


def test_prompt_tree_nodes_through_both_factories():
    _import_rclpy()
    from rclpy.serialization import deserialize_message

    from ros2_owl.ros.messages import RCLPY

    ours = [bag_messages().serialize(m) for m in result_messages.tree_nodes(bag_messages(), TREE)]
    theirs = result_messages.tree_nodes(RCLPY, TREE)
    assert [deserialize_message(b, type(m)) for b, m in zip(ours, theirs, strict=True)] == theirs
