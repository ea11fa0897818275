"""Every package.xml key resolves for Ubuntu 22.04 (Humble) and 24.04 (Jazzy, Kilted) in the
rosdep snapshot test/fixtures/rosdep/ (cut from ros/rosdistro by tools/rosdep_snapshot.py):
a ROS package released in each distribution, or a rosdep rule with an apt or pip install."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = REPO / "test" / "fixtures" / "rosdep"
sys.path.insert(0, str(REPO / "tools"))
from rosdep_snapshot import DISTROS, package_keys  # noqa: E402

sys.path.remove(str(REPO / "tools"))
UBUNTU = ("jammy", "noble")
INSTALLERS = ("apt", "pip")


def _snapshot(name: str):
    return yaml.safe_load((SNAPSHOT / name).read_text())


def resolve(rule, codename: str) -> tuple[str, list[str]] | None:
    """(installer, packages) for ubuntu:`codename` as rosdep reads a rule; None: no rule."""
    rule = rule.get("ubuntu", rule.get("*")) if isinstance(rule, dict) else None
    if isinstance(rule, dict) and not set(rule) & set(INSTALLERS):  # per codename
        rule = rule.get(codename, rule.get("*"))
    if isinstance(rule, list):
        return ("apt", rule)
    if isinstance(rule, dict):
        installer = next(i for i in INSTALLERS if i in rule)
        packages = rule[installer]
        packages = packages.get("packages", []) if isinstance(packages, dict) else packages
        return (installer, packages) if packages else None
    return None


def test_snapshot_names_its_rosdistro_commit_and_holds_exactly_our_keys():
    rules = {**_snapshot("base.yaml"), **_snapshot("python.yaml")}
    ros = _snapshot("ros_packages.yaml")
    for name in ("base.yaml", "python.yaml", "ros_packages.yaml"):
        first = (SNAPSHOT / name).read_text().splitlines()[0]
        assert re.search(r"ros/rosdistro .* at commit [0-9a-f]{40}", first), (name, first)
    known = set(rules) | {k for names in ros.values() for k in names}
    assert known == set(package_keys()), "regenerate with tools/rosdep_snapshot.py"


@pytest.mark.parametrize("codename", UBUNTU)
def test_every_key_resolves_on_ubuntu(codename):
    rules = {**_snapshot("base.yaml"), **_snapshot("python.yaml")}
    ros = _snapshot("ros_packages.yaml")
    unresolved = []
    for key in package_keys():
        if key in rules:
            if resolve(rules[key], codename) is None:
                unresolved.append(key)
        elif not all(key in ros[distro] for distro in DISTROS):
            unresolved.append(f"{key} (released in {[d for d in DISTROS if key in ros[d]]})")
    assert not unresolved, unresolved


def test_pip_keys_are_the_ones_readme_names():
    """README's workspace section says which keys pip installs (PEP 668 on 24.04)."""
    rules = _snapshot("python.yaml")
    pip_keys = [k for k in package_keys() if k in rules and resolve(rules[k], "noble")[0] == "pip"]
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Using it in a ROS 2 workspace") :]
    section = section[: section.index("\n## ", 1)]
    assert pip_keys and all(f"`{k}`" in section for k in pip_keys), pip_keys
    assert "PIP_BREAK_SYSTEM_PACKAGES=1" in section
