"""End-to-end latency of owl_node: Image published -> Detection2DArray received, over real DDS.

    python benchmarks/bench_node_latency.py [--frames 100] [--width 640 --height 480]
        [--model DIR_OR_HUB_ID --clip-model ...] [--prompt "[a person, a car]"] [--no-profile]

Starts `scripts/owl_node` in its own process (default: the tiny random test models, so the
number is the node's overhead plus a tiny model, not a real model's speed), sends one frame at
a time (the next only after the previous result: latency without queueing), and prints the
median / p95 round trip together with the node's own view from /diagnostics (receive ->
publish, and the predictor's share of it). Uses the shipped Fast DDS profile unless
--no-profile: a 640x480 rgb8 frame (921,600 bytes) exceeds Fast DDS's default 512 KiB
shared-memory segment.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "test"))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--prompt", default="[a person, a car]")
    p.add_argument("--threshold", type=float, default=0.1, help="detection threshold")
    p.add_argument("--model", help="OWL model (default: tiny random test model)")
    p.add_argument("--clip-model", help="CLIP model (default: tiny random test model)")
    p.add_argument("--no-profile", action="store_true", help="Fast DDS defaults (no large SHM)")
    return p.parse_args()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    args = parse_args()
    if not args.no_profile:  # before rclpy loads: Fast DDS reads it once per process
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_large_shm.xml")
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"
    else:
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from peers.owl_support import camera_values, owl_node_args, scene, spin_in_background
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from ros2_owl.demo.random_models import ensure_random_model

    model = args.model or str(ensure_random_model("tiny-owlvit"))
    clip_model = args.clip_model or str(ensure_random_model("tiny-clip"))
    ns = "/bench"
    node_cmd = owl_node_args(
        ns,
        model=model,
        clip_model=clip_model,
        prompt=f'"{args.prompt}"',
        threshold=float(args.threshold),
        no_frame_warning=0.0,
        diagnostics_period=0.5,
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    log = tempfile.NamedTemporaryFile("w+b", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(node_cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    rclpy.init()
    node = rclpy.create_node("bench_node_latency")
    cond = threading.Condition()
    received: dict[int, float] = {}
    counts: list[int] = []
    diag: list[dict] = []

    def on_result(msg) -> None:
        with cond:
            if msg.header.stamp.sec not in received:
                received[msg.header.stamp.sec] = time.perf_counter()
                counts.append(len(msg.detections))
            cond.notify_all()

    def on_diag(msg) -> None:
        values = camera_values(msg, f"{ns}/image")
        if values:
            with cond:
                diag.append(values)

    pub = node.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
    node.create_subscription(Detection2DArray, f"{ns}/detections", on_result, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop_spinning = spin_in_background(executor)
    msg = Image(height=args.height, width=args.width, encoding="rgb8", step=args.width * 3)
    msg.data = scene(args.width, args.height).tobytes()
    latencies: list[float] = []
    lost = 0
    try:
        stamp, deadline = 0, time.monotonic() + 120
        while not received:  # node start-up (model load) and discovery
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"owl_node did not answer:\n{log.read().decode()[-3000:]}")
            msg.header.stamp.sec = stamp
            pub.publish(msg)
            with cond:
                cond.wait_for(lambda: bool(received), 0.5)
        for i in range(1, args.warmup + args.frames + 1):
            stamp = 1000 + i
            msg.header.stamp.sec = stamp
            sent = time.perf_counter()
            pub.publish(msg)
            with cond:
                ok = cond.wait_for(lambda s=stamp: s in received, 5.0)
            if not ok:
                lost += 1
                continue
            if i > args.warmup:
                latencies.append((received[stamp] - sent) * 1e3)
        with cond:
            cond.wait_for(lambda: len(diag) >= 2, 3.0)
            node_view = diag[-1] if diag else {}
    finally:
        stop_spinning()
        node.destroy_node()
        rclpy.try_shutdown()
        proc.send_signal(2)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(
        f"owl_node end-to-end latency, {args.width}x{args.height} rgb8, prompt {args.prompt!r}, "
        f"threshold {args.threshold:g} ({statistics.mean(counts or [0]):.0f} detections/frame), "
        f"model {Path(model).name}, {len(latencies)} frames (+{args.warmup} warm-up), "
        f"{'Fast DDS large-SHM profile' if not args.no_profile else 'Fast DDS defaults'}, "
        f"{os.cpu_count()} CPUs"
    )
    if latencies:
        print(
            f"  publish -> detections: median {statistics.median(latencies):.1f} ms, "
            f"p95 {percentile(latencies, 95):.1f} ms, min {min(latencies):.1f} ms, "
            f"max {max(latencies):.1f} ms"
        )
    if node_view:
        print(
            f"  inside the node (receive -> publish): p50 {float(node_view['latency_p50_ms']):.1f} "
            f"ms, p95 {float(node_view['latency_p95_ms']):.1f} ms; of which predictor p50 "
            f"{float(node_view['inference_p50_ms']):.1f} ms"
        )
    if lost:
        print(f"  {lost} frame(s) got no result within 5 s (best-effort loss)")
    return 0 if latencies else 1


if __name__ == "__main__":
    sys.exit(main())
