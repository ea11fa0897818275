"""`pip install .` gives the ROS-free core: a wheel with the sources and the `ros2-owl`
command, whose modules import without pulling in rclpy or any ROS message package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROS_MODULES = ("rclpy", "rosidl", "std_msgs", "sensor_msgs", "vision_msgs", "diagnostic_msgs")


def _plain_env() -> dict[str, str]:
    """Our venv without the colcon workspace or the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_core_modules_import_without_ros(tmp_path):
    code = f"""
import importlib, pkgutil, sys
import ros2_owl
names = [m.name for m in pkgutil.walk_packages(ros2_owl.__path__, "ros2_owl.")
         if not m.name.startswith("ros2_owl.ros")]
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {ROS_MODULES!r})
print(len(names), loaded)
assert not loaded, f"the core imported ROS modules: {{loaded}}"
"""
    env = _plain_env()
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    count = int(out.stdout.split()[0])
    assert count >= 1


def _pip(*args: str) -> None:
    """Run pip in the test interpreter with a ROS-free environment; fail with its output."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=_plain_env()
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_wheel_installs_core_and_cli(tmp_path):
    wheel_dir = tmp_path / "wheel"
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(REPO))
    (wheel,) = wheel_dir.glob("ros2_owl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ros2_owl/core/prompt.py" in names and "ros2_owl/__init__.py" in names
    # the .msg definitions `ros2-owl bag` writes with, for machines without ROS
    shared = [n.split(".data/data/", 1)[1] for n in names if ".data/data/share/" in n]
    assert "share/ros2_owl/interfaces/ros2_owl/msg/TreeDetectionArray.msg" in shared
    assert "ros2_owl/io/interfaces/vision_msgs/msg/Detection2DArray.msg" in names
    for page_file in ("index.html", "app.js", "style.css"):  # the live page ships in the wheel
        assert f"ros2_owl/web/static/{page_file}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ros2-owl = ros2_owl.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    target = tmp_path / "site"
    _pip("install", "-q", "--no-deps", "--target", str(target), str(wheel))
    env = _plain_env()
    env["PYTHONPATH"] = str(target)
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ros2_owl.core.prompt as p; print(p.__file__); "
            "print(p.parse_prompt('[a person [a face]]').to_dict())",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(str(target))
    assert "'labels': ['image', 'a person', 'a face']" in check.stdout
    cli = subprocess.run(
        [sys.executable, str(target / "bin" / "ros2-owl"), "--help"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert "detect" in cli.stdout


def test_colcon_install_has_the_ros_executables(tmp_path):
    """`ros2 run ros2_owl owl_node|build_engine` find these through the ament index."""
    from fixtures_ros import _import_rclpy

    _import_rclpy()
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    lib = Path(get_package_prefix("ros2_owl")) / "lib" / "ros2_owl"
    for name in ("owl_node", "build_engine"):
        assert os.access(lib / name, os.X_OK), f"{lib / name} missing or not executable"
    share = Path(get_package_share_directory("ros2_owl"))
    assert (share / "config" / "owl.yaml").is_file()
    assert (share / "config" / "fastdds_large_shm.xml").is_file()
    assert (share / "launch" / "owl.launch.py").is_file()
    prefix = Path(get_package_prefix("ros2_owl"))  # the colcon install has the live page
    pages = list(prefix.glob("lib/python3*/site-packages/ros2_owl/web/static/app.js"))
    assert pages and pages[0].resolve().is_file(), f"no web/static/app.js under {prefix}"
    out = subprocess.run(
        [sys.executable, str(lib / "build_engine"), "--list", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert str(tmp_path) in out.stdout
