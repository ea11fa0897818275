"""ros/cameras.py: output naming, the one-frame mailbox and the no-frame warning (in-process)."""

from __future__ import annotations

import threading

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


def test_mailbox_batch_takes_the_longest_waiting_cameras_first():
    _import_rclpy()
    from ros2_owl.ros.cameras import Camera, Mailbox
    from ros2_owl.ros.diagnostics import CameraStats

    cams = [Camera(i, f"cam{i}", f"c{i}", False, CameraStats(f"cam{i}")) for i in range(3)]
    box = Mailbox()
    box.put(cams[2], "c1", received=1.0)
    box.put(cams[0], "a1", received=2.0)
    box.put(cams[1], "b1", received=3.0)
    box.put(cams[0], "a2", received=4.0)  # replaces a1: a camera is in a batch once
    assert [p.msg for p in box.take_batch(2, 0)] == ["c1", "b1"]  # in arrival order
    box.put(cams[2], "c2", received=5.0)
    # the camera left out of the last batch goes first: nobody waits more than one batch
    assert [p.msg for p in box.take_batch(2, 0)] == ["a2", "c2"]
    assert box.take_batch(2, 0.01) == []
    box.close()
    assert box.take_batch(2, 0) == []
