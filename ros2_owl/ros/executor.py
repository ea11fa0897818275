"""The executor owl_node spins: every callback on the spinning thread, blocking ones beside it.

rclpy's MultiThreadedExecutor before rclpy 10 (Humble, Jazzy, Kilted) hands a task that is queued
for its pool but not yet started back out on every turn of its loop, so under a 100 Hz stream of
720p frames its loop ran hot: it took the GIL and the cores the frames need, and a burst lost
most of its frames. Here callbacks run inline, as in SingleThreadedExecutor, except those of a
DetachedCallbackGroup: each of those runs on a pool thread of its own, so a service may wait
(for a frame, for the model) while the frames it waits for keep arriving.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import (
    ConditionReachedException,
    ShutdownException,
    SingleThreadedExecutor,
    TimeoutException,
)

__all__ = ["DetachedCallbackGroup", "OwlExecutor"]


class DetachedCallbackGroup(ReentrantCallbackGroup):
    """Callbacks that may block: OwlExecutor runs each call on a pool thread."""


class OwlExecutor(SingleThreadedExecutor):
    """SingleThreadedExecutor that runs DetachedCallbackGroup callbacks on `detached_threads`
    threads; an error raised there is raised on the spinning thread, as inline ones are."""

    def __init__(self, detached_threads: int, *, context=None) -> None:
        super().__init__(context=context)
        self._pool = ThreadPoolExecutor(detached_threads, thread_name_prefix="owl_detached")
        self._lock = threading.Lock()
        self._handed: set = set()  # detached tasks given to the pool and not finished
        self._failures: list[BaseException] = []

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        with self._lock:
            if self._failures:
                raise self._failures.pop(0)
        try:
            task, entity, _node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ShutdownException, TimeoutException, ConditionReachedException):
            return
        group = getattr(entity, "callback_group", None)
        if isinstance(group, DetachedCallbackGroup):
            self._detach(task)
            return
        task()
        if task.exception() is not None:
            raise task.exception()

    def _detach(self, task) -> None:
        """Give the task to the pool once: until it starts, rclpy yields it again each turn."""
        with self._lock:
            if task in self._handed or task.done():
                return
            self._handed.add(task)
        self._pool.submit(self._run_detached, task)

    def _run_detached(self, task) -> None:
        try:
            task()
            error = task.exception()
        finally:
            with self._lock:
                self._handed.discard(task)
        if error is not None:
            with self._lock:
                self._failures.append(error)
            self.wake()

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        """Stop spinning; detached calls still queued are dropped, running ones finish."""
        done = super().shutdown(timeout_sec)
        self._pool.shutdown(wait=False, cancel_futures=True)
        return done
