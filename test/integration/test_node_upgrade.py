"""owl_node with backend auto and a cold cache: detections flow on torch while the background
choice is held at a gate, and the measured winner serves after the swap (real DDS, real ORT)."""

from __future__ import annotations

import os

from peers.owl_support import image_msg, scene, spin_in_background

PROMPT = "[a cat [an ear], a dog] (indoor, outdoor)"


def _model_values(msg, node: str) -> dict[str, str] | None:
    for status in msg.status:
        if status.name == f"{node}: model":
            return {kv.key: kv.value for kv in status.values}
    return None


def _boxes(msg) -> list[tuple[str, float, tuple[float, ...]]]:
    out = []
    for det in msg.detections:
        hyp = det.results[0].hypothesis
        box = det.bbox
        out.append(
            (
                hyp.class_id,
                hyp.score,
                (box.center.position.x, box.center.position.y, box.size_x, box.size_y),
            )
        )
    return out


def _agree(before, after, score=1e-4, px=0.01) -> None:
    """Every detection of the torch frame has its twin after the swap within ORT fp32's drift."""
    assert len(before) == len(after) > 0
    for label, value, box in before:
        assert any(
            label == other
            and abs(value - v) <= score
            and max(abs(a - b) for a, b in zip(box, b2, strict=True)) <= px
            for other, v, b2 in after
        ), (label, value, box)


def test_detections_before_the_background_choice_ends_and_the_swap_after(
    rclpy_context, ros, tiny_owlvit_dir, tiny_clip_dir, tmp_path, monkeypatch, capfd
):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from ros2_owl.backends import auto
    from ros2_owl.backends.upgrade import GATE_ENV
    from ros2_owl.ros.node import OwlNode

    # one candidate: the winner is ONNX Runtime, a real change of backend
    monkeypatch.setattr(auto, "CPU_CANDIDATES", [auto.Candidate("onnxruntime", "float32")])
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    monkeypatch.setenv(GATE_ENV, str(gate))
    rclpy, context = rclpy_context
    ns, name = "/upgrade_test", "/upgrade_test/owl_node"
    node = OwlNode(
        context=context,
        namespace=ns,
        parameter_overrides=[
            Parameter("model", value=str(tiny_owlvit_dir)),
            Parameter("clip_model", value=str(tiny_clip_dir)),
            Parameter("cache_dir", value=str(tmp_path / "cache")),
            Parameter("prompt", value=PROMPT),
            Parameter("threshold", value=0.0),
            Parameter("no_frame_warning", value=0.0),
            Parameter("diagnostics_period", value=0.2),
        ],
    )
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    stop = spin_in_background(executor)
    pub = ros.publisher(Image, f"{ns}/image", qos_profile_sensor_data)
    detections = ros.collector(Detection2DArray, f"{ns}/detections")
    diagnostics = ros.collector(DiagnosticArray, "/diagnostics")
    image = scene()
    try:
        assert node.predictor.owl_encoder.name == "torch"
        ros.wait_for_subscribers(pub)
        first = ros.publish_until(pub, image_msg(image, 1), detections)
        held = diagnostics.wait_for(lambda m: _model_values(m, name) is not None).status
        values = next(s for s in held if s.name == f"{name}: model").values
        upgrade = {kv.key: kv.value for kv in values}
        assert upgrade["backend_upgrade"].startswith("measuring"), upgrade
        assert "interim" in upgrade["backend_choice"], upgrade
        assert node.predictor.owl_encoder.name == "torch"  # still held at the gate
        with open(gate, "wb"):  # let the measurement run
            pass
        swapped = diagnostics.wait_for(
            lambda m: (_model_values(m, name) or {}).get("backend_upgrade", "").startswith("swap"),
            timeout=180,
        )
        assert "onnxruntime" in _model_values(swapped, name)["backend_choice"]
        assert node.predictor.owl_encoder.name == "onnxruntime"
        detections.clear()
        after = ros.publish_until(
            pub, image_msg(image, 2), detections, lambda m: m.header.stamp.sec == 2
        )
        _agree(_boxes(first), _boxes(after))
    finally:
        stop()
        executor.remove_node(node)
        node.destroy_node()
    log = capfd.readouterr().err
    assert "backend upgrade: swapped owl -> onnxruntime, clip -> onnxruntime" in log, log
