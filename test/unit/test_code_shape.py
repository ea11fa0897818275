"""The package's shape rules: no function over 60 lines, and a module over 400 lines says why
(a sentence with its size in its docstring, e.g. "About 450 lines: ...")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ros2_owl"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_is_over_60_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} {lines}")
    assert not long, long


def test_a_long_module_says_why_in_its_docstring():
    unexplained = []
    for path in _modules():
        text = path.read_text()
        if text.count("\n") <= MAX_MODULE_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not re.search(r"\b\d{3} lines\b", doc):
            unexplained.append(f"{path.relative_to(PACKAGE)} ({text.count(chr(10))} lines)")
    assert not unexplained, unexplained


def test_readme_layout_names_every_module():
    """README's Layout table must name each module of the package (by file name)."""
    readme = (PACKAGE.parent / "README.md").read_text()
    start = readme.index("## Layout")
    layout = readme[start : readme.index("\n## ", start + 1)]
    missing = [
        str(path.relative_to(PACKAGE))
        for path in _modules()
        if path.name != "__init__.py"
        and f"`{path.name}`" not in layout
        and f"`ros2_owl/{path.relative_to(PACKAGE)}`" not in layout
    ]
    assert not missing, missing
