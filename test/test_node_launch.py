"""launch/owl.launch.py builds where `launch` and `launch_ros` import (skipped on this machine:
neither is installable from PyPI); the node itself is tested without launch in test_node.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "owl.launch.py"


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
