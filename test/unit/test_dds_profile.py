"""The shipped Fast DDS profile lets 720p camera frames through between processes, where
Fast DDS's default 512 KiB shared-memory segment drops most of them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from fixtures_ros import _import_rclpy, child_env, peer_script

from ros2_owl.ros.dds import large_image_env

PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_shm.xml"


def test_720p_frames_cross_processes_with_the_profile(ros_process):
    """Fast DDS reads its profile once per process, so sender and echo are both peers here."""
    _import_rclpy()
    env = large_image_env(PROFILE)
    if os.environ.get("ROS2_OWL_TEST_NO_PROFILE") == "1":  # manual check that the test has teeth
        env = {name: "" for name in env} | {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    echo = ros_process(
        peer_script("echo.py") + ["sensor_msgs/msg/Image", "cam", "cam_echo", "--sensor-qos"],
        "echo",
        **env,
    )
    burst = subprocess.run(
        peer_script("image_burst.py") + ["cam", "cam_echo", "30", "1280", "720"],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert burst.returncode == 0, burst.stdout + burst.stderr
    result = json.loads(burst.stdout.strip().splitlines()[-1])
    assert echo.alive(), echo.output()
    assert result["first_bytes_ok"], result
    assert result["received"] >= result["sent"] - 2, f"720p frames lost: {result}"
