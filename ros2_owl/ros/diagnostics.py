"""Per-camera counters, rates and latency percentiles, reported as diagnostic_msgs."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["CameraStats", "StatsSnapshot", "build_diagnostics", "camera_status", "node_status"]


class _Window:
    """Event times of the last `seconds`: a rate that falls to 0 when events stop."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._times: deque[float] = deque()
        self._first: float | None = None

    def add(self, t: float) -> None:
        if self._first is None:
            self._first = t
        self._times.append(t)
        self._trim(t)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.seconds:
            self._times.popleft()

    def rate(self, now: float) -> float:
        """Events per second over the window (or since the first event, if more recent)."""
        self._trim(now)
        if self._first is None or not self._times:
            return 0.0
        span = min(self.seconds, now - self._first)
        if span <= 0:
            return 0.0
        return len(self._times) / span


@dataclass(frozen=True)
class StatsSnapshot:
    """One consistent read of a camera's counters, for a status message or a test."""

    topic: str
    received: int
    processed: int
    dropped: int
    rate_limited: int
    bad: int
    errors: int
    input_hz: float
    output_hz: float
    latency_p50_ms: float
    latency_p95_ms: float
    inference_p50_ms: float
    seconds_since_frame: float | None
    last_problem: str


class CameraStats:
    """Thread-safe counters of one input: written by callbacks and the worker, read by a timer."""

    def __init__(self, topic: str, window_s: float = 5.0, latency_samples: int = 200):
        self.topic = topic
        self._lock = threading.Lock()
        self._in = _Window(window_s)
        self._out = _Window(window_s)
        self._latency: deque[float] = deque(maxlen=latency_samples)
        self._inference: deque[float] = deque(maxlen=latency_samples)
        self.received = self.processed = self.dropped = self.rate_limited = 0
        self.bad = self.errors = 0
        self._last_frame: float | None = None
        self.last_problem = ""

    def frame_received(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.received += 1
            self._last_frame = now
            self._in.add(now)

    def frame_dropped(self) -> None:
        """A pending frame was replaced by a newer one before the worker took it."""
        with self._lock:
            self.dropped += 1

    def frame_rate_limited(self) -> None:
        with self._lock:
            self.rate_limited += 1

    def frame_bad(self, reason: str) -> None:
        with self._lock:
            self.bad += 1
            self.last_problem = reason

    def frame_error(self, reason: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_problem = reason

    def frame_done(self, latency_ms: float, inference_ms: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.processed += 1
            self._out.add(now)
            self._latency.append(latency_ms)
            self._inference.append(inference_ms)

    def snapshot(self, now: float | None = None) -> StatsSnapshot:
        now = time.monotonic() if now is None else now
        with self._lock:
            lat = np.asarray(self._latency, dtype=np.float64)
            inf = np.asarray(self._inference, dtype=np.float64)
            return StatsSnapshot(
                topic=self.topic,
                received=self.received,
                processed=self.processed,
                dropped=self.dropped,
                rate_limited=self.rate_limited,
                bad=self.bad,
                errors=self.errors,
                input_hz=self._in.rate(now),
                output_hz=self._out.rate(now),
                latency_p50_ms=float(np.percentile(lat, 50)) if lat.size else 0.0,
                latency_p95_ms=float(np.percentile(lat, 95)) if lat.size else 0.0,
                inference_p50_ms=float(np.percentile(inf, 50)) if inf.size else 0.0,
                seconds_since_frame=None if self._last_frame is None else now - self._last_frame,
                last_problem=self.last_problem,
            )


def _kv(**values) -> list[KeyValue]:
    out = []
    for key, value in values.items():
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        out.append(KeyValue(key=key, value=text))
    return out


def camera_status(
    node_name: str,
    snap: StatsSnapshot,
    previous: StatsSnapshot | None,
    stale_after: float,
    extra: dict | None = None,
) -> DiagnosticStatus:
    """OK while frames flow; WARN on no input or new bad frames; ERROR on new inference errors.

    `extra`: more key/values of the camera (tracking and depth counters when those are on).
    """
    level, message = (
        DiagnosticStatus.OK,
        (
            f"{snap.input_hz:.1f} Hz in, {snap.output_hz:.1f} Hz out, "
            f"latency p95 {snap.latency_p95_ms:.0f} ms"
        ),
    )
    new_bad = snap.bad - (previous.bad if previous else 0)
    new_errors = snap.errors - (previous.errors if previous else 0)
    if snap.seconds_since_frame is None:
        level, message = DiagnosticStatus.WARN, "no frame received yet"
    elif stale_after > 0 and snap.seconds_since_frame > stale_after:
        level = DiagnosticStatus.WARN
        message = f"no frame for {snap.seconds_since_frame:.0f} s"
    if new_bad > 0:
        level = max(level, DiagnosticStatus.WARN)
        message = f"{new_bad} bad frame(s): {snap.last_problem}"
    if new_errors > 0:
        level = DiagnosticStatus.ERROR
        message = f"{new_errors} inference error(s): {snap.last_problem}"
    return DiagnosticStatus(
        level=level,
        name=f"{node_name}: {snap.topic}",
        message=message,
        hardware_id=node_name,
        values=_kv(
            frames_received=snap.received,
            frames_processed=snap.processed,
            frames_dropped=snap.dropped,
            frames_rate_limited=snap.rate_limited,
            frames_bad=snap.bad,
            inference_errors=snap.errors,
            input_rate_hz=snap.input_hz,
            output_rate_hz=snap.output_hz,
            latency_p50_ms=snap.latency_p50_ms,
            latency_p95_ms=snap.latency_p95_ms,
            inference_p50_ms=snap.inference_p50_ms,
            last_problem=snap.last_problem or "none",
        )
        + _kv(**(extra or {})),
    )


def encoder_facts(encoder) -> dict[str, str]:
    """A remote (triton) encoder's counters and state for the model status; {} for local ones."""
    stats, backoff = getattr(encoder, "stats", None), getattr(encoder, "backoff", None)
    if stats is None or backoff is None:
        return {}
    wait = backoff.wait_left()
    state = f"retrying in {wait:.1f} s" if wait else "failing" if backoff.failures else "ok"
    return {
        "triton_url": str(encoder.options.url),
        "triton_state": state,
        "triton_requests": str(stats.requests),
        "triton_failed_requests": str(stats.failed),
        "triton_refused_in_backoff": str(stats.skipped),
        "triton_recoveries": str(stats.recoveries),
        "triton_wire_dtype": str(encoder.wire_dtype),
    }


def node_status(node_name: str, **info) -> DiagnosticStatus:
    """Facts about the running model (model ids, backend, device, prompt) and callback_errors
    (exceptions the callback guard caught: WARN once there is any)."""
    message = f"{info.get('model', '?')} on {info.get('backend', '?')}/{info.get('device', '?')}"
    errors = int(info.get("callback_errors", 0))
    if errors:
        message += f"; {errors} callback error(s), last: {info.get('last_callback_error')}"
    return DiagnosticStatus(
        level=DiagnosticStatus.WARN if errors else DiagnosticStatus.OK,
        name=f"{node_name}: model",
        message=message,
        hardware_id=node_name,
        values=_kv(**info),
    )


def build_diagnostics(stamp, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = statuses
    return msg
