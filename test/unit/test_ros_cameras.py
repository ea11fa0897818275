"""ros/cameras.py: output naming and the no-frame warning (in-process)."""

from __future__ import annotations

import pytest
from fixtures_ros import _import_rclpy


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
