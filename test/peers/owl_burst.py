"""Test peer: a camera that bursts frames at owl_node and times the detections coming back.

usage: owl_burst.py NAMESPACE FRAMES RATE_HZ WIDTH HEIGHT
Publishes FRAMES rgb8 images (stamp.sec = 1..FRAMES) at RATE_HZ on NAMESPACE/image with
SensorDataQoS, after one warm-up frame has come back. Prints one JSON line: frames sent,
results received, the latency of the last frame's result (publish -> detections), the
node's own counters from /diagnostics, and per-result latencies.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from owl_support import camera_values, scene
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray


class Burst:
    def __init__(self, ns: str):
        self.node = rclpy.create_node("owl_burst")
        self.pub = self.node.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
        self.cond = threading.Condition()
        self.results: dict[int, float] = {}  # stamp -> receive time
        self.diag: list[tuple[float, dict]] = []
        self.topic = f"{ns}/image"
        self.node.create_subscription(Detection2DArray, f"{ns}/detections", self.on_result, 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diag, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.spin)
        self.thread.start()

    def spin(self) -> None:
        while not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.executor.remove_node(self.node)
        self.node.destroy_node()

    def on_result(self, msg) -> None:
        with self.cond:
            self.results.setdefault(msg.header.stamp.sec, time.monotonic())
            self.cond.notify_all()

    def on_diag(self, msg) -> None:
        values = camera_values(msg, self.topic)
        if values is not None:
            with self.cond:
                self.diag.append((time.monotonic(), values))
                self.cond.notify_all()

    def wait(self, predicate, timeout: float, what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def main() -> None:
    ns, frames, rate, width, height = sys.argv[1], *map(int, sys.argv[2:6])
    rclpy.init()
    burst = Burst(ns)
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
    msg.header.frame_id = "burst_camera"
    msg.data = scene(width, height).tobytes()
    deadline = time.monotonic() + 60
    while 0 not in burst.results:  # warm-up: discovery done and the pipeline answers
        if time.monotonic() > deadline:
            raise SystemExit("owl_node never answered the warm-up frame")
        burst.pub.publish(msg)
        with burst.cond:
            burst.cond.wait_for(lambda: 0 in burst.results, 0.5)
    sent: dict[int, float] = {}
    start = time.monotonic()
    for i in range(1, frames + 1):
        target = start + (i - 1) / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # source pacing, like a camera
        msg.header.stamp.sec = i
        sent[i] = time.monotonic()
        burst.pub.publish(msg)
    publish_s = time.monotonic() - start
    burst.wait(lambda: frames in burst.results, 30, f"the result of the last frame ({frames})")
    last_latency = burst.results[frames] - sent[frames]
    t_last = burst.results[frames]
    burst.wait(lambda: any(t > t_last for t, _ in burst.diag), 10, "diagnostics after the burst")
    counters = next(v for t, v in burst.diag if t > t_last)
    latencies = sorted(burst.results[s] - sent[s] for s in burst.results if s in sent)
    print(
        json.dumps(
            {
                "sent": frames,
                "publish_s": publish_s,
                "results": len(latencies),
                "last_latency_s": last_latency,
                "max_latency_s": latencies[-1],
                "diagnostics": counters,
            }
        ),
        flush=True,
    )
    burst.close()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
