"""Per-camera counters (runtime/stats.py) and node facts, reported as diagnostic_msgs."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ros2_owl.runtime.stats import CameraStats, StatsSnapshot

__all__ = ["CameraStats", "StatsSnapshot", "build_diagnostics", "camera_status", "node_status"]


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
