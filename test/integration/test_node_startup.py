"""owl_node refuses to start on bad set-up: exit code 2 and a message that says what to fix."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from fixtures_ros import _import_rclpy, child_env
from peers.owl_support import compressed_msg, owl_node_args, scene


def _start(tmp_path, name: str, *extra_args: str, **params) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "w+b")  # noqa: SIM115  read back in _finish
    params.setdefault("no_frame_warning", 0.0)
    proc = subprocess.Popen(
        owl_node_args(f"/startup_{name}", **params) + list(extra_args),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(HF_HUB_OFFLINE="1"),  # a hub id fails at once instead of retrying
    )
    proc.log = log
    return proc


def _finish(proc: subprocess.Popen, timeout: float = 120.0) -> tuple[int, str]:
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    proc.log.seek(0)
    out = proc.log.read().decode(errors="replace")
    proc.log.close()
    return code, out


def test_bad_setups_exit_2_with_a_clear_message(tmp_path, tiny_owlvit_dir, tiny_clip_dir):
    """All cases start at once (each process pays the torch import), then are checked in turn."""
    _import_rclpy()
    models = {"model": tiny_owlvit_dir, "clip_model": tiny_clip_dir}
    missing = tmp_path / "no_such_model"
    cases = {
        "missing_model": (
            {"model": missing, "clip_model": tiny_clip_dir},
            ["could not load the models", str(missing)],
        ),
        "unknown_hub_id": (
            {"model": "nobody/no-such-owl", "clip_model": tiny_clip_dir},
            ["could not load the models", "nobody/no-such-owl"],
        ),
        "bad_prompt": ({**models, "prompt": '"[a cat, (big"'}, ["prompt parameter", "column"]),
        "out_of_range": ({**models, "threshold": 3.0}, ["threshold", "out of range"]),
        "ambiguous_outputs": (
            {**models, "image_topics": ["left_image", "right_image"]},
            ["camera_names"],
        ),
        # rcl keeps a params-file value when -p gives another type: no params file here
        "wrong_type": (
            {**models, "params_file": None, "threshold": 1},
            ["invalid parameter value", "threshold", "expecting type 'DOUBLE'"],
        ),
    }
    procs = {name: _start(tmp_path, name, **params) for name, (params, _) in cases.items()}
    _check_exit_2_and_one_line(procs, {name: expected for name, (_, expected) in cases.items()})


def _check_exit_2_and_one_line(procs: dict, expected: dict, only_line: bool = False) -> None:
    """Each process exits 2 with the expected texts and no traceback; `only_line`: its whole
    output is that one line."""
    failures = []
    for name, proc in procs.items():
        code, out = _finish(proc)
        if code != 2 or not all(text in out for text in expected[name]):
            failures.append(
                f"{name}: exit {code}, wanted 2 and {expected[name]} in:\n{out[-2000:]}"
            )
        elif "Traceback" in out:
            failures.append(f"{name}: a traceback instead of a message:\n{out[-2000:]}")
        elif only_line and len(out.strip().splitlines()) != 1:
            failures.append(f"{name}: more than one line:\n{out[-2000:]}")
    assert not failures, "\n\n".join(failures)


def test_bad_ros_arguments_and_params_files_exit_2_with_one_line(tmp_path):
    """rcl rejects these inside rclpy.init (before the models): one line each, exit 2."""
    _import_rclpy()
    mixed = tmp_path / "mixed.yaml"  # rcl allows no sequence of mixed types
    mixed.write_text("/**:\n  ros__parameters:\n    image_topics: [image, 3]\n")
    nested = tmp_path / "nested.yaml"  # a list of lists: no ROS parameter type
    nested.write_text("/**:\n  ros__parameters:\n    prompt: [[1, 2]]\n")
    missing = tmp_path / "no_such_params.yaml"
    cases = {
        "empty_override": (
            {"clip_model": ""},  # -p clip_model:=
            (),
            ["cannot start: bad ROS arguments", "parameter override rule", "'-p clip_model:='"],
        ),
        "missing_params_file": (
            {"params_file": missing},
            (),
            ["bad ROS arguments", "params file", str(missing), "Error opening YAML file"],
        ),
        "mixed_sequence": ({"params_file": mixed}, (), ["params file", "same type"]),
        "unsupported_type": (
            {"params_file": nested},
            (),
            ["cannot start: invalid parameter value", "prompt", "expecting type 'STRING'"],
        ),
        "unknown_argument": ({}, ("--no-such-flag",), ["unknown ROS arguments", "--no-such-flag"]),
    }
    procs = {
        name: _start(tmp_path, name, *extra, autostart=False, **params)
        for name, (params, extra, _) in cases.items()
    }
    _check_exit_2_and_one_line(procs, {n: c[2] for n, c in cases.items()}, only_line=True)


def test_a_second_sigint_during_shutdown_is_harmless(tmp_path, tiny_owlvit_dir, tiny_clip_dir):
    """Ctrl-C under `ros2 launch` reaches the node twice; the second used to interrupt
    destroy_node() with a KeyboardInterrupt traceback and exit code -2."""
    import signal
    import time

    _import_rclpy()
    args = owl_node_args(
        "/startup_sigint", model=tiny_owlvit_dir, clip_model=tiny_clip_dir, no_frame_warning=0.0
    )
    args[1] = str(Path(__file__).parents[1] / "peers" / "owl_node_second_sigint.py")
    log = open(tmp_path / "sigint.log", "w+b")  # noqa: SIM115  read back in _finish
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=child_env())
    proc.log = log
    deadline = time.monotonic() + 120
    while b"ready:" not in (tmp_path / "sigint.log").read_bytes():
        assert proc.poll() is None and time.monotonic() < deadline, _finish(proc)
        time.sleep(0.05)  # polling a log file: there is no event to wait on
    proc.send_signal(signal.SIGINT)
    code, out = _finish(proc, timeout=30)
    assert "second SIGINT sent during teardown" in out, out
    assert code == 0 and "Traceback" not in out and "KeyboardInterrupt" not in out, out


def test_ctrl_c_during_inference_is_silent_and_exits_0(
    tmp_path, ros, ros_process, tiny_owlvit_dir, tiny_clip_dir
):
    """SIGINT while the worker is busy with large frames (each takes a while to resize): the
    node stops its worker before the context goes, so no false warning, no traceback, exit 0."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage
    from vision_msgs.msg import Detection2DArray

    ns = "/shutdown_test"
    args = owl_node_args(
        ns,
        model=tiny_owlvit_dir,
        clip_model=tiny_clip_dir,
        prompt='"[a cat [an ear]] (indoor, outdoor)"',
        threshold=0.0,
        no_frame_warning=0.0,
        image_topics=["image/compressed"],
        input_reliability="reliable",
    )
    proc = ros_process(args, "owl_node")
    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub = ros.publisher(CompressedImage, f"{ns}/image/compressed", reliable)
    results = ros.collector(Detection2DArray, f"{ns}/detections")
    big = compressed_msg(scene(3840, 2160, seed=1), 1)  # decode + resize: a busy worker
    ros.wait_for_subscribers(pub, timeout=120)
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            pub.publish(big)
            stop.wait(0.02)  # source pacing; the node keeps only the newest frame

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        results.wait_for(timeout=120)  # the worker is now busy frame after frame
        code = proc.stop(timeout=30)
    finally:
        stop.set()
        streamer.join()
    out = proc.output()
    assert code == 0, out[-3000:]
    for noise in ("inference failed", "Traceback", "WARN", "ERROR", "context is invalid"):
        assert noise not in out, f"{noise!r} on a clean stop:\n{out[-3000:]}"
