"""Time to first detection of owl_node, cold cache against warm cache, in one run.

    python benchmarks/bench_first_detection.py [--tiny] [--cache-dir EMPTY_DIR]

Full-size random OWL-ViT B/32 + CLIP B/32 (ros2_owl/demo/random_models.py; same compute as the
real models), backend auto, backend_upgrade background, a 640x480 frame published every 0.25 s:

1. cold: an empty artefact cache; launch -> first `detections` message (torch serves at once);
   RSS while torch serves; then frames stop, the background upgrade exports and measures on the
   idle CPU; one frame after the swap: RSS again and the drift of its detections;
2. warm: a new node process on the cache the cold run filled; launch -> first `detections`.

Prints the CPU model, both times, their ratio (goal: cold <= 1.5x warm), RSS and drift.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "test"))
NS = "/bench_first"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny random models (checks the script)")
    p.add_argument("--cache-dir", help="an empty directory for the artefacts (default: a temp dir)")
    p.add_argument("--prompt", default="[a person, a car, a dog]")
    p.add_argument("--upgrade-timeout", type=float, default=3600.0)
    return p.parse_args()


class Probe:
    """Publishes frames and keeps the detections and the node's model diagnostics."""

    def __init__(self, node, image) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        self.cond = threading.Condition()
        self.results: dict[int, tuple[float, object]] = {}
        self.model: dict[str, str] = {}
        h, w = image.shape[:2]
        self.msg = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=image.tobytes())
        self.pub = node.create_publisher(Image, f"{NS}/image", qos_profile_sensor_data)
        node.create_subscription(Detection2DArray, f"{NS}/detections", self._on_result, 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_result(self, msg) -> None:
        with self.cond:
            self.results.setdefault(msg.header.stamp.sec, (time.monotonic(), msg))
            self.cond.notify_all()

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name == f"{NS}/owl_node: model":
                with self.cond:
                    self.model = {kv.key: kv.value for kv in status.values}
                    self.cond.notify_all()

    def frame_until_result(self, proc, stamp: int, timeout: float) -> tuple[float, object]:
        """Publish frame `stamp` every 0.25 s until its detections come back."""
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"owl_node gave no detections (exit {proc.poll()})")
            self.msg.header.stamp.sec = stamp
            self.pub.publish(self.msg)
            with self.cond:
                if self.cond.wait_for(lambda: stamp in self.results, 0.25):
                    return self.results[stamp]

    def wait_upgrade(self, timeout: float) -> str:
        with self.cond:
            self.cond.wait_for(
                lambda: (
                    self.model.get("backend_upgrade", "").split(" ")[0]
                    in ("swapped", "kept", "failed", "cancelled")
                ),
                timeout,
            )
            return self.model.get("backend_upgrade", "?")


def start_node(model: str, clip: str, cache: str, prompt: str, log_path: Path):
    from peers.owl_support import owl_node_args

    args = owl_node_args(
        NS,
        model=model,
        clip_model=clip,
        cache_dir=cache,
        prompt=f'"{prompt}"',
        threshold=0.1,
        no_frame_warning=0.0,
        diagnostics_period=1.0,
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    log = open(log_path, "wb")  # noqa: SIM115  the child writes it until it ends
    return time.monotonic(), subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)


def stop_node(proc) -> None:
    proc.send_signal(2)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def drift(before, after) -> str:
    """Largest score and box-centre change between two frames' detections (paired in order)."""
    a, b = before.detections, after.detections
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} detections"
    if not a:
        return "no detections to compare"
    ds = max(
        abs(x.results[0].hypothesis.score - y.results[0].hypothesis.score)
        for x, y in zip(a, b, strict=True)
    )
    dx = max(
        max(
            abs(x.bbox.center.position.x - y.bbox.center.position.x),
            abs(x.bbox.center.position.y - y.bbox.center.position.y),
        )
        for x, y in zip(a, b, strict=True)
    )
    return f"{len(a)} detections, score drift max {ds:.2e}, box centre drift max {dx:.3f} px"


def main() -> int:
    args = parse_args()
    from ros2_owl.ros.dds import large_image_env

    os.environ.update(large_image_env(REPO / "config" / "fastdds_large_shm.xml"))
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    import rclpy
    from bench_common import camera_scene
    from peers.owl_support import rss_kib, spin_in_background
    from rclpy.executors import SingleThreadedExecutor

    from ros2_owl.backends.auto import cpu_model
    from ros2_owl.demo.random_models import ensure_random_model

    names = (
        ("tiny-owlvit", "tiny-clip")
        if args.tiny
        else ("owlvit-base-patch32", "clip-vit-base-patch32")
    )
    model, clip = (str(ensure_random_model(n)) for n in names)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="bench-first-")
    if any(Path(cache).glob("*/*")):
        raise SystemExit(f"--cache-dir {cache} is not empty: the cold run needs an empty cache")
    logs = Path(tempfile.mkdtemp(prefix="bench-first-logs-"))
    rclpy.init()
    node = rclpy.create_node("bench_first_detection")
    probe = Probe(node, camera_scene())
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop_spinning = spin_in_background(executor)
    try:
        t0, proc = start_node(model, clip, cache, args.prompt, logs / "cold.log")
        t_first, first = probe.frame_until_result(proc, 1, 900)
        cold = t_first - t0
        for stamp in (2, 3):
            probe.frame_until_result(proc, stamp, 120)
        rss_torch = rss_kib(proc.pid) / 1024
        print(
            f"cold: first detections {cold:.1f} s after launch; serving torch, RSS {rss_torch:.0f} MiB",
            flush=True,
        )
        upgrade = probe.wait_upgrade(args.upgrade_timeout)
        print(f"cold: background upgrade {upgrade}", flush=True)
        _, after = probe.frame_until_result(proc, 10, 120)  # the first frame after the swap
        probe.frame_until_result(proc, 11, 120)
        rss_swapped = rss_kib(proc.pid) / 1024
        stop_node(proc)
        t0, proc = start_node(model, clip, cache, args.prompt, logs / "warm.log")
        t_first, _ = probe.frame_until_result(proc, 101, 900)
        warm = t_first - t0
        for stamp in (102, 103):
            probe.frame_until_result(proc, stamp, 120)
        rss_warm = rss_kib(proc.pid) / 1024
        choice = probe.model.get("backend_choice", "?")
        stop_node(proc)
    finally:
        stop_spinning()
        node.destroy_node()
        rclpy.try_shutdown()
    print(
        f"\nowl_node time to first detection, {Path(model).name} + {Path(clip).name}, backend auto,"
    )
    print(f"640x480 rgb8, prompt {args.prompt!r}; CPU: {cpu_model()} ({os.cpu_count()} CPUs)")
    print(f"  cold cache (serves torch, upgrades in the background): {cold:7.1f} s")
    print(f"  warm cache (the cached winner from the start):         {warm:7.1f} s")
    print(f"  cold / warm: {cold / warm:.2f}x (goal <= 1.5x)")
    print(
        f"  RSS: torch serving {rss_torch:.0f} MiB, after the swap {rss_swapped:.0f} MiB "
        f"({rss_swapped / rss_torch:.2f}x), warm start {rss_warm:.0f} MiB"
    )
    print(f"  upgrade: {upgrade}")
    print(f"  warm start: {choice}")
    print(f"  detections torch frame vs first frame after the swap: {drift(first, after)}")
    print(f"  node logs in {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
