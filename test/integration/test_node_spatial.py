"""owl_node with tracking, depth and masks over real DDS: image + depth + CameraInfo in, 3D out.

One node process (tiny random OWL and SAM models, no CLIP) with `tracking: true`, one camera
`cam/image` with its depth on `cam/depth` and CameraInfo on `cam/camera_info` (the default
beside the image); the prompt marks `a box` {mask}, so its 3D comes from its mask.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from fixtures_ros import RosHarness, RosProcess, _import_rclpy, child_env
from peers.owl_support import (
    camera_values,
    image_msg,
    owl_node_args,
    scene,
    wait_for_service_or_exit,
)

NS = "/owl_spatial"
W, H = 160, 120
FX, CX, CY = 100.0, 79.5, 59.5
OPTICAL = "cam_color_optical_frame"
DEPTH_M = 1.5


def depth_msg(stamp_sec: int, nanosec: int, encoding: str = "16UC1"):
    """A flat scene DEPTH_M away, in millimetres (16UC1) or metres (32FC1)."""
    from sensor_msgs.msg import Image

    if encoding == "16UC1":
        array = np.full((H, W), int(DEPTH_M * 1000), dtype=np.uint16)
    else:
        array = np.full((H, W), DEPTH_M, dtype=np.float32)
    msg = Image(encoding=encoding, height=H, width=W, step=W * array.itemsize)
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_sec, nanosec
    msg.header.frame_id = OPTICAL
    msg.data = array.tobytes()
    return msg


def camera_info():
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    msg.header.frame_id = OPTICAL
    msg.k = [FX, 0.0, CX, 0.0, FX, CY, 0.0, 0.0, 1.0]
    return msg


class DepthCameraProbe:
    """A running node with one RGB-D camera `cam` under `ns`: the probe's image, depth and
    CameraInfo publishers and its 2D, 3D and diagnostics collectors (test_node_robot too)."""

    def __init__(self, harness: RosHarness, proc: RosProcess, ns: str):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from vision_msgs.msg import Detection2DArray, Detection3DArray

        self.ros, self.proc, self.stamp = harness, proc, 100
        sensor = qos_profile_sensor_data
        self.image = harness.publisher(Image, f"{ns}/cam/image", sensor)
        self.depth = harness.publisher(Image, f"{ns}/cam/depth", sensor)
        self.info = harness.publisher(CameraInfo, f"{ns}/cam/camera_info", sensor)
        self.det2d = harness.collector(Detection2DArray, f"{ns}/detections")
        self.det3d = harness.collector(Detection3DArray, f"{ns}/detections_3d")
        self.diag = harness.collector(DiagnosticArray, "/diagnostics")


class Spatial(DepthCameraProbe):
    """The spatial node's probe: also its tree and masks."""

    def __init__(self, harness: RosHarness, proc: RosProcess):
        from ros2_owl.msg import TreeDetectionArray
        from sensor_msgs.msg import Image

        super().__init__(harness, proc, NS)
        self.tree = harness.collector(TreeDetectionArray, f"{NS}/tree")
        self.masks = harness.collector(Image, f"{NS}/masks")

    def frame_3d(self, encoding: str = "16UC1", timeout: float = 30.0):
        """Send CameraInfo, depth (stamped 10 ms before the image) and the image, re-sent until
        the node answers with a 3D message for this stamp -> (its 2D messages, the 3D one)."""
        self.stamp += 1
        stamp = self.stamp
        image = image_msg(scene(W, H, seed=0), stamp, frame_id=OPTICAL)
        depth = depth_msg(stamp - 1, 990_000_000, encoding)  # image is at (stamp, 500 ns)
        deadline = time.monotonic() + timeout
        while True:
            self.info.publish(camera_info())
            self.depth.publish(depth)
            self.image.publish(image)
            try:
                msg3d = self.det3d.wait_for(lambda m: m.header.stamp.sec == stamp, timeout=0.5)
                break
            except AssertionError:
                assert time.monotonic() < deadline, f"no detections_3d for stamp {stamp}"
        msgs2d = self.det2d.wait_for(lambda m: m.header.stamp.sec == stamp, timeout=10)
        return [m for m in self.det2d.messages if m.header.stamp.sec == stamp] or [msgs2d], msg3d


@pytest.fixture(scope="module")
def spatial(rclpy_context, tiny_owlvit_dir, tiny_sam_dir, tmp_path_factory):
    rclpy, context = rclpy_context
    _import_rclpy()
    log = tmp_path_factory.mktemp("owl_spatial") / "owl_node.log"
    args = owl_node_args(
        NS,
        model=tiny_owlvit_dir,
        clip_model="''",
        prompt='"[a box {mask} [a corner]]"',
        sam_model=tiny_sam_dir,
        threshold=0.0,
        max_detections=4,
        max_regions=1,
        image_topics=["cam/image"],
        depth_topics=["cam/depth"],
        tracking=True,
        depth_tolerance=0.05,
        diagnostics_period=0.25,
    )
    proc = RosProcess(args, log, child_env())
    harness = RosHarness(rclpy, context, "probe_spatial")
    try:
        wait_for_service_or_exit(harness.node, proc, f"{NS}/owl_node/set_prompt")
        yield Spatial(harness, proc)
    finally:
        harness.close()
        code = proc.stop()
        assert code == 0, f"owl_node exited {code} on SIGINT:\n{proc.output()[-3000:]}"


def centre_2d(det) -> tuple[float, float]:
    return det.bbox.center.position.x, det.bbox.center.position.y


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_detections_3d_match_the_2d_message(spatial, encoding):
    msgs2d, msg3d = spatial.frame_3d(encoding)
    assert msg3d.header.frame_id == OPTICAL and msg3d.header.stamp.nanosec == 500
    assert msg3d.detections, "a flat scene at 1.5 m gives every detection a 3D box"
    ids3d = [d.id for d in msg3d.detections]
    for msg2d in msgs2d:  # the same frame may have been processed more than once
        assert msg2d.header == msg3d.header
        assert sorted(d.id for d in msg2d.detections) == sorted(ids3d)
    by_id = {d.id: d for d in msgs2d[-1].detections}
    for det in msg3d.detections:
        assert det.header == msg3d.header
        assert det.id and int(det.id) >= 1  # a track id (this camera's first frames confirm)
        two = by_id[det.id]
        assert det.results[0].hypothesis.class_id == two.results[0].hypothesis.class_id
        assert det.results[0].hypothesis.score == pytest.approx(two.results[0].hypothesis.score)
        u, v = centre_2d(two)
        centre = det.bbox.center.position
        want = ((u - 0.5 - CX) * DEPTH_M / FX, (v - 0.5 - CY) * DEPTH_M / FX, DEPTH_M)
        assert (centre.x, centre.y, centre.z) == pytest.approx(want, abs=1e-3)
        assert det.bbox.size.x == pytest.approx(two.bbox.size_x * DEPTH_M / FX, abs=1e-3)
        assert det.bbox.size.z == pytest.approx(0.0, abs=1e-6)
        assert det.bbox.center.orientation.w == 1.0


def test_track_ids_persist_and_the_tree_carries_them(spatial):
    first, _ = spatial.frame_3d()
    second, msg3d = spatial.frame_3d()
    ids = sorted(d.id for d in first[-1].detections)
    assert ids == sorted(d.id for d in second[-1].detections)  # same scene, same tracks
    assert len(set(ids)) == len(ids) and all(int(i) >= 1 for i in ids)
    stamp = msg3d.header.stamp.sec
    tree = spatial.tree.wait_for(lambda m: m.header.stamp.sec == stamp, timeout=10)
    assert sorted(str(d.track_id) for d in tree.detections) == ids


def test_unpaired_frames_still_publish_2d_and_are_counted(spatial):
    spatial.frame_3d()  # depth and intrinsics known
    topic = f"{NS}/cam/image"
    spatial.diag.clear()  # a status sent before that frame was paired would count nothing yet

    def paired(diag):
        values = camera_values(diag, topic)
        return values is not None and int(values.get("frames_paired_with_depth", 0)) >= 1

    before = int(
        camera_values(spatial.diag.wait_for(paired, timeout=15), topic)["frames_without_depth"]
    )
    spatial.stamp += 100
    stamp = spatial.stamp  # no depth near this stamp
    msg = image_msg(scene(W, H, seed=0), stamp, frame_id=OPTICAL)
    result = spatial.ros.publish_until(
        spatial.image, msg, spatial.det2d, lambda m: m.header.stamp.sec == stamp, 20
    )
    assert result.detections  # the colour path does not wait for depth

    def counted(diag):
        values = camera_values(diag, topic)
        return values is not None and int(values.get("frames_without_depth", 0)) > before

    values = camera_values(spatial.diag.wait_for(counted, timeout=15), topic)
    assert int(values["active_tracks"]) >= 1
    assert int(values["frames_paired_with_depth"]) >= 1
    assert int(values["detections_without_3d"]) == 0


def test_masks_are_a_label_image_aligned_to_the_input(spatial):
    _, msg3d = spatial.frame_3d()
    stamp = msg3d.header.stamp.sec
    tree = spatial.tree.wait_for(lambda m: m.header.stamp.sec == stamp, timeout=10)
    masks = spatial.masks.wait_for(lambda m: m.header.stamp.sec == stamp, timeout=10)
    assert masks.header == tree.header and masks.header.frame_id == OPTICAL
    assert (masks.width, masks.height, masks.encoding, masks.step) == (W, H, "mono16", 2 * W)
    labels = np.frombuffer(bytes(masks.data), "<u2").reshape(H, W)
    marked = {d.id: d for d in tree.detections if d.has_mask}
    assert marked and all(d.has_mask == (d.class_id == "a box") for d in tree.detections)
    assert set(np.unique(labels)) - {0} <= set(marked)
    for det_id in set(np.unique(labels)) - {0}:  # each id's pixels lie inside its mask's box
        ys, xs = np.nonzero(labels == det_id)
        box = marked[det_id].mask_bbox
        cx, cy = box.center.position.x, box.center.position.y
        assert cx - box.size_x / 2 <= xs.min() and xs.max() + 1 <= cx + box.size_x / 2 + 1e-6
        assert cy - box.size_y / 2 <= ys.min() and ys.max() + 1 <= cy + box.size_y / 2 + 1e-6


def test_detect_answers_with_masks_and_3d_for_its_own_prompt(spatial):
    """~/detect runs the session's mask step on its prompt, and 3D over the masks."""
    from ros2_owl.srv import Detect

    spatial.frame_3d()  # the newest frame has its depth and intrinsics

    def detect(prompt: str):
        request = Detect.Request(prompt=prompt, timeout=20.0)
        resp = spatial.ros.call(Detect, f"{NS}/owl_node/detect", request, 60.0)
        assert resp.success, resp.message
        return resp

    resp = detect("[a box {mask}]")
    masks = resp.masks
    assert resp.has_masks and masks.header == resp.tree.header
    assert (masks.width, masks.height, masks.encoding, masks.step) == (W, H, "mono16", 2 * W)
    labels = np.frombuffer(bytes(masks.data), "<u2").reshape(H, W)
    marked = {d.id for d in resp.tree.detections if d.has_mask}
    assert marked and set(np.unique(labels)) - {0} <= marked
    assert resp.has_3d and resp.detections_3d.detections
    plain = detect("[a box]")  # no {mask}: no mask image
    assert not plain.has_masks and plain.tree.detections
