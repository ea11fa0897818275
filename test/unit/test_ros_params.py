"""ros/params.py: descriptors, declaration and validation of the node parameters (in-process)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures_ros import _import_rclpy

REPO = Path(__file__).resolve().parents[2]


def test_every_parameter_has_a_descriptor_and_is_documented_in_owl_yaml():
    _import_rclpy()
    from ros2_owl.ros.params import PARAMS, descriptor, parameter_type

    yaml_text = (REPO / "config" / "owl.yaml").read_text()
    in_yaml = set(re.findall(r"^    (\w+):", yaml_text, flags=re.M))
    assert in_yaml == {p.name for p in PARAMS}
    for spec in PARAMS:
        d = descriptor(spec)
        assert d.name == spec.name and d.description and d.type == parameter_type(spec)
        # none is read-only for rclpy: the lifecycle node refuses configure settings itself
        # (with the state and the fix), so they can be fixed while unconfigured
        assert not d.read_only
        assert ("changes only while the node is unconfigured" in d.additional_constraints) == (
            not spec.live
        )
    configure = {p.name for p in PARAMS if not p.live}
    assert {"model", "clip_model", "device", "backend", "image_topics", "autostart"} <= configure
    assert {"prompt", "threshold", "label_thresholds", "scoring", "nms_iou"}.isdisjoint(configure)


def test_declared_types_and_rclpy_enforced_bounds(node):
    from rcl_interfaces.msg import ParameterType
    from rclpy.parameter import Parameter

    from ros2_owl.core.settings import DEFAULT_PROMPT
    from ros2_owl.ros.params import declare_parameters, read_settings

    declare_parameters(node)
    assert node.describe_parameter("label_thresholds").type == ParameterType.PARAMETER_STRING_ARRAY
    assert node.get_parameter("label_thresholds").value == []
    settings = read_settings(node)
    assert settings.camera_names == () and settings.image_topics == ("image",)
    assert settings.prompt == DEFAULT_PROMPT and settings.threshold == 0.1

    def reason(name, value):
        (result,) = node.set_parameters([Parameter(name, value=value)])
        return result.reason if not result.successful else None

    assert "out of range" in reason("nms_iou", 1.5)
    assert "Wrong parameter type" in reason("max_regions", "many")
    assert reason("device", "cuda") is None  # a plain node: only OwlNode knows its state
    assert reason("label_thresholds", ["a cat=0.2"]) is None
    assert read_settings(node).label_threshold_map() == {"a cat": 0.2}


def test_every_declared_parameter_has_a_value(node):
    """`ros2 param dump` gets nothing at all when one parameter is unset (rclpy answers an
    empty list for the whole request): camera_names used to be declared without a value."""
    from rcl_interfaces.msg import ParameterType
    from rclpy.parameter import Parameter

    from ros2_owl.ros.params import PARAMS, declare_parameters

    declare_parameters(node)
    names = [spec.name for spec in PARAMS]
    values = node.get_parameters(names)  # raises ParameterUninitializedException if one is unset
    assert [p.type_ != Parameter.Type.NOT_SET for p in values] == [True] * len(names)
    assert node.get_parameter("camera_names").value == []
    described = node.describe_parameter("camera_names")
    assert described.type == ParameterType.PARAMETER_STRING_ARRAY
    (result,) = node.set_parameters([Parameter("camera_names", value=["front"])])
    assert result.successful and node.get_parameter("camera_names").value == ["front"]


@pytest.mark.parametrize(
    "node", [["--params-file", str(REPO / "config" / "owl.yaml")]], indirect=True
)
def test_owl_yaml_loads_with_every_value(node):
    from ros2_owl.ros.params import declare_parameters, read_settings

    declare_parameters(node)
    s = read_settings(node)
    assert s.prompt == "[a person [a face, a hand] (standing, sitting)]"
    assert s.image_topics == ("image",) and s.label_thresholds == () and s.camera_names == ()
    assert s.validate() == []


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("scoring", "exclusive", None),
        ("scoring", "softmax", "scoring must be one of independent, exclusive; got 'softmax'"),
        ("backend", "tensorrt", None),
        ("prompt", "", "prompt: the prompt must not be empty"),
        ("label_thresholds", ["a cat=0.5", ""], None),
        ("label_thresholds", ["a cat"], "is not 'label=value'"),
        ("label_thresholds", ["a cat=x"], "'x' is not a number"),
        ("label_thresholds", ["a cat=1.5"], "threshold must be in [0, 1]"),
        ("label_thresholds", ["=0.5"], "is not 'label=value'"),
        ("image_topics", [], "at least one image topic"),
        ("image_topics", ["a", "a"], "distinct"),
        ("unknown_parameter", 1, None),
    ],
)
def test_validate_parameter(name, value, expected):
    _import_rclpy()
    from ros2_owl.ros.params import validate_parameter

    reason = validate_parameter(name, value)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason


def test_label_threshold_round_trip_and_settings_update():
    _import_rclpy()
    from rclpy.parameter import Parameter

    from ros2_owl.ros.params import Settings, format_label_thresholds, parse_label_thresholds

    parsed = parse_label_thresholds(["a=b=0.25", " a face = 0.5 "])
    assert parsed == {"a=b": 0.25, "a face": 0.5}  # the last '=' splits
    assert parse_label_thresholds(format_label_thresholds(parsed)) == parsed
    s = Settings().updated(
        [Parameter("threshold", value=0.3), Parameter("image_topics", value=["x", ""])]
    )
    assert s.threshold == 0.3 and s.image_topics == ("x",)
    assert Settings(camera_names=("a",), image_topics=("x", "y")).validate() == [
        "camera_names has 1 entries but image_topics has 2"
    ]
