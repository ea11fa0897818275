"""owl_node's robot outputs over real DDS: target_frame through /tf_static and /tf, RViz markers,
Foxglove image annotations, the prompt topic and ~/detect (beside a 30 Hz stream).

One node process (tiny random OWL model, no CLIP, tracking, depth) with `target_frame: map`,
`transform_missing: skip`, markers, annotations and `prompt_topic: prompt`. Each test sends
frames with its own optical frame id, so the transforms it publishes are its own.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fixtures_ros import RosHarness, RosProcess, _import_rclpy, child_env
from peers.owl_support import (
    camera_values,
    image_msg,
    owl_node_args,
    scene,
    wait_for_log,
    wait_for_service_or_exit,
)
from scipy.spatial.transform import Rotation
from test_node_spatial import DEPTH_M, DepthCameraProbe, H, W, camera_info, depth_msg

NS = "/owl_robot"
PROMPT = "[a box [a corner]]"
OPTICAL_TO_BASE = Rotation.from_euler("xyz", [-90, 0, -90], degrees=True)  # REP 103 optical


def tf_msg(parent: str, child: str, stamp_ns: int, xyz, quat):
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = parent, child
    t.header.stamp.sec, t.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    tr, q = t.transform.translation, t.transform.rotation
    tr.x, tr.y, tr.z = (float(v) for v in xyz)
    q.x, q.y, q.z, q.w = (float(v) for v in quat)
    return TFMessage(transforms=[t])


class Robot(DepthCameraProbe):
    """The robot node's probe: also /tf, the prompt topic, markers and annotations."""

    def __init__(self, harness: RosHarness, proc: RosProcess):
        from foxglove_msgs.msg import ImageAnnotations
        from std_msgs.msg import String
        from tf2_msgs.msg import TFMessage
        from visualization_msgs.msg import MarkerArray

        from ros2_owl.ros.prompt_topic import STATUS_QOS
        from ros2_owl.ros.tf_listener import DYNAMIC_QOS, STATIC_QOS

        super().__init__(harness, proc, NS)
        self.tf = harness.publisher(TFMessage, "/tf", DYNAMIC_QOS)
        self.tf_static = harness.publisher(TFMessage, "/tf_static", STATIC_QOS)
        self.prompt = harness.publisher(String, f"{NS}/prompt", 5)
        self.status = harness.collector(String, f"{NS}/owl_node/prompt_status", STATUS_QOS)
        self.markers = harness.collector(MarkerArray, f"{NS}/markers")
        self.notes = harness.collector(ImageAnnotations, f"{NS}/image_annotations")

    def send(self, frame_id: str, stamp: int | None = None):
        """CameraInfo, depth (10 ms earlier) and the image of one stamp -> that stamp."""
        if stamp is None:
            self.stamp += 1
            stamp = self.stamp
        self.info.publish(camera_info())
        self.depth.publish(depth_msg(stamp - 1, 990_000_000))
        self.image.publish(image_msg(scene(W, H, seed=0), stamp, frame_id=frame_id))
        return stamp

    def frame_3d(self, frame_id: str, timeout: float = 30.0):
        """Re-send one stamp until its detections_3d arrives -> (2D message, 3D message)."""
        stamp = self.send(frame_id)
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg3d = self.det3d.wait_for(lambda m: m.header.stamp.sec == stamp, timeout=0.5)
                break
            except AssertionError:
                assert time.monotonic() < deadline, f"no detections_3d for stamp {stamp}"
                self.send(frame_id, stamp)
        msg2d = self.det2d.wait_for(lambda m: m.header.stamp.sec == stamp, timeout=10)
        return msg2d, msg3d

    def detect(self, **fields):
        """Call ~/detect with these request fields (the call itself waits up to 90 s)."""
        from ros2_owl.srv import Detect

        return self.ros.call(Detect, f"{NS}/owl_node/detect", Detect.Request(**fields), 90.0)


@pytest.fixture(scope="module")
def robot(rclpy_context, tiny_owlvit_dir, tmp_path_factory):
    rclpy, context = rclpy_context
    _import_rclpy()
    log = tmp_path_factory.mktemp("owl_robot") / "owl_node.log"
    args = owl_node_args(
        NS,
        model=tiny_owlvit_dir,
        clip_model="''",
        prompt=f'"{PROMPT}"',
        threshold=0.0,
        max_detections=4,
        max_regions=1,
        image_topics=["cam/image"],
        depth_topics=["cam/depth"],
        tracking=True,
        diagnostics_period=0.25,
        no_frame_warning=0.0,
        target_frame="map",
        transform_missing="skip",
        publish_markers=True,
        publish_image_annotations=True,
        prompt_topic="prompt",
    )
    proc = RosProcess(args, log, child_env())
    harness = RosHarness(rclpy, context, "probe_robot")
    try:
        wait_for_service_or_exit(harness.node, proc, f"{NS}/owl_node/detect")
        yield Robot(harness, proc)
    finally:
        harness.close()
        code = proc.stop()
        out = proc.output()
        assert code == 0 and "Traceback" not in out, f"owl_node exited {code}:\n{out[-3000:]}"


def centre(det) -> np.ndarray:
    p = det.bbox.center.position
    return np.array([p.x, p.y, p.z])


def quat_of(det) -> np.ndarray:
    q = det.bbox.center.orientation
    return np.array([q.x, q.y, q.z, q.w])


def optical_centre(det2d) -> np.ndarray:
    """Where test_node_spatial's flat scene puts a 2D box's centre in the optical frame."""
    from test_node_spatial import CX, CY, FX

    u, v = det2d.bbox.center.position.x, det2d.bbox.center.position.y
    return np.array([(u - 0.5 - CX) * DEPTH_M / FX, (v - 0.5 - CY) * DEPTH_M / FX, DEPTH_M])


def test_missing_transform_skips_3d_and_is_counted(robot):
    def skipped(diag):
        values = camera_values(diag, f"{NS}/cam/image")
        return values is not None and int(values.get("frames_skipped_without_transform", 0)) >= 1

    stamp = robot.send("optical_unknown")
    deadline = time.monotonic() + 30
    while not any(skipped(d) for d in robot.diag.messages):  # best effort: re-send the set
        assert time.monotonic() < deadline, "no frame was skipped for its missing transform"
        robot.send("optical_unknown", stamp)
        try:
            robot.diag.wait_for(skipped, timeout=0.5)
        except AssertionError:
            pass
    assert robot.det2d.wait_for(lambda m: m.header.stamp.sec == stamp)
    values = camera_values(robot.diag.wait_for(skipped, timeout=15), f"{NS}/cam/image")
    assert values["target_frame"] == "map"
    assert "optical_unknown" in values["last_transform_problem"]
    assert not [m for m in robot.det3d.messages if m.header.stamp.sec == stamp]
    line = "no transform 'optical_unknown' -> 'map': frame 'map' is not known"
    out = wait_for_log(robot.proc, line)
    assert "published without 3D (repeats muted 5 s)" in out and "Traceback" not in out
    assert robot.proc.alive()


def test_static_transform_moves_3d_into_the_target_frame(robot):
    q = OPTICAL_TO_BASE.as_quat()
    robot.tf_static.publish(tf_msg("map", "optical_static", 0, (0.1, 0.0, 0.5), q))
    msg2d, msg3d = robot.frame_3d("optical_static")
    assert msg3d.header.frame_id == "map" and msg3d.detections
    by_id = {d.id: d for d in msg2d.detections}
    for det in msg3d.detections:
        want = OPTICAL_TO_BASE.apply(optical_centre(by_id[det.id])) + [0.1, 0.0, 0.5]
        assert centre(det) == pytest.approx(want, abs=1e-3)
        assert centre(det)[0] == pytest.approx(0.1 + DEPTH_M, abs=1e-3)  # optical z is forward
        got = Rotation.from_quat(quat_of(det))
        assert (got * OPTICAL_TO_BASE.inv()).magnitude() == pytest.approx(0.0, abs=1e-6)
        assert det.header.frame_id == "map"


def test_dynamic_transform_is_interpolated_at_the_image_stamp(robot):
    s = 1_000_000_000
    stamp = robot.stamp + 1  # the stamp frame_3d sends next, at (stamp, 500 ns)
    robot.tf_static.publish(tf_msg("base_link", "optical_moving", 0, (0, 0, 0), (0, 0, 0, 1)))
    for sec, x, yaw in ((stamp - 1, 0.0, 0.0), (stamp + 1, 2.0, 90.0)):
        quat = Rotation.from_euler("z", yaw, degrees=True).as_quat()
        robot.tf.publish(tf_msg("map", "base_link", sec * s, (x, 0.0, 0.0), quat))
    msg2d, msg3d = robot.frame_3d("optical_moving")
    assert msg3d.header.stamp.sec == stamp and msg3d.header.frame_id == "map"
    halfway = Rotation.from_euler("z", 45.0, degrees=True)
    by_id = {d.id: d for d in msg2d.detections}
    for det in msg3d.detections:
        want = halfway.apply(optical_centre(by_id[det.id])) + [1.0, 0.0, 0.0]
        assert centre(det) == pytest.approx(want, abs=1e-3)
        assert (Rotation.from_quat(quat_of(det)) * halfway.inv()).magnitude() < 1e-6


def test_markers_follow_the_3d_detections_with_stable_ids(robot):
    robot.tf_static.publish(tf_msg("map", "optical_static", 0, (0.1, 0.0, 0.5), (0, 0, 0, 1)))
    robot.frame_3d("optical_static")
    _, msg3d = robot.frame_3d("optical_static")
    stamp = msg3d.header.stamp
    marks = robot.markers.wait_for(lambda m: m.markers and m.markers[-1].header.stamp == stamp)
    cubes = [m for m in marks.markers if m.type == 1 and m.action == 0]
    texts = [m for m in marks.markers if m.type == 9 and m.action == 0]
    assert sorted(m.id for m in cubes) == sorted(int(d.id) for d in msg3d.detections)
    assert sorted(m.id for m in texts) == sorted(m.id for m in cubes)
    by_id = {int(d.id): d for d in msg3d.detections}
    for cube in cubes:
        assert cube.header.frame_id == "map"
        assert (cube.pose.position.x, cube.pose.position.y) == pytest.approx(
            tuple(centre(by_id[cube.id])[:2])
        )
        assert cube.scale.x > 0 and 0 < cube.color.a < 1
    assert all(t.text.startswith(("a box", "a corner")) for t in texts)


def test_prompt_topic_sets_and_refuses_like_the_service_and_markers_clear(robot):
    from std_msgs.msg import String

    robot.ros.wait_for_subscribers(robot.prompt)
    robot.status.clear()
    robot.prompt.publish(String(data="[a box]"))
    ok = robot.status.wait_for(lambda m: m.data.startswith("ok"), timeout=15)
    assert ok.data == "ok: prompt now '[a box]'"
    for bad, words in (("", "empty"), ("[a cat, (broken", "column 7")):
        robot.status.clear()
        robot.prompt.publish(String(data=bad))
        refused = robot.status.wait_for(timeout=15)
        assert refused.data.startswith("refused: ") and words in refused.data, refused.data
    _, msg3d = robot.frame_3d("optical_static")  # the stream runs on with '[a box]'
    labels = {d.results[0].hypothesis.class_id for d in msg3d.detections}
    assert labels == {"a box"}
    stamp = msg3d.header.stamp
    marks = robot.markers.wait_for(lambda m: m.markers and m.markers[-1].header.stamp == stamp)
    cleared = [m for m in robot.markers.messages if any(x.action == 3 for x in m.markers)]
    assert cleared and cleared[0].markers[0].action == 3  # DELETEALL first, once
    assert marks.markers
    robot.prompt.publish(String(data=PROMPT))
    robot.status.wait_for(lambda m: m.data == f"ok: prompt now {PROMPT!r}", timeout=15)


def test_image_annotations_draw_every_box_at_the_image_stamp(robot):
    msg2d, _ = robot.frame_3d("optical_static")
    stamp = msg2d.header.stamp
    note = robot.notes.wait_for(lambda m: m.points and m.points[0].timestamp == stamp)
    assert len(note.points) == len(note.texts) == len(msg2d.detections) > 0
    boxes = sorted(
        (d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2)
        for d in msg2d.detections
    )
    corners = sorted((p.points[0].x, p.points[0].y) for p in note.points)
    assert np.allclose(corners, boxes, atol=1e-3)
    for points in note.points:
        assert points.type == 2 and len(points.points) == 4 and points.thickness > 0
    want = [
        f"{d.results[0].hypothesis.class_id} {d.results[0].hypothesis.score:.2f}"
        + (f" #{d.id}" if d.id else "")
        for d in msg2d.detections
    ]
    assert sorted(t.text for t in note.texts) == sorted(want)
    assert all(t.timestamp == stamp and t.font_size > 0 for t in note.texts)


def test_detect_refuses_bad_requests_with_one_line_and_stays_up(robot):
    robot.frame_3d("optical_static")
    cases = [
        (dict(prompt=""), "the prompt is empty"),
        (dict(prompt="[a cat, (broken"), "column 7"),
        (dict(prompt="[a cup]", camera="5"), "names no camera"),
        (dict(prompt="[a cup]", camera="nowhere"), "names no camera"),
        (dict(prompt="[a cup]", timeout=-1.0), "timeout must be"),
        (dict(prompt="[a cup]", timeout=1e-9), "timed out"),
        (dict(prompt="[a cup {mask}]"), "no SAM model is loaded"),
    ]
    for fields, words in cases:
        resp = robot.detect(**fields)
        assert not resp.success and words in resp.message, (fields, resp.message)
        assert not resp.detections.detections
    resp = robot.detect(prompt="[a cup]", camera="0", timeout=20.0)
    assert resp.success and resp.message == "ok", resp.message
    assert robot.proc.alive()


def test_detect_runs_its_own_prompt_beside_a_30_hz_stream(robot):
    robot.tf_static.publish(tf_msg("map", "optical_static", 0, (0.1, 0.0, 0.5), (0, 0, 0, 1)))
    robot.frame_3d("optical_static")
    robot.det2d.clear()
    stop = threading.Event()

    def stream():
        while not stop.wait(1 / 30):
            robot.send("optical_static")

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    answers: dict[str, object] = {}

    def ask(prompt: str):
        answers[prompt] = robot.detect(prompt=prompt, timeout=60.0)

    prompts = ["[a red mug]", "[a forklift]", "[a dog [a tail]]"]
    askers = [threading.Thread(target=ask, args=(p,)) for p in prompts]
    try:
        for t in askers:
            t.start()
        for t in askers:
            t.join(90)
        robot.det2d.wait_for(lambda m: m.detections, timeout=30)  # the stream ran beside them
    finally:
        stop.set()
        streamer.join(5)
    own = {"[a red mug]": {"a red mug"}, "[a forklift]": {"a forklift"}}
    own["[a dog [a tail]]"] = {"a dog", "a tail"}
    for prompt in prompts:
        resp = answers[prompt]
        assert resp.success, resp.message
        labels = {d.results[0].hypothesis.class_id for d in resp.detections.detections}
        assert resp.detections.detections and labels <= own[prompt], (prompt, labels)
        assert resp.has_3d and resp.detections_3d.header.frame_id == "map"
        assert resp.tree.header == resp.detections.header
    streamed = {
        d.results[0].hypothesis.class_id for m in robot.det2d.messages for d in m.detections
    }
    assert streamed and streamed <= {"a box", "a corner"}, streamed
