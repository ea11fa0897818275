"""owl_node with backend triton over real DDS and a real Triton server (gRPC on localhost).

The node's detections equal the local onnxruntime predictor's on the same frame; killing the
server mid-stream counts frames as inference errors while the node stays up, and after a restart
on the same port the node answers frames again by itself; a server down at start is one line.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fixtures_ros import RosHarness, RosProcess, _import_rclpy, child_env
from fixtures_triton import free_port, start_server
from peers.owl_support import (
    camera_values,
    image_msg,
    owl_node_args,
    scene,
    wait_for_service_or_exit,
)

from ros2_owl.core.predictor import PredictorConfig, TreePredictor

NS = "/owl_triton"
NODE = f"{NS}/owl_node"
TOPIC = f"{NS}/cam/image"
PROMPT = "[a cat [an ear], a dog] (indoor, outdoor)"
W, H = 160, 120
SCORE_TOL, BOX_TOL_PX = 1e-4, 1e-2  # test_predictor_backends's tolerances


def node_args(url: str, models, ns: str = NS, **extra):
    owlvit, clip = models
    return owl_node_args(
        ns, model=owlvit, clip_model=clip, prompt=f'"{PROMPT}"', threshold=0.0, max_detections=100, nms_iou=0.3,
        max_regions=2, image_topics=["cam/image"], diagnostics_period=0.25, backend="triton",
        triton_url=url, triton_timeout=5.0, **extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(
    rclpy_context, triton_python, triton_repo, tiny_owlvit_dir, tiny_clip_dir, tmp_path_factory
):
    """(server, node process, probe harness)."""
    rclpy, context = rclpy_context
    _import_rclpy()
    logs = tmp_path_factory.mktemp("owl_triton")
    server = start_server(triton_python, triton_repo, logs / "triton.log")
    proc = RosProcess(node_args(server.url, (tiny_owlvit_dir, tiny_clip_dir)), logs / "node.log",
                      child_env())  # fmt: skip
    harness = RosHarness(rclpy, context, "probe_triton")
    try:
        wait_for_service_or_exit(harness.node, proc, f"{NODE}/set_prompt")
        yield server, proc, harness
    finally:
        harness.close()
        code = proc.stop()
        server.stop()
        assert code == 0, f"owl_node exited {code} on SIGINT:\n{proc.output()[-3000:]}"


class Stream:
    """Publishes numbered frames and collects detections and diagnostics."""

    def __init__(self, harness, ns: str = NS):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        self.ros = harness
        self.pub = harness.publisher(Image, f"{ns}/cam/image", qos_profile_sensor_data)
        self.det = harness.collector(Detection2DArray, f"{ns}/detections")  # 1 camera: no prefix
        self.diag = harness.collector(DiagnosticArray, "/diagnostics")
        self.stamp = 0

    def frame(self, rgb, timeout=30.0):
        self.stamp += 1
        stamp = self.stamp
        return self.ros.publish_until(
            self.pub, image_msg(rgb, stamp), self.det, lambda m: m.header.stamp.sec == stamp,
            timeout,
        )  # fmt: skip

    def model_values(self, predicate, timeout=30.0) -> dict[str, str]:
        def values(msg):
            status = next((s for s in msg.status if s.name == f"{NODE}: model"), None)
            return {kv.key: kv.value for kv in status.values} if status else None

        msg = self.diag.wait_for(
            lambda m: (v := values(m)) is not None and predicate(v), timeout=timeout
        )
        return values(msg)

    def camera(self, predicate, timeout=30.0) -> dict[str, str]:
        match = lambda m: (v := camera_values(m, TOPIC)) is not None and predicate(v)  # noqa: E731
        return camera_values(self.diag.wait_for(match, timeout=timeout), TOPIC)


def test_node_detections_equal_local_onnxruntime(
    stack, tiny_owlvit_dir, tiny_clip_dir, model_cache_dir
):
    _, proc, harness = stack
    stream = Stream(harness)
    rgb = scene(W, H, seed=7)
    got = stream.frame(rgb)
    local = TreePredictor.from_pretrained(
        str(tiny_owlvit_dir), clip_model=str(tiny_clip_dir), backend="onnxruntime",
        cache_dir=str(model_cache_dir / "artefacts"),
        config=PredictorConfig(threshold=0.0, max_detections=100, nms_iou=0.3, max_regions=2),
    )  # fmt: skip
    want = local.predict(rgb, local.prepare(PROMPT))
    assert len(got.detections) == len(want.detections) > 0
    assert any(d.parent_id for d in want.detections)  # the nested level ran on the server too
    for msg, det in zip(got.detections, want.detections, strict=True):
        hyp = msg.results[0].hypothesis
        assert hyp.class_id == det.label and abs(hyp.score - det.score) <= SCORE_TOL
        x0, y0, x1, y1 = det.box
        box = (msg.bbox.center.position.x, msg.bbox.center.position.y, msg.bbox.size_x,
               msg.bbox.size_y)  # fmt: skip
        expected = ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
        assert np.abs(np.subtract(box, expected)).max() <= BOX_TOL_PX
    values = stream.model_values(lambda v: int(v.get("triton_requests", "0")) > 0)
    assert values["backend"] == "triton" and values["triton_state"] == "ok"
    assert values["triton_wire_dtype"] == "uint8"
    assert proc.alive()


def test_adaptive_region_resolution_is_rejected_live_with_the_reason(stack):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    _, proc, harness = stack
    param = Parameter("region_resolution", value="adaptive").to_parameter_msg()
    req = SetParameters.Request(parameters=[param])
    result = harness.call(SetParameters, f"{NODE}/set_parameters", req).results[0]
    assert not result.successful
    assert result.reason.startswith("region_resolution 'adaptive' needs a local backend")
    assert "\n" not in result.reason
    assert Stream(harness).frame(scene(W, H, seed=4)).detections  # unchanged, still answering
    assert proc.alive()


def test_adaptive_region_resolution_at_start_is_one_line(
    stack, tiny_owlvit_dir, tiny_clip_dir, tmp_path
):
    server = stack[0]
    args = node_args(server.url, (tiny_owlvit_dir, tiny_clip_dir), ns="/owl_triton_adaptive",
                     region_resolution="adaptive")  # fmt: skip
    proc = RosProcess(args, tmp_path / "node.log", child_env())
    try:
        proc.proc.wait(timeout=180)
    finally:
        code = proc.stop()
    out = proc.output()
    assert code == 2, out
    lines = [x for x in out.splitlines() if "cannot start" in x]
    assert len(lines) == 1 and "region_resolution 'adaptive' needs a local backend" in lines[0]
    assert "Traceback" not in out


def test_server_killed_mid_stream_then_restarted_node_recovers(stack):
    server, proc, harness = stack
    stream = Stream(harness)
    stream.frame(scene(W, H, seed=1))
    errors_before = int(stream.camera(lambda v: True)["inference_errors"])
    stop = threading.Event()

    def publish():  # a camera that keeps streaming through the outage
        stamp = 10_000
        while not stop.wait(0.1):
            stamp += 1
            stream.pub.publish(image_msg(scene(W, H, seed=stamp % 5), stamp))

    feeder = threading.Thread(target=publish, daemon=True)
    feeder.start()
    try:
        server.kill()
        failed = stream.camera(lambda v: int(v["inference_errors"]) > errors_before + 1)
        assert "Triton" in failed["last_problem"] and server.url in failed["last_problem"]
        stream.model_values(lambda v: v["triton_state"] != "ok")
        assert proc.alive()
        server.start()  # the same port
        stream.model_values(lambda v: int(v["triton_recoveries"]) >= 1, timeout=90)
    finally:
        stop.set()
        feeder.join(timeout=5)
    assert stream.frame(scene(W, H, seed=2)).detections  # answers frames again
    assert proc.alive()


def test_server_down_at_start_is_one_line_naming_the_url(tiny_owlvit_dir, tiny_clip_dir, tmp_path):
    url = f"localhost:{free_port()}"
    args = node_args(url, (tiny_owlvit_dir, tiny_clip_dir), ns="/owl_triton_down")
    proc = RosProcess(args, tmp_path / "node.log", child_env())
    try:
        proc.proc.wait(timeout=180)
    finally:
        code = proc.stop()
    out = proc.output()
    assert code == 2, out
    lines = [x for x in out.splitlines() if "cannot start" in x]
    assert len(lines) == 1 and url in lines[0] and "Triton server at" in lines[0]
    assert "Traceback" not in out


def test_server_down_at_start_with_fallback_runs_locally(
    rclpy_context, tiny_owlvit_dir, tiny_clip_dir, tmp_path
):
    rclpy, context = rclpy_context
    url = f"localhost:{free_port()}"
    ns = "/owl_triton_fallback"
    args = node_args(url, (tiny_owlvit_dir, tiny_clip_dir), ns=ns, triton_fallback="local")
    proc = RosProcess(args, tmp_path / "node.log", child_env())
    harness = RosHarness(rclpy, context, "probe_triton_fallback")
    try:
        wait_for_service_or_exit(harness.node, proc, f"{ns}/owl_node/set_prompt")
        assert Stream(harness, ns).frame(scene(W, H, seed=3)).detections
        out = proc.output()
        assert url in out and "triton_fallback: local" in out
    finally:
        harness.close()
        assert proc.stop() == 0
