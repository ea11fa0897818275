"""Per-camera counters, rates and latency percentiles: what the session counts for every front
end (the node reports them as diagnostics, `serve` shows the rate)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["CameraStats", "StatsSnapshot"]


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
