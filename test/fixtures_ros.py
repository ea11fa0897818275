"""ROS test fixtures: an isolated DDS domain, a probe node spinning in the background, and
helper processes; every wait is on a message or condition with a timeout, never a sleep."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / "peers"

# One random domain per pytest run, set before rclpy loads, so parallel runs never meet.
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def _import_rclpy():
    """Import rclpy, failing (not skipping) where the test command promised ROS."""
    try:
        import rclpy
        import ros2_owl.msg  # noqa: F401  the colcon-built interfaces
    except ImportError as exc:
        if os.environ.get("ROS2_OWL_REQUIRE_ROS") == "1":
            raise
        pytest.skip(f"ROS 2 not available ({exc}); run tools/setup.sh and source tools/env.sh")
    return rclpy


class Collector:
    """Keeps every message received on one topic and lets a test wait for the ones it needs."""

    def __init__(self, topic: str):
        self.topic = topic
        self._messages: list = []
        self._cond = threading.Condition()

    def __call__(self, msg) -> None:
        with self._cond:
            self._messages.append(msg)
            self._cond.notify_all()

    @property
    def messages(self) -> list:
        with self._cond:
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def wait_for(self, predicate: Callable | None = None, count: int = 1, timeout: float = 10.0):
        """Return the first `count` messages matching `predicate`; fail with context on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [m for m in self._messages if predicate is None or predicate(m)]
                if len(hits) >= count:
                    return hits[:count] if count > 1 else hits[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.1f}s on {self.topic}: wanted {count} matching "
                        f"message(s), got {len(hits)} of {len(self._messages)} received"
                    )
                self._cond.wait(left)


class RosHarness:
    """A probe node of the test process, spun by an executor in a background thread."""

    def __init__(self, rclpy, context, name: str):
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.node = rclpy.create_node(name, context=context)
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._stop = False
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop:
            self._executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self._executor.remove_node(self.node)
        self.node.destroy_node()

    def collector(self, msg_type, topic: str, qos=10) -> Collector:
        collector = Collector(topic)
        self.node.create_subscription(msg_type, topic, collector, qos)
        return collector

    def publisher(self, msg_type, topic: str, qos=10):
        return self.node.create_publisher(msg_type, topic, qos)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = ""):
        """Poll a graph condition (discovery has no callback in rclpy) until true or timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.1f}s waiting for {what or predicate}"
                )
            time.sleep(0.02)

    def wait_for_subscribers(self, publisher, count: int = 1, timeout: float = 15.0) -> None:
        self.wait_until(
            lambda: publisher.get_subscription_count() >= count,
            timeout,
            f"{count} subscriber(s) on {publisher.topic_name}",
        )

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 15.0) -> None:
        self.wait_until(
            lambda: self.node.count_publishers(topic) >= count,
            timeout,
            f"{count} publisher(s) on {topic}",
        )

    def call(self, srv_type, name: str, request, timeout: float = 15.0):
        """Call a service once it is available; the executor thread delivers the response."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} not available after {timeout:.1f}s")
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _f: done.set())
            if not done.wait(timeout):
                raise AssertionError(f"service {name} did not answer within {timeout:.1f}s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def publish_until(self, publisher, msg, collector: Collector, predicate=None, timeout=15.0):
        """Re-publish `msg` until `collector` sees a matching reply (best-effort links may drop)."""
        deadline = time.monotonic() + timeout
        while True:
            publisher.publish(msg)
            try:
                return collector.wait_for(
                    predicate, timeout=min(0.5, max(0.01, deadline - time.monotonic()))
                )
            except AssertionError:
                if time.monotonic() > deadline:
                    raise


class RosProcess:
    """A helper process (a node, a peer) whose output goes to a log file shown on failure."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  closed in stop()
        self.proc = subprocess.Popen(
            args,
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

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT first (rclpy shuts down cleanly), then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._log.close()
        return self.proc.returncode


def child_env(**extra: str) -> dict[str, str]:
    """The environment for helper processes: ours (domain, LD_LIBRARY_PATH) plus the checkout."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def rclpy_context():
    """One rclpy context for the whole run."""
    rclpy = _import_rclpy()
    context = rclpy.context.Context()
    rclpy.init(context=context)
    yield rclpy, context
    rclpy.shutdown(context=context)


@pytest.fixture
def node(rclpy_context, request):
    """A plain rclpy node named params_test; indirect params are its --ros-args."""
    rclpy, context = rclpy_context
    args = getattr(request, "param", None)
    if args:  # a node with its own command-line overrides needs its own context
        context = rclpy.context.Context()
        rclpy.init(context=context, args=["x", "--ros-args", *args])
    n = rclpy.create_node("params_test", context=context)
    yield n
    n.destroy_node()
    if args:
        rclpy.shutdown(context=context)


@pytest.fixture
def ros(rclpy_context, request):
    """A probe node for one test (unique name), spinning in the background."""
    rclpy, context = rclpy_context
    name = "probe_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    harness = RosHarness(rclpy, context, name)
    yield harness
    harness.close()


@pytest.fixture
def ros_process(tmp_path, request):
    """Factory: start_process(args, **env) -> RosProcess, stopped (and its log shown) at teardown."""
    started: list[RosProcess] = []

    def start(args: list[str], name: str = "proc", **env: str) -> RosProcess:
        proc = RosProcess(args, tmp_path / f"{name}-{len(started)}.log", child_env(**env))
        started.append(proc)
        return proc

    yield start
    failed = getattr(request.node, "rep_call", None)
    for proc in started:
        code = proc.stop()
        if failed is not None and failed.failed:
            sys.stderr.write(f"\n--- {proc.args} exited {code}; output:\n{proc.output()[-4000:]}\n")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item so fixtures can show logs of failed tests."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def peer_script(name: str) -> list[str]:
    """Command line for a helper process in test/peers/."""
    return [sys.executable, str(PEERS / name)]
