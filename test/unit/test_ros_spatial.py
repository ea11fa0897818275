"""ros/spatial.py: depth Image / CameraInfo messages into the session's CameraDepth,
Detection3DArray out (no DDS needed)."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_ros import _import_rclpy

from ros2_owl.core.prompt import parse_prompt
from ros2_owl.core.results import Detection, TreeResult

TREE = parse_prompt("[a person [a face]]")
K = [100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 1.0]
W, H = 160, 120


def result(*detections) -> TreeResult:
    return TreeResult(TREE, "[a person [a face]]", (W, H), tuple(detections))


PERSON = Detection(1, 0, 1, "a person", 0.8, (40.0, 20.0, 120.0, 100.0), track_id=7)
FACE = Detection(2, 1, 2, "a face", 0.4, (70.0, 30.0, 90.0, 50.0))  # no track yet


def depth_image(array: np.ndarray, encoding: str, stamp=(5, 0), pad: int = 0, big=False):
    _import_rclpy()
    from sensor_msgs.msg import Image

    data = array.astype(array.dtype.newbyteorder(">" if big else "<"))
    rows = data.view(np.uint8).reshape(array.shape[0], -1)
    rows = np.hstack([rows, np.zeros((rows.shape[0], pad), np.uint8)])
    msg = Image(encoding=encoding, height=array.shape[0], width=array.shape[1])
    msg.step, msg.is_bigendian = rows.shape[1], int(big)
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.data = rows.tobytes()
    return msg


def camera_info(k=K):
    _import_rclpy()
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(width=W, height=H)
    msg.k = k
    return msg


def header(sec: int, nanosec: int = 0):
    from std_msgs.msg import Header

    h = Header(frame_id="cam_optical")
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("pad", [0, 6])
def test_depth_messages_become_arrays(big, pad):
    from ros2_owl.ros.spatial import depth_to_array

    mm = np.arange(W * H, dtype=np.uint16).reshape(H, W)
    array, encoding = depth_to_array(depth_image(mm, "16UC1", pad=pad, big=big))
    assert encoding == "16UC1" and array.dtype == np.uint16
    np.testing.assert_array_equal(array, mm)
    metres = (mm / 1000.0).astype(np.float32)
    array, _ = depth_to_array(depth_image(metres, "32FC1", pad=pad, big=big))
    np.testing.assert_array_equal(array, metres)


def test_bad_depth_messages_are_one_clear_error():
    from ros2_owl.ros.spatial import depth_to_array

    with pytest.raises(ValueError, match="'rgb8' is not supported"):
        depth_to_array(depth_image(np.zeros((2, 2), np.uint16), "rgb8"))
    short = depth_image(np.zeros((4, 4), np.uint16), "16UC1")
    short.data = short.data[:10]
    with pytest.raises(ValueError, match="needs 32"):
        depth_to_array(short)


def test_camera_info_topic_beside_the_image():
    _import_rclpy()
    from ros2_owl.ros.spatial import camera_info_topic

    assert camera_info_topic("/camera/color/image_raw") == "/camera/color/camera_info"
    assert camera_info_topic("front/image_raw/compressed") == "front/camera_info"
    assert camera_info_topic("image") == "camera_info"


def test_depth_and_camera_info_messages_feed_the_camera_depth():
    """What subscribe_depth's callbacks hand over: the stamp, the message, and intrinsics."""
    from ros2_owl.ros.spatial import depth_to_array, intrinsics_from_camera_info, stamp_ns
    from ros2_owl.runtime.spatial import CameraDepth

    depth = CameraDepth(tolerance_s=0.05, to_array=depth_to_array)
    msg = depth_image(np.full((H, W), 2000, np.uint16), "16UC1", stamp=(5, 0))
    depth.add_depth(stamp_ns(msg.header.stamp), msg)
    with pytest.raises(ValueError, match="focal"):
        intrinsics_from_camera_info(camera_info([0.0] * 9))
    depth.set_intrinsics(intrinsics_from_camera_info(camera_info()))
    (person,) = depth.boxes_3d(stamp_ns(header(5, 20_000_000).stamp), [PERSON.box], (W, H))
    assert person.center == pytest.approx((0.0, 0.0, 2.0))


def test_detection_3d_array_has_the_2d_ids_labels_and_header():
    _import_rclpy()
    from ros2_owl.core.depth import Box3D
    from ros2_owl.ros.messages import detection_array
    from ros2_owl.ros.spatial import detection_3d_array

    res = result(PERSON, FACE)
    boxes = [Box3D((0.1, -0.2, 2.0), (0.8, 1.6, 0.3), 100), None]
    h = header(5)
    for tracking, person_id in ((True, "7"), (False, "1")):
        msg = detection_3d_array(res, boxes, h, tracking)
        (det,) = msg.detections  # FACE has no 3D box
        assert msg.header == h and det.header == h and det.id == person_id
        two = detection_array(res, h, tracking).detections[0]
        assert det.id == two.id
        assert det.results[0].hypothesis.class_id == "a person"
        assert det.results[0].hypothesis.score == pytest.approx(0.8)
        p = det.bbox.center.position
        assert (p.x, p.y, p.z) == (0.1, -0.2, 2.0)
        assert det.results[0].pose.pose.position.z == 2.0
        assert (det.bbox.size.x, det.bbox.size.y, det.bbox.size.z) == (0.8, 1.6, 0.3)
        assert det.bbox.center.orientation.w == 1.0


def test_tracking_ids_in_2d_and_tree_messages():
    _import_rclpy()
    from ros2_owl.ros.messages import detection_array, tree_array

    res = result(PERSON, FACE)
    h = header(5)
    assert [d.id for d in detection_array(res, h, tracking=True).detections] == ["7", ""]
    assert [d.id for d in detection_array(res, h).detections] == ["1", "2"]
    tree = tree_array(res, h)
    assert [(d.id, d.parent_id, d.track_id) for d in tree.detections] == [(1, 0, 7), (2, 1, 0)]


def test_depth_settings_are_validated():
    _import_rclpy()
    from ros2_owl.ros.params import Settings, validate_parameter

    assert Settings(depth_topics=("d",), image_topics=("a", "b")).validate() == [
        "depth_topics has 1 entries but image_topics has 2"
    ]
    assert "only used with depth_topics" in Settings(camera_info_topics=("i",)).validate()[0]
    assert Settings(depth_topics=("d",), camera_info_topics=("i",)).validate() == []
    assert "must not be empty" in validate_parameter("depth_topics", [" "])
