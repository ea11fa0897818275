#!/usr/bin/env python3
"""Write test/fixtures/rosdep/: the rosdep rules and ROS releases of exactly the keys that
package.xml uses, cut from a ros/rosdistro checkout, so test_rosdep_keys.py can check them
offline (a key renamed or dropped upstream shows up when the snapshot is refreshed).

usage: python tools/rosdep_snapshot.py ROSDISTRO_DIR COMMIT   (COMMIT: the checkout's commit)
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "test" / "fixtures" / "rosdep"
DISTROS = ("humble", "jazzy", "kilted")
DEPEND_TAGS = ("buildtool_depend", "build_depend", "depend", "exec_depend", "test_depend")


def package_keys(package_xml: Path = REPO / "package.xml") -> list[str]:
    """Every dependency key of package.xml, in file order, once."""
    root = ET.parse(package_xml).getroot()
    keys = [e.text.strip() for tag in DEPEND_TAGS for e in root.iter(tag)]
    return list(dict.fromkeys(keys))


def released_packages(distribution: dict) -> set[str]:
    """The package names a distribution.yaml releases (a repository without a package list
    releases one package of its own name)."""
    names = set()
    for repo_name, repo in distribution.get("repositories", {}).items():
        release = repo.get("release")
        if release:
            names.update(release.get("packages", [repo_name]))
    return names


def header(commit: str, source: str) -> str:
    return (
        f"# Extract of ros/rosdistro {source} at commit {commit}: only the keys\n"
        "# package.xml uses. Regenerate: python tools/rosdep_snapshot.py ROSDISTRO_DIR COMMIT\n"
    )


def main(rosdistro: Path, commit: str) -> None:
    keys = package_keys()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("base.yaml", "python.yaml"):
        rules = yaml.safe_load((rosdistro / "rosdep" / name).read_text())
        used = {k: rules[k] for k in keys if k in rules}
        body = yaml.safe_dump(used, sort_keys=False) if used else "{}\n"
        (OUT / name).write_text(header(commit, f"rosdep/{name}") + body)
    ros = {}
    for distro in DISTROS:
        released = released_packages(
            yaml.safe_load((rosdistro / distro / "distribution.yaml").read_text())
        )
        ros[distro] = sorted(k for k in keys if k in released)
    body = yaml.safe_dump(ros, sort_keys=False)
    (OUT / "ros_packages.yaml").write_text(header(commit, "<distro>/distribution.yaml") + body)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
