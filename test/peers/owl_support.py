"""Shared helpers of the owl_node tests: start the node process, make frames, read diagnostics.

Imported by test/integration/test_node*.py and by the peer processes (plain module, no pytest fixtures).
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
OWL_NODE = REPO / "scripts" / "owl_node"
PARAMS_FILE = REPO / "config" / "owl.yaml"
PROFILE = REPO / "config" / "fastdds_large_shm.xml"


def owl_node_args(namespace: str, params_file: Path | None = PARAMS_FILE, **params) -> list[str]:
    """`python3 scripts/owl_node --ros-args --params-file config/owl.yaml -p k:=v ...`."""
    args = [sys.executable, str(OWL_NODE), "--ros-args"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    for key, value in params.items():
        if isinstance(value, list | tuple):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        elif isinstance(value, bool):
            value = "true" if value else "false"
        args += ["-p", f"{key}:={value}"]
    return args + ["-r", f"__ns:={namespace}"]


def wait_for_service_or_exit(node, proc, service: str, timeout: float = 120.0) -> None:
    """Wait until the node process offers `service`; fail at once with its log if it died."""
    deadline = time.monotonic() + timeout
    while True:
        names = {name for name, _types in node.get_service_names_and_types()}
        if service in names:
            return
        if not proc.alive():
            raise AssertionError(
                f"owl_node exited {proc.proc.returncode}:\n{proc.output()[-4000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"owl_node offered no {service} in {timeout:.0f}s:\n{proc.output()}"
            )
        time.sleep(0.05)  # graph polling: discovery has no callback in rclpy


def wait_for_log(proc, text: str, timeout: float = 30.0) -> str:
    """Wait until the process log contains `text`; return the log."""
    deadline = time.monotonic() + timeout
    while True:
        out = proc.output()
        if text in out:
            return out
        if time.monotonic() > deadline or not proc.alive():
            raise AssertionError(
                f"{text!r} not in the node log within {timeout:.0f}s:\n{out[-4000:]}"
            )
        time.sleep(0.05)


def scene(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """A synthetic RGB scene: gradient background with a few coloured rectangles."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack(
        [xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), 128 + 0 * xx], -1
    )
    img = img.astype(np.uint8)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        img[y0 : y0 + height // 4, x0 : x0 + width // 4] = rng.integers(0, 256, 3)
    return img


def image_msg(rgb: np.ndarray, stamp_sec: int, frame_id: str = "camera", encoding: str = "rgb8"):
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp.sec = stamp_sec
    msg.header.stamp.nanosec = 500
    msg.header.frame_id = frame_id
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = encoding
    msg.step = rgb.shape[1] * 3
    msg.data = (rgb[:, :, ::-1] if encoding == "bgr8" else rgb).tobytes()
    return msg


def compressed_msg(rgb: np.ndarray, stamp_sec: int, fmt: str = "jpeg", frame_id: str = "camera"):
    from PIL import Image as PILImage
    from sensor_msgs.msg import CompressedImage

    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG" if fmt == "jpeg" else "PNG")
    msg = CompressedImage()
    msg.header.stamp.sec = stamp_sec
    msg.header.frame_id = frame_id
    msg.format = fmt
    msg.data = buf.getvalue()
    return msg


def camera_values(diag_msg, topic: str) -> dict[str, str] | None:
    """The key/values of the status about `topic` in a DiagnosticArray, or None."""
    for status in diag_msg.status:
        if status.name.endswith(": " + topic):
            return {kv.key: kv.value for kv in status.values}
    return None


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def run_peer(script: str, args: list[str], env: dict[str, str], timeout: float = 180.0):
    """Run a peer process to completion; return its last stdout line parsed as JSON."""
    import json

    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise AssertionError(f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spin_in_background(executor) -> Callable[[], None]:
    """Spin `executor` on a thread until the returned stop() is called (it joins the thread)."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()

    def stopper() -> None:
        stop.set()
        spinner.join()

    return stopper
