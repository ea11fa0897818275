"""launch/owl.launch.py: its description builds, and `ros2 launch` with README's arguments starts
the node as configured (real launch, ros2cli; installed by tools/setup.sh from the extras)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ros2_owl.ros.dds import (
    PROFILE_VARIABLE,
    PROFILE_VARIABLE_FAST_DDS_2,
    fast_dds_major,
    profile_variables,
)

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "launch" / "owl.launch.py"


def test_launch_file_is_valid_python():
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")


def test_launch_description_declares_its_arguments_and_the_node():
    pytest.importorskip("launch")
    pytest.importorskip("launch_ros")
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location("owl_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert {
        "namespace",
        "params_file",
        "image_topics",
        "prompt",
        "model",
        "large_images",
        "autostart",
        "use_sim_time",
        "log_level",
        "target_frame",
        "publish_markers",
    } <= declared
    context = LaunchContext()
    context.launch_configurations.update(
        {name: "" for name in declared}
        | {"params_file": str(LAUNCH_FILE.parents[1] / "config" / "owl.yaml")}
        | {"image_topics": "left/image, right/image/compressed", "prompt": "[a mug]"}
    )
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    (node,) = opaque.execute(context)
    assert node.node_package == "ros2_owl" and node.node_executable == "owl_node"


LAUNCH = "ros2 launch ros2_owl owl.launch.py"
README = (LAUNCH_FILE.parents[1] / "README.md").read_text()
README_LAUNCH = (
    f"{LAUNCH} namespace:=robot image_topics:=front/image_raw,rear/image_raw "
    "camera_names:=front,rear params_file:=robot.yaml "
    '"prompt:=[a person [a face, a hand] (standing, sitting), a forklift]" large_images:=true'
)


def _node_pid(launch_proc) -> int:
    """The owl_node process launch started (a child of the launch process)."""
    import psutil

    for child in psutil.Process(launch_proc.proc.pid).children(recursive=True):
        if any("owl_node" in part for part in child.cmdline()[:3]):
            return child.pid
    raise AssertionError(f"no owl_node child of launch:\n{launch_proc.output()}")


def test_launch_with_all_arguments(ros2_cli, tiny_owlvit_dir, tiny_clip_dir, tmp_path):
    """namespace, two cameras with names, a params_file, a prompt with commas and brackets and
    large_images, as README shows them; then Ctrl-C ends launch and node cleanly."""
    params = tmp_path / "robot.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    threshold: 0.25\n    max_regions: 3\n"
        "    no_frame_warning: 0.0\n"
    )
    assert README_LAUNCH in " ".join(README.replace("\\\n", " ").split()), "README differs"
    command = (
        README_LAUNCH.replace("robot.yaml", str(params))
        + f" model:={tiny_owlvit_dir} clip_model:={tiny_clip_dir}"
    )
    proc = ros2_cli.start(command)
    ros2_cli.wait_for_node(proc, "/robot/owl_node")
    get = "ros2 param get /robot/owl_node "
    assert ros2_cli.run(get + "prompt").strip() == (
        "String value is: [a person [a face, a hand] (standing, sitting), a forklift]"
    )
    assert ros2_cli.run(get + "image_topics").strip() == (
        "String values are: ['front/image_raw', 'rear/image_raw']"
    )
    assert ros2_cli.run(get + "camera_names").strip() == "String values are: ['front', 'rear']"
    assert ros2_cli.run(get + "threshold").strip() == "Double value is: 0.25"  # params_file
    assert ros2_cli.run(get + "max_regions").strip() == "Integer value is: 3"
    topics = set(ros2_cli.run("ros2 topic list").split())
    assert {
        "/robot/front/image_raw",
        "/robot/rear/image_raw",
        "/robot/front/detections",
        "/robot/rear/detections",
        "/robot/front/label_info",
    } <= topics, topics
    environ = Path(f"/proc/{_node_pid(proc)}/environ").read_bytes().split(b"\0")
    assert b"ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT" in environ
    # the names this distribution's Fast DDS reads: Kilted's 3.x only the new one (the old one
    # would make rmw_fastrtps warn that it is deprecated), 2.x (Jazzy) both
    wanted = profile_variables(fast_dds_major())
    for name in (PROFILE_VARIABLE, PROFILE_VARIABLE_FAST_DDS_2):
        profile = [e for e in environ if e.startswith(name.encode() + b"=")]
        if name in wanted:
            assert profile and profile[0].endswith(b"share/ros2_owl/config/fastdds_large_shm.xml")
        else:
            assert not profile, profile

    # Ctrl-C in the terminal: launch and the node both get SIGINT, and launch forwards another
    code = proc.interrupt()
    out = proc.output()
    assert code == 0, out
    assert "process has finished cleanly" in out, out
    assert "process has died" not in out and "Traceback" not in out, out
    if PROFILE_VARIABLE_FAST_DDS_2 not in wanted:  # Fast DDS 3: no deprecation warning
        assert PROFILE_VARIABLE_FAST_DDS_2 not in out, out


def test_launch_refuses_a_bad_prompt_with_one_line(ros2_cli, tiny_owlvit_dir, tiny_clip_dir):
    proc = ros2_cli.start(
        f'{LAUNCH} namespace:=bad "prompt:=[a cat, (broken" '
        f"model:={tiny_owlvit_dir} clip_model:={tiny_clip_dir}"
    )
    code = proc.proc.wait(180)
    out = proc.output()
    assert code != 0 or "process has died" in out, out
    assert "owl_node: cannot start: prompt parameter:" in out, out
    assert "Traceback" not in out, out


def test_launch_with_autostart_false_leaves_the_node_to_ros2_lifecycle(
    ros2_cli, tiny_owlvit_dir, tiny_clip_dir
):
    proc = ros2_cli.start(
        f"{LAUNCH} namespace:=managed autostart:=false "
        f"model:={tiny_owlvit_dir} clip_model:={tiny_clip_dir}"
    )
    ros2_cli.wait_for_node(proc, "/managed/owl_node")
    assert ros2_cli.run("ros2 lifecycle get /managed/owl_node").strip() == "unconfigured [1]"
    out = ros2_cli.run("ros2 lifecycle set /managed/owl_node configure")
    assert "Transitioning successful" in out, out
    assert ros2_cli.run("ros2 lifecycle get /managed/owl_node").strip() == "inactive [2]"
    assert proc.interrupt() == 0


README_LAUNCH_3D = (
    f'{LAUNCH} prompt:="[a person [a face], a cup]" tracking:=true '
    "image_topics:=/camera/color/image_raw "
    "depth_topics:=/camera/aligned_depth_to_color/image_raw "
    "camera_info_topics:=/camera/color/camera_info"
)


def test_launch_with_tracking_and_depth_as_readme_shows(ros2_cli, tiny_owlvit_dir, tiny_clip_dir):
    """README's one launch line that turns on track ids and 3D: the node gets the settings and
    subscribes to depth and CameraInfo, publishing detections_3d."""
    assert README_LAUNCH_3D in " ".join(README.replace("\\\n", " ").split()), "README differs"
    proc = ros2_cli.start(
        README_LAUNCH_3D
        + f" namespace:=tracked model:={tiny_owlvit_dir} clip_model:={tiny_clip_dir}"
    )
    ros2_cli.wait_for_node(proc, "/tracked/owl_node")
    get = "ros2 param get /tracked/owl_node "
    assert ros2_cli.run(get + "tracking").strip() == "Boolean value is: True"
    assert ros2_cli.run(get + "depth_topics").strip() == (
        "String values are: ['/camera/aligned_depth_to_color/image_raw']"
    )
    topics = set(ros2_cli.run("ros2 topic list").split())
    assert {
        "/camera/aligned_depth_to_color/image_raw",
        "/camera/color/camera_info",
        "/tracked/detections_3d",
    } <= topics, topics
    assert proc.interrupt() == 0


README_LAUNCH_ROBOT = (
    f"{LAUNCH} namespace:=sim use_sim_time:=true log_level:=debug target_frame:=base_link "
    "publish_markers:=true publish_image_annotations:=true prompt_topic:=prompt "
    "depth_topics:=depth"
)


def test_launch_with_sim_time_log_level_and_robot_outputs(ros2_cli, tiny_owlvit_dir, tiny_clip_dir):
    """README's robot launch line: sim time and the log level reach the node, and so do the
    robot outputs (their topics appear); a bad log_level is refused with one line."""
    assert README_LAUNCH_ROBOT in " ".join(README.replace("\\\n", " ").split()), "README differs"
    proc = ros2_cli.start(
        README_LAUNCH_ROBOT + f" model:={tiny_owlvit_dir} clip_model:={tiny_clip_dir}"
    )
    ros2_cli.wait_for_node(proc, "/sim/owl_node")
    get = "ros2 param get /sim/owl_node "
    assert ros2_cli.run(get + "use_sim_time").strip() == "Boolean value is: True"
    assert ros2_cli.run(get + "target_frame").strip() == "String value is: base_link"
    topics = set(ros2_cli.run("ros2 topic list").split())
    assert {"/sim/markers", "/sim/image_annotations", "/sim/prompt", "/tf", "/tf_static"} <= topics
    assert "/sim/owl_node/prompt_status" in topics, topics
    assert proc.interrupt() == 0
    out = proc.output()
    assert "[DEBUG]" in out and "Traceback" not in out, out[-3000:]
    bad = ros2_cli.start(f"{LAUNCH} namespace:=bad_level log_level:=loud model:={tiny_owlvit_dir}")
    code = bad.proc.wait(120)
    out = bad.output()
    assert code != 0 and "log_level 'loud': use one of debug, info, warn, error, fatal" in out, out
    assert "Traceback" not in out, out
