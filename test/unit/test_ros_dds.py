"""ros2_owl/ros/dds.py: which variables name the large-image profile for Fast DDS 2.x and 3.x,
found from the installed Fast DDS (its CMake version file) or else from ROS_DISTRO."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_ros import _import_rclpy, child_env

from ros2_owl.ros.dds import (
    PROFILE_VARIABLE,
    PROFILE_VARIABLE_FAST_DDS_2,
    fast_dds_major,
    large_image_env,
    profile_variables,
)

PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_shm.xml"


def _install(prefix: Path, package: str, version: str) -> Path:
    """A prefix holding only the CMake version file a Fast DDS install has."""
    cmake = prefix / "share" / package / "cmake"
    cmake.mkdir(parents=True)
    (cmake / f"{package}-config-version.cmake").write_text(
        f'# generated\n\nset(PACKAGE_VERSION "{version}")\n'
    )
    return prefix


def test_fast_dds_3_gets_only_the_new_variable(tmp_path):
    prefix = _install(tmp_path / "kilted", "fastdds", "3.2.2")
    assert fast_dds_major({}, [prefix]) == 3
    assert profile_variables(3) == (PROFILE_VARIABLE,)


def test_fast_dds_2_gets_both_variables(tmp_path):
    prefix = _install(tmp_path / "jazzy", "fastrtps", "2.14.5")
    assert fast_dds_major({}, [prefix]) == 2
    assert profile_variables(2) == (PROFILE_VARIABLE, PROFILE_VARIABLE_FAST_DDS_2)


def test_the_first_prefix_with_a_fast_dds_wins(tmp_path):
    empty = tmp_path / "overlay"
    empty.mkdir()
    jazzy = _install(tmp_path / "jazzy", "fastrtps", "2.14.5")
    kilted = _install(tmp_path / "kilted", "fastdds", "3.2.2")
    assert fast_dds_major({}, [empty, jazzy, kilted]) == 2
    assert fast_dds_major({}, [empty, kilted, jazzy]) == 3


@pytest.mark.parametrize(
    ("distro", "major"), [("humble", 2), ("jazzy", 2), ("Jazzy", 2), ("kilted", 3), ("rolling", 3)]
)
def test_ros_distro_decides_when_no_fast_dds_is_found(tmp_path, distro, major):
    assert fast_dds_major({"ROS_DISTRO": distro}, [tmp_path]) == major


def test_an_installed_fast_dds_outranks_ros_distro(tmp_path):
    prefix = _install(tmp_path / "kilted", "fastdds", "3.2.2")
    assert fast_dds_major({"ROS_DISTRO": "jazzy"}, [prefix]) == 3


def test_unknown_fast_dds_gets_both_variables(tmp_path):
    (tmp_path / "share" / "fastdds" / "cmake").mkdir(parents=True)  # no version file
    assert fast_dds_major({}, [tmp_path]) is None
    assert profile_variables(None) == (PROFILE_VARIABLE, PROFILE_VARIABLE_FAST_DDS_2)


def test_prefixes_come_from_ament_prefix_path(tmp_path):
    jazzy = _install(tmp_path / "jazzy", "fastrtps", "2.14.5")
    environ = {"AMENT_PREFIX_PATH": f"{tmp_path / 'missing'}:{jazzy}"}
    assert fast_dds_major(environ) == 2
    env = large_image_env("/p.xml", environ)
    assert env == {
        PROFILE_VARIABLE: "/p.xml",
        PROFILE_VARIABLE_FAST_DDS_2: "/p.xml",
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT",
    }


def test_this_environment_names_the_fast_dds_rclpy_loads():
    """The detected major is the one of the libfastdds / libfastrtps that rclpy's rmw maps, and
    a process given large_image_env gets no deprecation warning about the variable names."""
    _import_rclpy()
    major = fast_dds_major()
    assert major in (2, 3), "no Fast DDS found on AMENT_PREFIX_PATH, in the venv or ROS_DISTRO"
    code = (
        "import rclpy, re\n"
        "rclpy.init()\n"
        "n = rclpy.create_node('dds_probe')\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(sorted(set(re.findall(r'lib(fastdds|fastrtps)\\.so\\.(\\d+)', maps))))\n"
        "n.destroy_node(); rclpy.shutdown()\n"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(**large_image_env(PROFILE)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    library = "fastdds" if major >= 3 else "fastrtps"
    assert f"('{library}', '{major}')" in probe.stdout, probe.stdout
    assert "deprecated" not in probe.stderr, probe.stderr
