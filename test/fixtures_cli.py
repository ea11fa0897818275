"""Fixtures for tests that run the real `ros2` executable (ros2cli, ros2 launch) as a user would.

Pitfalls designed around: `ros2 run` and `ros2 launch` get their own session and SIGINT goes to
the whole process group (as a terminal's Ctrl-C does); graph discovery is slow on a loaded
machine, so tests use one ros2 daemon per run (stopped at the end) and wait until the node is
listed before running the README's commands verbatim.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fixtures_ros import REPO, _import_rclpy, child_env

__all__ = ["SERVICE_CALL_UNSUPPORTED", "Ros2Cli", "Ros2Process", "ros2_cli"]


def _service_call_unsupported() -> str:
    """Why `ros2 service call` cannot run here, or "": the extras' ros2service (ros2cli 0.36,
    rolling) uses `with rclpy.init():`, which needs rclpy >= 8; Jazzy's rclpy 7.1 returns None."""
    try:
        import inspect

        import rclpy
        import ros2service.verb.call as call
    except ImportError:
        return ""
    if "with rclpy.init()" in inspect.getsource(call) and not hasattr(rclpy, "InitContextManager"):
        return (
            "this ros2service (rolling ros2cli 0.36) calls `with rclpy.init()`, which this "
            "rclpy (< 8, e.g. Jazzy's 7.1) does not support"
        )
    return ""


SERVICE_CALL_UNSUPPORTED = _service_call_unsupported()


def _ros2_executable() -> str:
    """The ros2 command, failing (not skipping) where CI promised it (ROS2_OWL_REQUIRE_CLI=1)."""
    _import_rclpy()
    exe = shutil.which("ros2")
    missing = exe is None
    if not missing:
        try:
            import launch_ros  # noqa: F401
        except ImportError:
            missing = True
    if missing:
        if os.environ.get("ROS2_OWL_REQUIRE_CLI") == "1":
            raise AssertionError("the ros2 CLI / launch_ros are not installed (see tools/setup.sh)")
        pytest.skip("the ros2 CLI is not installed: tools/setup.sh ../shared/ros2-extras")
    return exe


class Ros2Process:
    """A long-running `ros2 run` / `ros2 launch` in its own session, interrupted like Ctrl-C."""

    def __init__(self, command: str, log_path: Path, env: dict[str, str]):
        self.command = command
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  closed in stop()
        self.proc = subprocess.Popen(
            shlex.split(command),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (out := self.output()):
            if not self.alive() and text not in (out := self.output()):  # read after the exit
                raise AssertionError(f"{self.command!r} exited {self.proc.returncode}:\n{out}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {text!r} after {timeout:.0f}s from {self.command!r}:\n{out}"
                )
            time.sleep(0.01)  # polling a log file: there is no event to wait on
        return out

    def interrupt(self, times: int = 1, timeout: float = 30.0) -> int:
        """Ctrl-C: SIGINT to the whole process group; returns the exit code of the command."""
        for _ in range(times):
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


class Ros2Cli:
    """Runs `ros2 ...` command lines (shell quoting as in README) in the test's ROS domain."""

    def __init__(self, exe: str, tmp_dir: Path, **env: str):
        self.exe = exe
        self.tmp_dir = tmp_dir
        self.env = child_env(HF_HUB_OFFLINE="1", **env)
        self.started: list[Ros2Process] = []

    def run(self, command: str, timeout: float = 60.0, check: bool = True) -> str:
        """Run one command to its end; return stdout + stderr (fail with both on error)."""
        args = shlex.split(command)
        assert args[0] == "ros2", command
        done = subprocess.run(
            [self.exe, *args[1:]],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO,
            timeout=timeout,
        )
        out = done.stdout + done.stderr
        transcript = os.environ.get("ROS2_OWL_CLI_TRANSCRIPT")  # to refresh README's outputs
        if transcript:
            with open(transcript, "a") as f:
                f.write(f"$ {command}\n{out}\n")
        if check and done.returncode != 0:
            raise AssertionError(f"{command!r} exited {done.returncode}:\n{out}")
        return out

    def start(self, command: str, **env: str) -> Ros2Process:
        args = shlex.split(command)
        assert args[0] == "ros2", command
        line = shlex.join([self.exe, *args[1:]])
        name = f"{args[1]}-{len(self.started)}.log"
        proc = Ros2Process(line, self.tmp_dir / name, {**self.env, **env})
        self.started.append(proc)
        return proc

    def wait_for_node(self, proc: Ros2Process, node: str, timeout: float = 180.0) -> None:
        """Wait until `ros2 node list` (through the daemon) lists `node`, or the process died."""
        deadline = time.monotonic() + timeout
        while True:
            listed = self.run("ros2 node list", check=False).split()
            if node in listed:
                return
            if not proc.alive():
                raise AssertionError(f"{proc.command!r} exited:\n{proc.output()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{node} not listed after {timeout:.0f}s:\n{proc.output()}")

    def close(self) -> None:
        for proc in self.started:
            proc.stop()
        self.run("ros2 daemon stop", check=False)


@pytest.fixture(scope="module")
def ros2_cli(tmp_path_factory):
    """A Ros2Cli with its own ros2 daemon (in this run's ROS_DOMAIN_ID), stopped at the end."""
    exe = _ros2_executable()
    cli = Ros2Cli(exe, tmp_path_factory.mktemp("ros2_cli"))
    cli.run("ros2 daemon start", check=False)
    yield cli
    cli.close()
