"""OwlExecutor: a detached service waits while the spinning thread keeps delivering messages,
without its loop running hot, and a detached callback's error reaches the spinning thread."""

from __future__ import annotations

import threading

import pytest
from fixtures_ros import _import_rclpy

_import_rclpy()

from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from ros2_owl.ros.executor import DetachedCallbackGroup, OwlExecutor  # noqa: E402

WAIT_S = 20.0  # generous: a deadlock shows as this timeout, never as a slow pass


class CountingExecutor(OwlExecutor):
    """Counts turns of the spin loop (a hot loop shows as thousands per message)."""

    turns = 0

    def _spin_once_impl(self, *args, **kwargs):
        self.turns += 1
        return super()._spin_once_impl(*args, **kwargs)


class WaitingServer:
    """A Trigger service that blocks until the node's own subscription has `wanted` messages."""

    def __init__(self, rclpy, context, wanted: int, fail: bool = False):
        self.node = rclpy.create_node("executor_test_server", context=context)
        self.cond = threading.Condition()
        self.received = 0
        self.entered = threading.Event()
        self.wanted, self.fail = wanted, fail
        self.node.create_subscription(String, "executor_test", self.on_message, 10)
        self.node.create_service(
            Trigger, "executor_test_wait", self.on_call, callback_group=DetachedCallbackGroup()
        )

    def on_message(self, _msg) -> None:
        with self.cond:
            self.received += 1
            self.cond.notify_all()

    def on_call(self, _req, resp):
        self.entered.set()
        if self.fail:
            raise RuntimeError("detached callback failed")
        with self.cond:
            resp.success = self.cond.wait_for(lambda: self.received >= self.wanted, WAIT_S)
        resp.message = str(self.received)
        return resp


@pytest.fixture
def spinning(rclpy_context):
    """(rclpy, context, start): start(server) spins server + a client node on a thread."""
    rclpy, context = rclpy_context
    made = []

    def start(server: WaitingServer):
        client_node = rclpy.create_node("executor_test_client", context=context)
        executor = CountingExecutor(detached_threads=2, context=context)
        executor.add_node(server.node)
        executor.add_node(client_node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        made.append((executor, thread, server.node, client_node))
        return executor, client_node

    yield rclpy, context, start
    for executor, thread, *nodes in made:
        executor.shutdown()
        thread.join(WAIT_S)
        for n in nodes:
            n.destroy_node()


def _call(client_node, done: threading.Event):
    client = client_node.create_client(Trigger, "executor_test_wait")
    assert client.wait_for_service(WAIT_S)
    future = client.call_async(Trigger.Request())
    future.add_done_callback(lambda _f: done.set())
    return future


def test_detached_service_waits_while_messages_keep_arriving(spinning):
    rclpy, context, start = spinning
    messages = 30
    server = WaitingServer(rclpy, context, wanted=messages)
    executor, client_node = start(server)
    publisher = client_node.create_publisher(String, "executor_test", 10)
    while publisher.get_subscription_count() == 0:  # discovery inside one process
        threading.Event().wait(0.01)
    done = threading.Event()
    future = _call(client_node, done)
    assert server.entered.wait(WAIT_S), "the service callback never started"
    turns_before = executor.turns
    for i in range(messages):
        publisher.publish(String(data=str(i)))
        with server.cond:  # one at a time: each is delivered while the service still waits
            assert server.cond.wait_for(lambda i=i: server.received > i, WAIT_S)
    assert done.wait(WAIT_S), "no response"
    resp = future.result()
    assert resp.success and resp.message == str(messages)
    # each message costs a few turns (wait, take, guard wake-ups), a hot loop thousands
    assert executor.turns - turns_before < 10 * messages + 50, executor.turns - turns_before


def test_an_error_in_a_detached_callback_is_raised_on_the_spinning_thread(rclpy_context):
    rclpy, context = rclpy_context
    server = WaitingServer(rclpy, context, wanted=0, fail=True)
    client_node = rclpy.create_node("executor_test_client", context=context)
    executor = OwlExecutor(detached_threads=1, context=context)
    executor.add_node(server.node)
    executor.add_node(client_node)
    try:
        client = client_node.create_client(Trigger, "executor_test_wait")
        while not client.service_is_ready():
            executor.spin_once(timeout_sec=0.05)
        client.call_async(Trigger.Request())
        with pytest.raises(RuntimeError, match="detached callback failed"):
            for _ in range(400):  # 20 s of 50 ms turns at most
                executor.spin_once(timeout_sec=0.05)
        assert server.entered.is_set()
    finally:
        executor.shutdown()
        server.node.destroy_node()
        client_node.destroy_node()
