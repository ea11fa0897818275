"""Each Python the package supports (3.10: Humble's Jammy; 3.11, 3.12) sees exactly one pin of
every package in requirements/constraints.txt; tools/check_py310.py resolves the 3.10 ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from check_py310 import CONSTRAINTS, JAMMY_PYTHON, newer_stdlib_uses, pins_for  # noqa: E402

sys.path.remove(str(REPO / "tools"))


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12"])
def test_every_package_has_one_pin_per_python(version):
    text = CONSTRAINTS.read_text()
    names = {line.split("==")[0].lower() for line in text.splitlines() if "==" in line}
    env = {"python_version": version, "python_full_version": f"{version}.0"}
    pinned = [pin.split("==")[0].lower() for pin in pins_for(env, text)]
    assert sorted(pinned) == sorted(names), {n for n in names if pinned.count(n) != 1}


def test_python_310_gets_the_older_transformers_and_numpy():
    pins = pins_for(JAMMY_PYTHON, CONSTRAINTS.read_text())
    assert "transformers==5.20.2" in pins and "numpy==2.2.6" in pins, pins


def test_no_standard_library_name_newer_than_python_310():
    assert newer_stdlib_uses() == []
