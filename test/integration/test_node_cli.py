"""README's `ros2 run` / `ros2 service` / `ros2 param` / `ros2 topic` commands, run verbatim with
the real ros2 executable against owl_node (tiny random models), and what they print."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

import pytest
import yaml
from fixtures_cli import SERVICE_CALL_UNSUPPORTED

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()

RUN = (
    "ros2 run ros2_owl owl_node --ros-args --params-file config/owl.yaml "
    "-p prompt:=\"'[a person [a face, a hand] (standing, sitting)]'\" -r image:=/camera/image_raw"
)
SET_PROMPT = "ros2 service call /owl_node/set_prompt ros2_owl/srv/SetPrompt \"{prompt: '[a person [a face]]'}\""
SET_PROMPT_THRESHOLDS = (
    "ros2 service call /owl_node/set_prompt ros2_owl/srv/SetPrompt "
    "\"{prompt: '[a person, a forklift]', thresholds: [{label: 'a forklift', threshold: 0.3}]}\""
)
SET_PROMPT_BAD = (
    "ros2 service call /owl_node/set_prompt ros2_owl/srv/SetPrompt \"{prompt: '[a cat, (broken'}\""
)
PARAM_SET = "ros2 param set /owl_node threshold 0.2"
PARAM_GET = "ros2 param get /owl_node threshold"
PARAM_SET_BAD = "ros2 param set /owl_node threshold 1.5"
PARAM_SET_READ_ONLY = "ros2 param set /owl_node model other/model"
PARAM_SET_PROMPT = "ros2 param set /owl_node prompt \"'[a person (standing, sitting)]'\""
PARAM_SET_PROMPT_BAD = "ros2 param set /owl_node prompt \"'[a cat, (broken'\""
PARAM_DUMP = "ros2 param dump /owl_node"
ECHO = "ros2 topic echo --once /detections"
DETECT = (
    "ros2 service call /owl_node/detect ros2_owl/srv/Detect "
    "\"{prompt: '[a red mug]', timeout: 10.0}\""
)
DETECT_BAD = "ros2 service call /owl_node/detect ros2_owl/srv/Detect \"{prompt: '[a red mug]', camera: '3'}\""
PROMPT_PUB = "ros2 topic pub --once /prompt std_msgs/msg/String \"{data: '[a person, a mug]'}\""
PROMPT_STATUS = "ros2 topic echo --once /owl_node/prompt_status"
README_COMMANDS = [
    RUN,
    SET_PROMPT,
    SET_PROMPT_THRESHOLDS,
    SET_PROMPT_BAD,
    PARAM_SET,
    PARAM_GET,
    PARAM_SET_BAD,
    PARAM_SET_READ_ONLY,
    PARAM_SET_PROMPT,
    PARAM_SET_PROMPT_BAD,
    PARAM_DUMP,
    ECHO,
    DETECT,
    DETECT_BAD,
    PROMPT_PUB,
    PROMPT_STATUS,
]


def _one_line(text: str) -> str:
    """README writes long commands over lines with `\\`; compare them as one line."""
    return re.sub(r"\s+", " ", text.replace("\\\n", " "))


def test_readme_shows_exactly_these_commands():
    readme = _one_line(README)
    for command in README_COMMANDS:
        assert command in readme, f"README does not show: {command}"


@pytest.fixture(scope="module")
def owl_run(ros2_cli, tiny_owlvit_dir, tiny_clip_dir):
    """README's `ros2 run` line (plus the tiny test models), listed by `ros2 node list`."""
    proc = ros2_cli.start(
        f"{RUN} -p model:={tiny_owlvit_dir} -p clip_model:={tiny_clip_dir} -p no_frame_warning:=0.0"
        " -p prompt_topic:=prompt"
    )
    ros2_cli.wait_for_node(proc, "/owl_node")
    yield ros2_cli, proc
    code = proc.interrupt()
    out = proc.output()
    assert code == 0 and "Traceback" not in out, f"exit {code}:\n{out}"


def test_run_with_params_file_and_quoted_prompt(owl_run):
    cli, _ = owl_run
    out = cli.run("ros2 param get /owl_node prompt")
    assert out.strip() == "String value is: [a person [a face, a hand] (standing, sitting)]"
    out = cli.run("ros2 param get /owl_node image_topics")  # -r image:=/camera/image_raw
    assert out.strip() == "String values are: ['image']"
    assert "/camera/image_raw" in cli.run("ros2 topic list")
    assert cli.run("ros2 param get /owl_node max_regions").strip() == "Integer value is: 8"


@pytest.mark.skipif(bool(SERVICE_CALL_UNSUPPORTED), reason=SERVICE_CALL_UNSUPPORTED)
def test_set_prompt_service_accepted_and_refused(owl_run):
    cli, _ = owl_run
    out = cli.run(SET_PROMPT)
    assert "ros2_owl.srv.SetPrompt_Response(success=True, message='ok'" in out, out
    assert "labels=['image', 'a person', 'a face']" in out, out
    out = cli.run(SET_PROMPT_THRESHOLDS)
    assert "success=True" in out and "labels=['image', 'a person', 'a forklift']" in out, out
    assert "String values are: ['a forklift=0.3']" in cli.run(
        "ros2 param get /owl_node label_thresholds"
    )
    out = cli.run(SET_PROMPT_BAD)
    assert "ros2_owl.srv.SetPrompt_Response(success=False, message=" in out, out
    assert "empty label at column 7" in out, out
    assert "[a person, a forklift]" in cli.run("ros2 param get /owl_node prompt")


def test_param_set_get_valid_and_refused(owl_run):
    cli, _ = owl_run
    assert cli.run(PARAM_SET).strip() == "Set parameter successful"
    assert cli.run(PARAM_GET).strip() == "Double value is: 0.2"
    out = cli.run(PARAM_SET_BAD, check=False)
    assert out.startswith("Setting parameter failed"), out
    assert "threshold" in out and "out of range" in out.lower() or "range" in out, out
    assert cli.run(PARAM_GET).strip() == "Double value is: 0.2"
    out = cli.run(PARAM_SET_READ_ONLY, check=False)
    assert out.startswith("Setting parameter failed"), out
    assert "model can change only while the node is unconfigured (now active)" in out, out
    assert cli.run(PARAM_SET_PROMPT).strip() == "Set parameter successful"
    out = cli.run(PARAM_SET_PROMPT_BAD, check=False)
    assert out.startswith("Setting parameter failed"), out
    assert "column" in out, out
    out = cli.run("ros2 param get /owl_node prompt")
    assert out.strip() == "String value is: [a person (standing, sitting)]"


def test_param_dump_lists_every_parameter(owl_run):
    from ros2_owl.ros.params import PARAMS

    cli, _ = owl_run
    out = cli.run(PARAM_DUMP)
    dumped = yaml.safe_load(out)["/owl_node"]["ros__parameters"]
    assert {spec.name for spec in PARAMS} <= set(dumped), out
    assert dumped["camera_names"] == []
    assert dumped["max_regions"] == 8


@contextlib.contextmanager
def camera_stream(ros):
    """A 5 Hz camera on /camera/image_raw (frame id echo_cam) while the block runs."""
    from sensor_msgs.msg import Image

    pub = ros.publisher(Image, "/camera/image_raw")
    frame = Image(height=120, width=160, encoding="rgb8", step=480, data=bytes(160 * 120 * 3))
    frame.header.frame_id = "echo_cam"
    stop = threading.Event()

    def stream():
        while not stop.wait(0.2):
            pub.publish(frame)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        yield
    finally:
        stop.set()
        streamer.join(5)


def test_topic_echo_once_prints_detections_while_images_stream(owl_run, ros):
    cli, _ = owl_run
    with camera_stream(ros):  # until the echo has printed one message
        out = cli.run(ECHO, timeout=120)
    assert "frame_id: echo_cam" in out, out
    assert "detections:" in out and out.rstrip().endswith("---"), out


@pytest.mark.skipif(bool(SERVICE_CALL_UNSUPPORTED), reason=SERVICE_CALL_UNSUPPORTED)
def test_detect_service_once_on_the_newest_frame(owl_run, ros):
    cli, _ = owl_run
    prompt = cli.run("ros2 param get /owl_node prompt")
    with camera_stream(ros):
        out = cli.run(DETECT, timeout=120)
        bad = cli.run(DETECT_BAD, timeout=60)
    assert "ros2_owl.srv.Detect_Response(success=True, message='ok'" in out, out
    assert "frame_id='echo_cam'" in out and "class_id='a red mug'" in out, out
    assert "has_3d=False" in out, out
    assert "success=False, message=\"camera '3' names no camera (cameras: 0: image)\"" in bad, bad
    assert cli.run("ros2 param get /owl_node prompt") == prompt  # the stream's is untouched


def test_prompt_topic_sets_the_prompt_and_answers_on_prompt_status(owl_run):
    cli, _ = owl_run
    before = cli.run("ros2 param get /owl_node prompt")
    out = cli.run(PROMPT_PUB, timeout=60)
    assert "publishing #1: std_msgs.msg.String(data='[a person, a mug]')" in out, out
    status = cli.run(PROMPT_STATUS, timeout=60)
    assert status.startswith("data: 'ok: prompt now ''[a person, a mug]'''"), status
    assert cli.run("ros2 param get /owl_node prompt").strip() == (
        "String value is: [a person, a mug]"
    ), before
