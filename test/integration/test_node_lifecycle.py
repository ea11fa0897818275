"""owl_node as a managed node, driven by the real `ros2 lifecycle` CLI: configure fails with the
reason and succeeds after a parameter fix, activate brings frames and detections, deactivate
stops taking frames (models and prompt kept), cleanup frees the models, shutdown ends it."""

from __future__ import annotations

import pytest

NODE = "/lifecycle/owl_node"
RUN = "ros2 run ros2_owl owl_node --ros-args -r __ns:=/lifecycle -p autostart:=false"
README_COMMANDS = [
    "ros2 lifecycle get /owl_node",
    "ros2 lifecycle set /owl_node configure",
    "ros2 lifecycle set /owl_node activate",
    "ros2 lifecycle set /owl_node deactivate",
    "ros2 lifecycle set /owl_node cleanup",
    "ros2 lifecycle set /owl_node shutdown",
]


@pytest.fixture(scope="module")
def managed(ros2_cli, tiny_owlvit_dir, tiny_clip_dir, tmp_path_factory):
    """An owl_node started with autostart:=false and a model path that does not exist."""
    missing = tmp_path_factory.mktemp("models") / "no_such_model"
    proc = ros2_cli.start(
        f"{RUN} -p model:={missing} -p clip_model:={tiny_clip_dir} -p no_frame_warning:=0.0 "
        "-p prompt:=\"'[a person, a car]'\""
    )
    ros2_cli.wait_for_node(proc, NODE)
    yield ros2_cli, proc, missing
    proc.interrupt()


def _state(cli) -> str:
    return cli.run(f"ros2 lifecycle get {NODE}").strip()


def _detections(ros, topic_prefix: str, labels: set[str], timeout: float = 60.0):
    """Publish frames until a Detection2DArray with the labels of this prompt comes back."""
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    collector = ros.collector(Detection2DArray, f"{topic_prefix}/detections")
    pub = ros.publisher(Image, f"{topic_prefix}/image")
    frame = Image(height=120, width=160, encoding="rgb8", step=480, data=bytes(range(256)) * 225)
    ros.wait_for_subscribers(pub, timeout=30)

    def has_labels(msg) -> bool:
        found = {r.hypothesis.class_id for d in msg.detections for r in d.results}
        return bool(found) and found <= labels

    return ros.publish_until(pub, frame, collector, has_labels, timeout=timeout)


def test_readme_shows_the_lifecycle_commands():
    from test_node_cli import README, _one_line

    readme = _one_line(README)
    for command in README_COMMANDS:
        assert command in readme, command


def test_configure_fails_with_the_reason_then_succeeds_after_a_parameter_fix(
    managed, tiny_owlvit_dir
):
    cli, proc, missing = managed
    assert _state(cli) == "unconfigured [1]"
    out = cli.run(f"ros2 lifecycle set {NODE} configure", check=False)
    assert "Transitioning failed" in out, out
    log = proc.wait_for_output("configure failed: could not load the models")
    line = next(x for x in log.splitlines() if "configure failed" in x)
    assert str(missing) in line and "Traceback" not in log, log
    assert _state(cli) == "unconfigured [1]"
    # while unconfigured, model may change (it is refused once configured, below)
    assert cli.run(f"ros2 param set {NODE} model {tiny_owlvit_dir}").strip() == (
        "Set parameter successful"
    )
    assert "Transitioning successful" in cli.run(f"ros2 lifecycle set {NODE} configure")
    assert _state(cli) == "inactive [2]"
    out = cli.run(f"ros2 param set {NODE} model other/model", check=False)
    assert out.startswith("Setting parameter failed: model can change only while the node is")
    assert "unconfigured (now inactive)" in out, out


def test_activate_streams_deactivate_stops_and_keeps_the_prompt(managed, ros):
    cli, proc, _ = managed
    # a prompt change while inactive is encoded now and used at activation
    assert cli.run(f"ros2 param set {NODE} prompt \"'[a cat, a dog]'\"").strip() == (
        "Set parameter successful"
    )
    assert "Transitioning successful" in cli.run(f"ros2 lifecycle set {NODE} activate")
    assert _state(cli) == "active [3]"
    _detections(ros, "/lifecycle", {"a cat", "a dog"})
    assert "Transitioning successful" in cli.run(f"ros2 lifecycle set {NODE} deactivate")
    assert _state(cli) == "inactive [2]"
    # no subscription left: frames are not even received, and the inference thread is gone
    ros.wait_until(
        lambda: ros.node.count_subscribers("/lifecycle/image") == 0, 15, "no image subscriber"
    )
    assert "inactive: no frames taken" in proc.output()
    assert "Transitioning successful" in cli.run(f"ros2 lifecycle set {NODE} activate")
    _detections(ros, "/lifecycle", {"a cat", "a dog"})  # the prompt survived deactivation


def test_cleanup_frees_the_models_and_shutdown_ends_in_finalized(managed, ros):
    from ros2_owl.srv import SetPrompt

    cli, proc, _ = managed
    cli.run(f"ros2 lifecycle set {NODE} deactivate")
    assert "Transitioning successful" in cli.run(f"ros2 lifecycle set {NODE} cleanup")
    assert _state(cli) == "unconfigured [1]"
    assert "unconfigured: models freed" in proc.output()
    # set_prompt while unconfigured: checked (parsed) now, encoded at the next configure.
    # Called through rclpy: `ros2 service call` itself is test_node_cli's (it cannot run on
    # Jazzy's rclpy, see fixtures_cli.SERVICE_CALL_UNSUPPORTED)
    ok = ros.call(SetPrompt, f"{NODE}/set_prompt", SetPrompt.Request(prompt="[a mug]"))
    assert ok.success and list(ok.labels) == ["image", "a mug"], ok
    bad = ros.call(SetPrompt, f"{NODE}/set_prompt", SetPrompt.Request(prompt="[a mug"))
    assert not bad.success and "column" in bad.message, bad
    assert cli.run(f"ros2 param get {NODE} prompt").strip() == "String value is: [a mug]"
    assert "Transitioning successful" in cli.run(f"ros2 lifecycle set {NODE} shutdown")
    assert _state(cli) == "finalized [4]"
    out = cli.run(f"ros2 param set {NODE} threshold 0.3", check=False)
    assert out.startswith("Setting parameter failed: the node is shut down"), out


def _pipeline_threads() -> set[str]:
    import threading

    return {t.name for t in threading.enumerate() if t.name in ("owl_inference", "owl_drawing")}


def test_in_process_states_own_exactly_their_resources(rclpy_context, tiny_owlvit_dir):
    """Without the CLI: deactivate ends the inference and drawing threads and keeps the encoded
    prompt; cleanup lets the predictor be collected; a bad prompt set while unconfigured is
    refused by its column; a failed configure leaves nothing behind and the next one works."""
    import gc
    import weakref

    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from ros2_owl.ros.node import OwlNode

    rclpy, context = rclpy_context
    node = OwlNode(
        context=context,
        namespace="/lifecycle_in_process",
        parameter_overrides=[
            Parameter("autostart", value=False),
            Parameter("model", value=str(tiny_owlvit_dir)),
            Parameter("clip_model", value=""),
            Parameter("prompt", value="[a cat, a dog"),  # broken: configure must fail
            Parameter("no_frame_warning", value=0.0),
        ],
    )
    ok = TransitionCallbackReturn.SUCCESS
    try:
        assert node.phase == "unconfigured" and node.predictor is None
        assert _pipeline_threads() == set()
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.last_error.startswith("prompt parameter: "), node.last_error
        assert node.phase == "unconfigured" and node.predictor is None and node.cameras == []
        (bad,) = node.set_parameters([Parameter("prompt", value="[a cat, (broken")])
        assert not bad.successful and "column 7" in bad.reason
        (fixed,) = node.set_parameters([Parameter("prompt", value="[a cat, a dog]")])
        assert fixed.successful and node.active.state is None  # parsed now, encoded at configure
        assert node.trigger_configure() == ok and node.phase == "inactive"
        state = node.active.state
        assert state is not None and list(state.tree.label_texts) == ["image", "a cat", "a dog"]
        assert node.trigger_activate() == ok
        assert _pipeline_threads() == {"owl_inference", "owl_drawing"}
        assert node.trigger_deactivate() == ok
        assert _pipeline_threads() == set() and node.active.state is state
        predictor = weakref.ref(node.predictor)
        assert node.trigger_cleanup() == ok
        gc.collect()
        assert predictor() is None and node.active.state is None
        assert node.settings.prompt == "[a cat, a dog]"  # the prompt survives cleanup
        assert node.trigger_shutdown() == ok and node.phase == "finalized"
        (late,) = node.set_parameters([Parameter("threshold", value=0.3)])
        assert not late.successful and late.reason == "the node is shut down"
    finally:
        node.destroy_node()
