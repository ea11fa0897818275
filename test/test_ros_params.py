"""Parameters, output naming, the frame mailbox and diagnostics of the ROS layer (in-process)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from fixtures_ros import _import_rclpy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def node(rclpy_context, request):
    rclpy, context = rclpy_context
    args = getattr(request, "param", None)
    if args:  # a node with its own command-line overrides needs its own context
        context = rclpy.context.Context()
        rclpy.init(context=context, args=["x", "--ros-args", *args])
    n = rclpy.create_node("params_test", context=context)
    yield n
    n.destroy_node()
    if args:
        rclpy.shutdown(context=context)


def test_every_parameter_has_a_descriptor_and_is_documented_in_owl_yaml():
    _import_rclpy()
    from ros2_owl.ros.params import PARAMS, descriptor, parameter_type

    yaml_text = (REPO / "config" / "owl.yaml").read_text()
    in_yaml = set(re.findall(r"^    (\w+):", yaml_text, flags=re.M))
    assert in_yaml == {p.name for p in PARAMS}
    for spec in PARAMS:
        d = descriptor(spec)
        assert d.name == spec.name and d.description and d.type == parameter_type(spec)
        assert d.read_only == (not spec.live)
    read_only = {p.name for p in PARAMS if not p.live}
    assert {"model", "clip_model", "device", "backend", "image_topics"} <= read_only
    assert {"prompt", "threshold", "label_thresholds", "scoring", "nms_iou"}.isdisjoint(read_only)


def test_declared_types_and_rclpy_enforced_bounds(node):
    from rcl_interfaces.msg import ParameterType
    from rclpy.parameter import Parameter

    from ros2_owl.ros.params import declare_parameters, read_settings
    from ros2_owl.settings import DEFAULT_PROMPT

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
    assert "read-only" in reason("device", "cuda")
    assert reason("label_thresholds", ["a cat=0.2"]) is None
    assert read_settings(node).label_threshold_map() == {"a cat": 0.2}


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


def test_output_namespace_scheme():
    _import_rclpy()
    from ros2_owl.ros.cameras import is_compressed_topic, output_prefixes, output_topic

    assert is_compressed_topic("front/image_raw/compressed")
    assert not is_compressed_topic("front/image_raw")
    assert output_prefixes(("image",), ()) == [""]
    assert output_prefixes(("front/image_raw", "rear/image_raw/compressed"), ()) == [
        "front",
        "rear",
    ]
    assert output_prefixes(("a", "b"), ("left", "/abs/right/")) == ["left", "/abs/right"]
    assert output_topic("", "detections") == "detections"
    assert output_topic("front", "detections") == "front/detections"
    with pytest.raises(ValueError, match="camera_names"):
        output_prefixes(("cam/image", "cam/image/compressed"), ())
    with pytest.raises(ValueError, match="2 entries but image_topics has 1"):
        output_prefixes(("a",), ("x", "y"))


def test_mailbox_keeps_only_the_newest_frame_per_camera():
    _import_rclpy()
    from ros2_owl.ros.cameras import Camera, Mailbox
    from ros2_owl.ros.diagnostics import CameraStats

    cams = [Camera(i, f"cam{i}", f"c{i}", False, CameraStats(f"cam{i}")) for i in range(2)]
    box = Mailbox()
    box.put(cams[0], "a1", received=1.0)
    box.put(cams[1], "b1", received=2.0)
    box.put(cams[0], "a2", received=3.0)  # replaces a1
    assert cams[0].stats.dropped == 1 and cams[1].stats.dropped == 0
    assert box.take(0).msg == "b1"  # the longest waiting first
    assert box.take(0).msg == "a2"
    assert box.take(0.01) is None
    got = []
    worker = threading.Thread(target=lambda: got.append(box.take(5)))
    worker.start()
    box.close()
    worker.join(5)
    assert got == [None]


def test_camera_stats_and_status_levels():
    _import_rclpy()
    from diagnostic_msgs.msg import DiagnosticStatus

    from ros2_owl.ros.diagnostics import CameraStats, camera_status

    stats = CameraStats("/cam")
    first = stats.snapshot(now=0.0)
    assert camera_status("/n", first, None, 5.0).level == DiagnosticStatus.WARN  # nothing yet
    for i in range(100):
        stats.frame_received(now=i * 0.1)
        stats.frame_done(latency_ms=float(i + 1), inference_ms=1.0, now=i * 0.1 + 0.05)
    stats.frame_dropped()
    snap = stats.snapshot(now=10.0)
    assert snap.received == 100 and snap.processed == 100 and snap.dropped == 1
    assert snap.latency_p50_ms == pytest.approx(50.5)
    assert snap.latency_p95_ms == pytest.approx(95.05)
    assert snap.input_hz == pytest.approx(10.0, rel=0.05)
    ok = camera_status("/n", snap, first, 5.0)
    assert ok.level == DiagnosticStatus.OK and ok.name == "/n: /cam"
    values = {kv.key: kv.value for kv in ok.values}
    assert values["frames_dropped"] == "1" and values["latency_p95_ms"] == "95.050"
    stats.frame_bad("data has 3 bytes but the header needs 9")
    bad = camera_status("/n", stats.snapshot(now=10.0), snap, 5.0)
    assert bad.level == DiagnosticStatus.WARN and "data has 3 bytes" in bad.message
    stale = stats.snapshot(now=30.0)
    assert stale.input_hz == 0.0
    assert "no frame for 20 s" in camera_status("/n", stale, stale, 5.0).message


def test_no_frame_message_names_topic_qos_and_the_publishers(node):
    from sensor_msgs.msg import Image

    from ros2_owl.ros.cameras import Camera, no_frame_message
    from ros2_owl.ros.diagnostics import CameraStats

    node.create_publisher(Image, "/silent/image", 10)  # reliable
    cam = Camera(
        0, "image", "", False, CameraStats("/silent/image"), resolved_topic="/silent/image"
    )
    text = no_frame_message(
        cam, 5.0, "reliable", 5, node.get_publishers_info_by_topic("/silent/image")
    )
    assert text.startswith("no frame received on /silent/image (Image) within 5 s")
    assert "reliability=reliable, depth=5" in text
    assert "/params_test (reliable, type sensor_msgs/msg/Image)" in text
    assert "publishers seen: none" in no_frame_message(cam, 5.0, "best_effort", 5, [])
