"""Shared pytest set-up: model fixtures and ROS fixtures live in their own plugin modules.

Unit tests (one module each) are in unit/, tests of whole processes (node, CLI, page, Triton
server, packaging) in integration/; fixtures and peer processes stay here.

Artefacts (ONNX exports, backend='auto' decisions) go to a per-run directory, never into the
user's cache: a test run neither reads what an earlier run or the user left there nor adds to it.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

# unit/ and integration/ share a few helpers by module name (test_node's tests rerun against
# Humble's parameter path, test_predictor_backends' parity helpers for Triton)
for _folder in ("integration", "unit"):
    sys.path.insert(0, str(Path(__file__).resolve().parent / _folder))

pytest_plugins = ["fixtures_models", "fixtures_ros", "fixtures_cli", "fixtures_triton"]

_OWN_CACHE = None
if not os.environ.get("ROS2_OWL_CACHE"):
    _OWN_CACHE = tempfile.mkdtemp(prefix="ros2_owl-test-artefacts-")
    os.environ["ROS2_OWL_CACHE"] = _OWN_CACHE  # node processes inherit it


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
