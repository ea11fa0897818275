"""The import graph of ros2_owl: no cycle, layers point down only (core, io and runtime never
import ROS or the front ends: ros, cli, web), and every module below the ROS layer imports on its
own in a fresh interpreter (in dependency order)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ros2_owl"
FRONT_ENDS = ("ros2_owl.ros", "ros2_owl.cli")
# each layer and the packages above it, which it must never import
NEVER_IMPORTS = {
    "ros2_owl.core": (
        "ros2_owl.runtime",
        "ros2_owl.io",
        "ros2_owl.ros",
        "ros2_owl.cli",
        "ros2_owl.web",
    ),
    "ros2_owl.io": ("ros2_owl.runtime", "ros2_owl.ros", "ros2_owl.cli", "ros2_owl.web"),
    "ros2_owl.runtime": ("ros2_owl.ros", "ros2_owl.cli", "ros2_owl.web"),
    "ros2_owl.models": (
        "ros2_owl.runtime",
        "ros2_owl.io",
        "ros2_owl.ros",
        "ros2_owl.cli",
        "ros2_owl.web",
    ),
    "ros2_owl.backends": ("ros2_owl.runtime", "ros2_owl.io", "ros2_owl.ros", "ros2_owl.web"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """ros2_owl modules (and rclpy) that `path` imports anywhere, lazy imports included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "rclpy":
                found.add("rclpy")
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt in edges and not state.get(nxt) and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if not state.get(node) and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    edges = graph()
    # packages import their own submodules' names: an __init__ -> child edge is not a cycle
    # unless the child imports the package back, which this check then reports.
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_find_cycle_reports_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_core_never_imports_ros_or_the_front_ends():
    for name, targets in graph().items():
        if name.startswith(FRONT_ENDS):
            continue
        upward = {t for t in targets if t == "rclpy" or t.startswith(FRONT_ENDS)}
        assert not upward, f"{name} imports {sorted(upward)}"


def test_layers_point_down_only():
    wrong = []
    for name, targets in graph().items():
        for layer, above in NEVER_IMPORTS.items():
            if name == layer or name.startswith(layer + "."):
                upward = {t for t in targets if t == "rclpy" or t.startswith(above)}
                wrong += [f"{name} imports {t}" for t in sorted(upward)]
    assert not wrong, wrong


def test_the_layered_packages_exist():
    """The rule above checks real packages (a rename would make it pass vacuously)."""
    names = set(modules())
    assert all(layer in names for layer in NEVER_IMPORTS), sorted(set(NEVER_IMPORTS) - names)


def dependency_order(edges: dict[str, set[str]]) -> list[str]:
    order: list[str] = []

    def visit(node: str) -> None:
        if node in order or node not in edges:
            return
        for nxt in sorted(edges[node]):
            visit(nxt)
        order.append(node)

    for node in sorted(edges):
        visit(node)
    return order


def test_every_core_module_imports_in_a_fresh_interpreter():
    core = [m for m in dependency_order(graph()) if not m.startswith(FRONT_ENDS)]
    script = f"import importlib\nfor name in {core!r}:\n    importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
