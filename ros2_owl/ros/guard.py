"""One guard for every executor callback: an exception answers, is logged once and counted.

rclpy lets an exception raised in a service, parameter, subscription or timer callback escape
``spin()``, which ends the node. The guard turns it into a refusal instead: a service answers
``success: false`` with a one-line reason, a parameter change is rejected with that reason, a
frame or timer callback is skipped. The first failure of each (callback, exception type) is
logged with its traceback (for a bug report), later ones only counted; ``callback_errors`` and
``last_callback_error`` go out in the node's diagnostics.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["CallbackGuard", "one_line"]

MAX_REASON_CHARS = 300


def one_line(exc: BaseException, limit: int = MAX_REASON_CHARS) -> str:
    """'Type: message' on one line, at most `limit` characters."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class CallbackGuard:
    """Wraps callbacks of one node; thread-safe counters read by the diagnostics timer."""

    def __init__(self, logger):
        self._logger = logger
        self._lock = threading.Lock()
        self._logged: set[tuple[str, str]] = set()
        self.errors = 0
        self.last_error = ""

    def failed(self, where: str, exc: BaseException) -> str:
        """Count and (once per kind) log a failure; returns the one-line reason."""
        reason = one_line(exc)
        key = (where, type(exc).__name__)
        with self._lock:
            self.errors += 1
            self.last_error = f"{where}: {reason}"
            first = key not in self._logged
            self._logged.add(key)
        if first:
            trace = "".join(traceback.format_exception(exc)).rstrip()
            self._logger.error(
                f"{where} failed: {reason} (a bug; the node carries on; repeats of this kind "
                f"are only counted in diagnostics as callback_errors)\n{trace}"
            )
        return reason

    def service(self, where: str, callback: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """A service callback whose exceptions answer success=false with the reason."""

        def guarded(request, response):
            try:
                return callback(request, response)
            except Exception as exc:
                response = type(response)()  # nothing half-filled goes back
                response.success = False
                response.message = f"internal error: {self.failed(where, exc)}"
                return response

        return guarded

    def parameters(self, callback: Callable[[list], Any]) -> Callable[[list], Any]:
        """An on-set-parameters callback whose exceptions reject the change with the reason."""
        from rcl_interfaces.msg import SetParametersResult

        def guarded(params):
            try:
                return callback(params)
            except Exception as exc:
                reason = self.failed("parameter change", exc)
                return SetParametersResult(successful=False, reason=f"internal error: {reason}")

        return guarded

    def call(self, where: str, callback: Callable[..., Any]) -> Callable[..., None]:
        """A subscription, timer or post-set callback whose exceptions are logged and counted."""

        def guarded(*args):
            try:
                callback(*args)
            except Exception as exc:
                self.failed(where, exc)

        return guarded
