#!/usr/bin/env python3
"""Python 3.10 check without a 3.10 interpreter: the pins resolve for 3.10, the sources parse
under 3.10's grammar (ruff, target py310) and use no standard-library name new in 3.11.

No CPython 3.10 installs here (Debian 13 has none; the PyPI and npm packages that ship CPython
builds download them from GitHub at install time), so this asks pip to resolve
requirements/dev.txt + torch against constraints.txt as a 3.10 interpreter would see it: pip
evaluates `python_version` markers for the running Python even with --python-version, so the
3.10 view of constraints.txt is written first. usage: python tools/check_py310.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
JAMMY_PYTHON = {"python_version": "3.10", "python_full_version": "3.10.12"}
# standard-library names new in 3.11 (ruff's py310 target checks syntax, not these)
NEWER_STDLIB = re.compile(
    r"\b(tomllib|StrEnum|ReprEnum|ExceptionGroup|TaskGroup|file_digest|add_note|"
    r"getLevelNamesMapping|NOFLAG|datetime\.UTC|asyncio\.timeout|contextlib\.chdir)\b|"
    r"from typing import [^\n]*\b(Self|Never|LiteralString|assert_never|reveal_type|"
    r"Required|NotRequired|Unpack|TypeVarTuple)\b"
)
SDIST_ONLY = {"empy", "openai-clip"}  # pure-Python sdists (any Python): left out of the check


def pins_for(environment: dict[str, str], text: str) -> list[str]:
    """The constraints that apply on that Python, markers dropped (name==version)."""
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(environment):
            pins.append(f"{req.name}{req.specifier}")
    return pins


def newer_stdlib_uses() -> list[str]:
    """path:line of each 3.11-only standard-library name in the package and its scripts."""
    found = []
    for path in sorted([*(REPO / "ros2_owl").rglob("*.py"), *(REPO / "scripts").iterdir()]):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if NEWER_STDLIB.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    return found


def main() -> int:
    """Resolve for 3.10 (pip --dry-run), ruff with the 3.10 target, the 3.11-only names."""
    with tempfile.TemporaryDirectory() as tmp:
        view = Path(tmp) / "constraints-py310.txt"
        view.write_text("\n".join(pins_for(JAMMY_PYTHON, CONSTRAINTS.read_text())) + "\n")
        dev = (REPO / "requirements" / "dev.txt").read_text().splitlines()
        dev = [Requirement(r) for r in (line.split("#", 1)[0].strip() for line in dev) if r]
        wanted = [str(r) for r in dev if r.name not in SDIST_ONLY]
        resolve = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
            "--python-version", "3.10", "--only-binary=:all:",
            "--target", str(Path(tmp) / "target"), "-c", str(view), *wanted, "torch==2.13.0",
        ]  # fmt: skip
        code = subprocess.run(resolve).returncode
    print(f"[py310] pins resolve for Python 3.10: {'yes' if code == 0 else 'NO'}")
    lint = subprocess.run(["ruff", "check", "--target-version", "py310", "--quiet", str(REPO)])
    print(f"[py310] sources parse as Python 3.10 (ruff): {'yes' if lint.returncode == 0 else 'NO'}")
    newer = newer_stdlib_uses()
    print(f"[py310] 3.11-only standard-library names: {len(newer)}", *newer, sep="\n  ")
    return 1 if code or lint.returncode or newer else 0


if __name__ == "__main__":
    sys.exit(main())
