"""ros/diagnostics.py: per-camera counters, rates, latency percentiles and status levels."""

from __future__ import annotations

import pytest
from fixtures_ros import _import_rclpy


def test_camera_stats_and_status_levels():
    _import_rclpy()
    from diagnostic_msgs.msg import DiagnosticStatus

    from ros2_owl.ros.diagnostics import CameraStats, camera_status

    stats = CameraStats("/cam")
    first = stats.snapshot(now=0.0)
    assert camera_status("/n", first, None, 5.0).level == DiagnosticStatus.WARN  # nothing yet
    for i in range(100):
        stats.frame_received(now=i * 0.1)
        stats.frame_done(latency_ms=float(i + 1), inference_ms=1.0, now=i * 0.1 + 0.05)
    stats.frame_dropped()
    snap = stats.snapshot(now=10.0)
    assert snap.received == 100 and snap.processed == 100 and snap.dropped == 1
    assert snap.latency_p50_ms == pytest.approx(50.5)
    assert snap.latency_p95_ms == pytest.approx(95.05)
    assert snap.input_hz == pytest.approx(10.0, rel=0.05)
    ok = camera_status("/n", snap, first, 5.0)
    assert ok.level == DiagnosticStatus.OK and ok.name == "/n: /cam"
    values = {kv.key: kv.value for kv in ok.values}
    assert values["frames_dropped"] == "1" and values["latency_p95_ms"] == "95.050"
    stats.frame_bad("data has 3 bytes but the header needs 9")
    bad = camera_status("/n", stats.snapshot(now=10.0), snap, 5.0)
    assert bad.level == DiagnosticStatus.WARN and "data has 3 bytes" in bad.message
    stale = stats.snapshot(now=30.0)
    assert stale.input_hz == 0.0
    assert "no frame for 20 s" in camera_status("/n", stale, stale, 5.0).message
