"""test/fixtures/vision_msgs (the fallback where no real vision_msgs can be installed) has the
real package's messages, field by field; and where the real one exists, it is the one in use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures_ros import _import_rclpy

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "test" / "fixtures" / "vision_msgs"


def _in_our_workspace(path: Path) -> bool:
    """Whether `path` lies in one of this checkout's colcon workspaces (.ws, .ws-jazzy, ...)."""
    return any(p.parent == REPO and p.name.startswith(".ws") for p in path.resolve().parents)


def _real_share() -> Path:
    """The share folder of the installed vision_msgs when it is not the fixture built into our
    workspace."""
    _import_rclpy()
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = Path(get_package_share_directory("vision_msgs"))
    except PackageNotFoundError:
        share = None
    if share is None or _in_our_workspace(share):
        if os.environ.get("ROS2_OWL_REQUIRE_CLI") == "1":
            raise AssertionError(f"the real vision_msgs is not installed (found {share})")
        pytest.skip("only the vision_msgs fixture is installed (no real package to compare)")
    return share


def _fields(msg_file: Path) -> list[tuple[str, str]]:
    """(type, name) of every field, same-package types spelt in full, as rosidl parses them."""
    from rosidl_adapter.parser import parse_message_string

    spec = parse_message_string("vision_msgs", msg_file.stem, msg_file.read_text())
    assert not spec.constants, f"{msg_file}: constants are not compared here"
    return [(str(f.type), f.name) for f in spec.fields]


def test_fixture_has_every_real_message_with_the_same_fields():
    real_dir = _real_share() / "msg"
    real = {p.stem: p for p in real_dir.glob("*.msg")}
    fixture = {p.stem: p for p in (FIXTURE / "msg").glob("*.msg")}
    assert {"Detection2DArray", "Detection3DArray", "LabelInfo"} <= set(real)
    assert sorted(fixture) == sorted(real)
    for name, path in real.items():
        assert _fields(fixture[name]) == _fields(path), name


def test_the_imported_vision_msgs_is_the_real_one():
    """A fixture left in .ws/install (.ws-jazzy/install) would shadow the real package
    (tools/setup.sh removes it)."""
    share = _real_share()
    import vision_msgs.msg

    module = Path(vision_msgs.msg.__file__).resolve()
    assert not _in_our_workspace(module), module
    fields = vision_msgs.msg.Detection3DArray.get_fields_and_field_types()
    assert fields == {
        "header": "std_msgs/Header",
        "detections": "sequence<vision_msgs/Detection3D>",
    }
    assert (share / "package.xml").read_text().count("TEST FIXTURE") == 0
