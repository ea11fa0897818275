"""Shared pytest set-up: model fixtures and ROS fixtures live in their own plugin modules.

Artefacts (ONNX exports, backend='auto' decisions) go to a per-run directory, never into the
user's cache: a test run neither reads what an earlier run or the user left there nor adds to it.
"""

import os
import shutil
import tempfile

pytest_plugins = ["fixtures_models", "fixtures_ros", "fixtures_cli", "fixtures_triton"]

_OWN_CACHE = None
if not os.environ.get("ROS2_OWL_CACHE"):
    _OWN_CACHE = tempfile.mkdtemp(prefix="ros2_owl-test-artefacts-")
    os.environ["ROS2_OWL_CACHE"] = _OWN_CACHE  # node processes inherit it


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
