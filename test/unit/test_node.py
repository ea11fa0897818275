"""owl_node over real DDS: one node process (tiny random models) shared by this module's tests.

The node runs as `python3 scripts/owl_node --ros-args --params-file config/owl.yaml -p ...`
with three inputs: cam_a/image (Image), cam_b/image/compressed (CompressedImage) and
cam_idle/image (never published, for the no-frame warning).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest
from fixtures_ros import RosHarness, RosProcess, _import_rclpy, child_env
from peers.owl_support import (
    camera_values,
    compressed_msg,
    image_msg,
    owl_node_args,
    scene,
    wait_for_log,
    wait_for_service_or_exit,
)

from ros2_owl.core.settings import SETTINGS

NS = "/owl_test"
NODE = f"{NS}/owl_node"
PROMPT = "[a cat [an ear], a dog] (indoor, outdoor)"
W, H = 160, 120


class Owl:
    """The running node, the probe node, and the topics the tests use."""

    def __init__(self, harness: RosHarness, proc: RosProcess):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
        from ros2_owl.msg import TreeDetectionArray
        from sensor_msgs.msg import CompressedImage, Image
        from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

        self.ros, self.proc = harness, proc
        self.stamp = 1000
        self.pub_a = harness.publisher(Image, f"{NS}/cam_a/image", qos_profile_sensor_data)
        self.pub_b = harness.publisher(
            CompressedImage, f"{NS}/cam_b/image/compressed", qos_profile_sensor_data
        )
        self.det_a = harness.collector(Detection2DArray, f"{NS}/cam_a/detections")
        self.det_b = harness.collector(Detection2DArray, f"{NS}/cam_b/detections")
        self.tree_a = harness.collector(TreeDetectionArray, f"{NS}/cam_a/tree")
        self.cls_a = harness.collector(Classification, f"{NS}/cam_a/classification")
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.info_a = harness.collector(LabelInfo, f"{NS}/cam_a/label_info", latched)
        self.diag = harness.collector(DiagnosticArray, "/diagnostics")

    def next_stamp(self) -> int:
        self.stamp += 1
        return self.stamp

    def frame(self, pub=None, collector=None, msg=None, timeout: float = 20.0):
        """Publish a new frame (re-sent until answered: best effort may drop) -> its result."""
        pub = pub or self.pub_a
        collector = collector or self.det_a
        stamp = self.next_stamp()
        if msg is None:
            msg = image_msg(scene(W, H, seed=stamp), stamp)
        msg.header.stamp.sec = stamp
        return self.ros.publish_until(
            pub, msg, collector, lambda m: m.header.stamp.sec == stamp, timeout
        )

    def set_prompt(self, prompt: str, thresholds: dict[str, float] | None = None):
        from ros2_owl.msg import LabelThreshold
        from ros2_owl.srv import SetPrompt

        req = SetPrompt.Request(prompt=prompt)
        req.thresholds = [
            LabelThreshold(label=k, threshold=v) for k, v in (thresholds or {}).items()
        ]
        return self.ros.call(SetPrompt, f"{NODE}/set_prompt", req)

    def set_param(self, name: str, value):
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.ros.call(SetParameters, f"{NODE}/set_parameters", req).results[0]

    def get_param(self, name: str):
        return self.get_params([name])[name]

    def get_params(self, names: list[str]) -> dict:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        resp = self.ros.call(
            GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=names)
        )
        return {n: parameter_value_to_python(v) for n, v in zip(names, resp.values, strict=True)}

    def restore(self, baseline: dict) -> None:
        """Put back every live parameter a test changed (one node serves the whole module)."""
        from rclpy.parameter import Parameter

        changed = {n: v for n, v in self.get_params(list(baseline)).items() if v != baseline[n]}
        for name in changed:
            value = baseline[name]
            kind = Parameter.Type.STRING_ARRAY if isinstance(value, list) else None
            param = Parameter(name, kind, value) if kind else Parameter(name, value=value)
            req_result = self.set_params([param])
            assert req_result.successful, (name, req_result.reason)

    def set_params(self, params):
        from rcl_interfaces.srv import SetParametersAtomically

        req = SetParametersAtomically.Request(parameters=[p.to_parameter_msg() for p in params])
        return self.ros.call(
            SetParametersAtomically, f"{NODE}/set_parameters_atomically", req
        ).result

    def camera_stats(self, topic: str, predicate=None, timeout: float = 15.0) -> dict[str, str]:
        """Values of the newest /diagnostics status of `topic` that satisfies `predicate`."""

        def match(msg):
            values = camera_values(msg, topic)
            return values is not None and (predicate is None or predicate(values))

        return camera_values(self.diag.wait_for(match, timeout=timeout), topic)


@contextmanager
def running_owl(rclpy_context, owlvit_dir, clip_dir, tmp_path_factory, launcher=None):
    """The module's node process (`launcher`: a peer script run instead of scripts/owl_node)."""
    rclpy, context = rclpy_context
    _import_rclpy()
    log = tmp_path_factory.mktemp("owl_node") / "owl_node.log"
    args = owl_node_args(
        NS,
        model=owlvit_dir,
        clip_model=clip_dir,
        prompt=f'"{PROMPT}"',
        threshold=0.0,
        max_detections=4,
        max_regions=2,
        image_topics=["cam_a/image", "cam_b/image/compressed", "cam_idle/image"],
        no_frame_warning=3.0,
        diagnostics_period=0.25,
        queries_file=str(log.parent / "queries.pt"),
    )
    if launcher is not None:
        args[1] = str(launcher)
    proc = RosProcess(args, log, child_env())
    harness = RosHarness(rclpy, context, "probe_test_node")
    try:
        wait_for_service_or_exit(harness.node, proc, f"{NODE}/set_prompt")
        owl = Owl(harness, proc)
        owl.baseline = owl.get_params([s.name for s in SETTINGS if s.live])
        yield owl
    finally:
        harness.close()
        code = proc.stop()
        assert code == 0, f"owl_node exited {code} on SIGINT:\n{proc.output()[-3000:]}"


@pytest.fixture(scope="module")
def owl(rclpy_context, tiny_owlvit_dir, tiny_clip_dir, tmp_path_factory):
    with running_owl(rclpy_context, tiny_owlvit_dir, tiny_clip_dir, tmp_path_factory) as node:
        yield node


def labels_of(prompt: str) -> set[str]:
    from ros2_owl.core.prompt import parse_prompt

    return set(parse_prompt(prompt).label_texts)


@pytest.fixture(autouse=True)
def fresh_settings(request):
    """Each test starts from the module's prompt and live parameters, whatever the last did."""
    yield
    if "owl" in request.fixturenames:
        owl = request.getfixturevalue("owl")
        owl.restore(owl.baseline)


def test_detections_carry_the_input_header_and_boxes_inside_the_image(owl):
    result = owl.frame()
    assert result.header.frame_id == "camera" and result.header.stamp.nanosec == 500
    assert result.detections, "threshold 0 must give detections"
    ids = [d.id for d in result.detections]
    assert len(set(ids)) == len(ids) and all(int(i) >= 1 for i in ids)
    for det in result.detections:
        hyp = det.results[0].hypothesis
        assert hyp.class_id in {"a cat", "an ear", "a dog"}
        assert 0.0 < hyp.score <= 1.0
        cx, cy, sx, sy = (
            det.bbox.center.position.x,
            det.bbox.center.position.y,
            det.bbox.size_x,
            det.bbox.size_y,
        )
        assert sx > 0 and sy > 0
        assert -1e-3 <= cx - sx / 2 and cx + sx / 2 <= W + 1e-3
        assert -1e-3 <= cy - sy / 2 and cy + sy / 2 <= H + 1e-3
        assert det.header.stamp == result.header.stamp


def test_tree_and_classification_describe_the_same_frame(owl):
    det = owl.frame()
    stamp = det.header.stamp.sec
    tree = owl.tree_a.wait_for(lambda m: m.header.stamp.sec == stamp)
    assert tree.prompt == PROMPT
    assert list(tree.labels) == ["image", "a cat", "an ear", "a dog", "indoor", "outdoor"]
    assert sorted(int(d.id) for d in det.detections) == sorted(d.id for d in tree.detections)
    by_id = {d.id: d for d in tree.detections}
    for d in tree.detections:
        assert d.class_id == tree.labels[d.label_index]
        assert d.parent_id == 0 or by_id[d.parent_id].class_id == "a cat"
        if d.class_id == "an ear":
            assert d.parent_id != 0
    (root_cls,) = tree.image_classifications
    assert [r.class_id for r in root_cls.results] == ["indoor", "outdoor"]
    assert sum(r.score for r in root_cls.results) == pytest.approx(1.0, abs=1e-4)
    cls = owl.cls_a.wait_for(lambda m: m.header.stamp.sec == stamp)
    assert [r.class_id for r in cls.results] == ["indoor", "outdoor"]


def test_label_info_is_latched(owl):
    info = owl.info_a.wait_for(timeout=10)
    assert [(c.class_id, c.class_name) for c in info.class_map][:3] == [
        (0, "image"),
        (1, "a cat"),
        (2, "an ear"),
    ]
    assert info.threshold == pytest.approx(0.0)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_image(owl, fmt):
    stamp = owl.next_stamp()
    msg = compressed_msg(scene(W, H, seed=stamp), stamp, fmt=fmt, frame_id="cam_b_optical")
    result = owl.frame(owl.pub_b, owl.det_b, msg)
    assert result.header.frame_id == "cam_b_optical"
    assert result.detections
    for det in result.detections:
        assert det.bbox.center.position.x + det.bbox.size_x / 2 <= W + 1e-3


def test_two_cameras_at_once(owl):
    """Frames of both cameras in flight together: each result goes out on its own camera."""
    stamps: dict[int, str] = {}
    deadline = time.monotonic() + 20
    while True:  # pairs are re-sent until both cameras answered (best effort may drop)
        sa, sb = owl.next_stamp(), owl.next_stamp()
        stamps[sa], stamps[sb] = "left", "right"
        owl.pub_a.publish(image_msg(scene(W, H, sa), sa, frame_id="left"))
        owl.pub_b.publish(compressed_msg(scene(W, H, sb), sb, frame_id="right"))
        try:
            owl.det_a.wait_for(lambda m: m.header.stamp.sec in stamps, timeout=0.5)
            owl.det_b.wait_for(lambda m: m.header.stamp.sec in stamps, timeout=0.5)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "no result from both cameras"
    a = [m for m in owl.det_a.messages if m.header.stamp.sec in stamps]
    b = [m for m in owl.det_b.messages if m.header.stamp.sec in stamps]
    assert all(stamps[m.header.stamp.sec] == "left" == m.header.frame_id for m in a)
    assert all(stamps[m.header.stamp.sec] == "right" == m.header.frame_id for m in b)
    # frames waiting together are encoded together, then published per camera, each camera's
    # results in its own frame order and with its own latency
    for msgs in (a, b):
        secs = [m.header.stamp.sec for m in msgs]
        assert secs == sorted(secs)
    for topic in (f"{NS}/cam_a/image", f"{NS}/cam_b/image/compressed"):
        stats = owl.camera_stats(topic, lambda v: float(v["latency_p50_ms"]) > 0)
        assert float(stats["latency_p95_ms"]) >= float(stats["latency_p50_ms"]) > 0


def test_parameters_commit_from_rclpy_post_set_callback(owl):
    """This rclpy has the post-set callback (test_node_humble_rclpy.py runs the other path)."""
    assert "no post-set parameter callback" not in owl.proc.output()


def test_set_prompt_applies_to_the_next_frames_and_updates_the_parameter(owl):
    new = "[a red car, a bicycle@0.0]"
    resp = owl.set_prompt(new, {"a red car": 0.0})
    assert resp.success, resp.message
    assert list(resp.labels) == ["image", "a red car", "a bicycle"]
    assert [(n.op, n.input, list(n.outputs)) for n in resp.nodes] == [("detect", 0, [1, 2])]
    assert '"a red car"' in resp.tree_json
    assert owl.get_param("prompt") == new
    assert owl.get_param("label_thresholds") == ["a red car=0"]
    # the parameter update reused the service's state: built once, no second build
    log = wait_for_log(owl.proc, f"prompt set by service: {new!r}")
    assert f"prompt now {new!r}" not in log
    for _ in range(3):
        result = owl.frame()
        assert {d.results[0].hypothesis.class_id for d in result.detections} <= {
            "a red car",
            "a bicycle",
        }
        assert result.detections
    info = owl.info_a.wait_for(lambda m: any(c.class_name == "a red car" for c in m.class_map))
    assert [c.class_name for c in info.class_map] == ["image", "a red car", "a bicycle"]
    assert owl.set_prompt(PROMPT).success


def test_bad_prompt_is_rejected_with_its_column_and_the_old_prompt_stays(owl):
    resp = owl.set_prompt("[a cat, [a dog")
    assert not resp.success
    assert "column" in resp.message and "^" in resp.message, resp.message
    assert owl.get_param("prompt") == PROMPT
    result = owl.frame()
    assert {d.results[0].hypothesis.class_id for d in result.detections} <= labels_of(PROMPT)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("threshold", 1.5, "out of range"),
        ("threshold", "high", "type"),
        ("scoring", "sometimes", "one of independent, exclusive"),
        ("prompt", "[a cat (big", "column"),
        ("prompt", "   ", "must not be empty"),
        ("label_thresholds", ["a cat"], "not 'label=value'"),
        ("label_thresholds", ["a cat=2"], "[0, 1]"),
        ("max_detections", 0, "out of range"),
        ("model", "other/model", "model can change only while the node is unconfigured"),
        ("image_topics", ["x"], "(now active): ros2 lifecycle set"),
        ("autostart", False, "autostart is read at process start only"),
    ],
)
def test_bad_parameter_value_is_rejected_and_nothing_changes(owl, name, value, reason):
    before = owl.get_param(name)
    result = owl.set_param(name, value)
    assert not result.successful
    assert reason in result.reason, result.reason
    assert owl.get_param(name) == before


def test_parameter_changes_take_effect_on_the_next_frame(owl):
    assert owl.set_param("prompt", "[a teapot]").successful
    assert {d.results[0].hypothesis.class_id for d in owl.frame().detections} == {"a teapot"}
    assert owl.set_param("threshold", 1.0).successful  # sigmoid scores never reach 1
    assert owl.frame().detections == []
    assert owl.set_param("threshold", 0.0).successful
    assert owl.set_param("max_detections", 1).successful
    assert len(owl.frame().detections) == 1
    assert owl.set_param("max_detections", 4).successful
    assert owl.set_param("prompt", PROMPT).successful


def test_max_rate_skips_frames_that_come_too_soon(owl):
    topic = f"{NS}/cam_a/image"
    before = int(owl.camera_stats(topic)["frames_rate_limited"])
    assert owl.set_param("max_rate", 0.2).successful  # at most one frame per 5 s
    try:
        deadline = time.monotonic() + 15
        while True:
            stamp = owl.next_stamp()
            owl.pub_a.publish(image_msg(scene(W, H, stamp), stamp))
            try:
                owl.camera_stats(topic, lambda v: int(v["frames_rate_limited"]) > before, 0.3)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "frames_rate_limited never moved"
    finally:
        assert owl.set_param("max_rate", 0.0).successful
    assert owl.frame().detections


BAD_FRAMES = {
    "step_mismatch": dict(width=W, height=H, step=W * 3, data_len=W * 3 * H - 7, encoding="rgb8"),
    "unknown_encoding": dict(width=W, height=H, step=W * 4, data_len=W * 4 * H, encoding="32FC1"),
    "zero_width": dict(width=0, height=H, step=0, data_len=0, encoding="rgb8"),
    "absurd_size": dict(width=200000, height=100000, step=600000, data_len=16, encoding="rgb8"),
}


@pytest.mark.parametrize("kind", [*BAD_FRAMES, "corrupt_jpeg", "empty_png"])
def test_bad_frame_is_dropped_and_counted_and_the_node_lives(owl, kind):
    from sensor_msgs.msg import CompressedImage, Image

    compressed = kind in ("corrupt_jpeg", "empty_png")
    topic = f"{NS}/cam_b/image/compressed" if compressed else f"{NS}/cam_a/image"
    before = int(owl.camera_stats(topic)["frames_bad"])
    if compressed:
        msg = CompressedImage(format="jpeg" if kind == "corrupt_jpeg" else "png")
        msg.data = b"\xff\xd8\xff\xe0 definitely not a jpeg" if kind == "corrupt_jpeg" else b""
        pub = owl.pub_b
    else:
        spec = BAD_FRAMES[kind]
        msg = Image(
            width=spec["width"], height=spec["height"], step=spec["step"], encoding=spec["encoding"]
        )
        msg.data = bytes(spec["data_len"])
        pub = owl.pub_a
    deadline = time.monotonic() + 15
    while True:  # best effort: re-send until the counter moves
        pub.publish(msg)
        try:
            stats = owl.camera_stats(topic, lambda v: int(v["frames_bad"]) > before, timeout=0.6)
            break
        except AssertionError:
            assert time.monotonic() < deadline, f"frames_bad of {topic} never rose above {before}"
    assert stats["last_problem"] != "none"
    assert owl.proc.alive()
    assert owl.frame().detections  # and it still works
    if compressed:
        assert owl.frame(owl.pub_b, owl.det_b, compressed_msg(scene(W, H), 0)).detections


def test_annotated_image_is_published_to_subscribers(owl):
    from sensor_msgs.msg import Image

    from ros2_owl.io.images import message_to_rgb

    annotated = owl.ros.collector(Image, f"{NS}/cam_a/annotated_image")
    owl.ros.wait_until(
        lambda: owl.ros.node.count_subscribers(f"{NS}/cam_a/annotated_image") >= 1, 10, "sub"
    )
    stamp = owl.next_stamp()
    rgb = scene(W, H, stamp)
    owl.ros.publish_until(
        owl.pub_a, image_msg(rgb, stamp), annotated, lambda m: m.header.stamp.sec == stamp, 20
    )
    msg = annotated.wait_for(lambda m: m.header.stamp.sec == stamp)
    out = message_to_rgb(msg)
    assert out.shape == rgb.shape and msg.encoding == "rgb8"
    assert (out != rgb).any(axis=2).mean() > 0.01  # boxes and captions were drawn


def test_diagnostics_report_rates_latency_and_the_model(owl):
    owl.frame()
    stats = owl.camera_stats(
        f"{NS}/cam_a/image",
        lambda v: int(v["frames_processed"]) > 0 and float(v["output_rate_hz"]) > 0.0,
    )
    received, processed = int(stats["frames_received"]), int(stats["frames_processed"])
    assert float(stats["input_rate_hz"]) > 0.0  # the frame arrived inside the rate window
    assert received >= processed >= 1
    assert int(stats["frames_dropped"]) <= received - processed  # nothing counted twice
    assert float(stats["latency_p95_ms"]) >= float(stats["latency_p50_ms"]) > 0.0

    def model_values(msg):
        model = next((s for s in msg.status if s.name == f"{NODE}: model"), None)
        return {} if model is None else {kv.key: kv.value for kv in model.values}

    # a cold cache: torch serves while auto measures in the background; wait for its end
    diag = owl.diag.wait_for(
        lambda m: (
            model_values(m).get("backend_upgrade", "").split(" ")[0] in ("none", "swapped", "kept")
        ),
        timeout=120,
    )
    values = model_values(diag)
    assert "tiny-owlvit" in values["model"] and values["backend"] == "auto"
    # what auto chose and why (measured once, float32 without allow-reduced)
    assert values["backend_choice"].startswith("owl: ") and " float32 (" in values["backend_choice"]
    assert "measured" in values["backend_choice"] or "cache" in values["backend_choice"]


def test_no_frame_warning_names_the_topic_and_qos(owl):
    out = wait_for_log(owl.proc, f"no frame received on {NS}/cam_idle/image", timeout=15)
    line = next(x for x in out.splitlines() if f"{NS}/cam_idle/image" in x and "no frame" in x)
    assert "reliability=best_effort" in line and "depth=5" in line


def test_register_query_then_use_it_in_a_prompt(owl):
    from ros2_owl.srv import RegisterQuery
    from vision_msgs.msg import BoundingBox2D

    req = RegisterQuery.Request(name="mug", image=image_msg(scene(W, H, 3), 0))
    req.bbox = BoundingBox2D(size_x=40.0, size_y=30.0)
    req.bbox.center.position.x, req.bbox.center.position.y = 60.0, 50.0
    resp = owl.ros.call(RegisterQuery, f"{NODE}/register_query", req)
    assert resp.success, resp.message
    assert owl.set_prompt("[$mug, a cat@1]").success  # no score exceeds 1: only $mug can match
    detections = owl.frame().detections
    assert detections and {d.results[0].hypothesis.class_id for d in detections} == {"$mug"}
    bad = RegisterQuery.Request(name="", image=image_msg(scene(W, H, 3), 0))
    assert not owl.ros.call(RegisterQuery, f"{NODE}/register_query", bad).success
    assert owl.set_prompt(PROMPT).success


def test_200_prompt_changes_while_frames_stream_never_mix_prompts(owl):
    prompts = [f"[thing{i} alpha, thing{i} beta]" for i in range(200)]
    valid = {p: {f"thing{i} alpha", f"thing{i} beta"} for i, p in enumerate(prompts)}
    valid[PROMPT] = labels_of(PROMPT) - {"image"}
    owl.tree_a.clear()
    owl.det_a.clear()
    stop = threading.Event()
    first = owl.stamp + 1

    def stream():
        while not stop.is_set():
            stamp = owl.next_stamp()
            owl.pub_a.publish(image_msg(scene(64, 48, stamp % 7), stamp))
            time.sleep(0.01)  # ~100 Hz source pacing, not synchronisation

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        for prompt in prompts:
            assert owl.set_prompt(prompt).success
    finally:
        stop.set()
        streamer.join()
    last = owl.stamp
    owl.frame()  # one more result after the stream: everything before it has arrived
    trees = [m for m in owl.tree_a.messages if first <= m.header.stamp.sec <= last]
    dets = {m.header.stamp.sec: m for m in owl.det_a.messages}
    assert len(trees) >= 20, f"only {len(trees)} results while streaming"
    seen = set()
    for tree in trees:
        assert tree.prompt in valid, tree.prompt
        labels = set(tree.labels) - {"image"}
        assert labels == valid[tree.prompt], (tree.prompt, tree.labels)
        assert {d.class_id for d in tree.detections} <= labels
        det = dets.get(tree.header.stamp.sec)
        if det is not None:
            assert {d.results[0].hypothesis.class_id for d in det.detections} <= labels
        seen.add(tree.prompt)
    assert len(seen) >= 5, f"the stream saw only {len(seen)} prompts"
    assert owl.set_prompt(PROMPT).success
