"""CPU use and resident memory of owl_node in each lifecycle state, over real DDS.

    python benchmarks/bench_node_states.py [--seconds 20] [--rate 5] [--tiny]

Starts `scripts/owl_node` (default: full-size random OWL-ViT B/32 + CLIP B/32, so memory and
compute are those of the real architectures; --tiny: the test models), streams 640x480 rgb8
frames at --rate Hz the whole time, and measures the node process's CPU (user+system seconds
per wall second, 1.0 = one core busy) and RSS in turn: active (streaming), inactive (after
`deactivate`), unconfigured (after `cleanup`), and active again (`configure` + `activate`).
Transitions go through the node's lifecycle services, as `ros2 lifecycle set` does.
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
from ros2_owl.backends.auto import cpu_model  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="measuring time per state")
    p.add_argument("--rate", type=float, default=5.0, help="camera frame rate (Hz)")
    p.add_argument("--tiny", action="store_true", help="tiny test models instead of full-size")
    args = p.parse_args()
    from ros2_owl.ros.dds import large_image_env  # before rclpy loads: Fast DDS reads it once

    os.environ.update(large_image_env(REPO / "config" / "fastdds_large_shm.xml"))
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from peers.owl_support import owl_node_args, scene
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from ros2_owl.demo.random_models import ensure_random_model

    cache = REPO / ".cache" / "test-models"
    owl, clip = (
        ("tiny-owlvit", "tiny-clip")
        if args.tiny
        else ("owlvit-base-patch32", "clip-vit-base-patch32")
    )
    ns = "/bench_states"
    node_cmd = owl_node_args(
        ns,
        model=ensure_random_model(owl, cache),
        clip_model=ensure_random_model(clip, cache),
        prompt='"[a person [a face], a car] (indoor, outdoor)"',
        no_frame_warning=0.0,
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    log = tempfile.NamedTemporaryFile("w+b", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(node_cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    rclpy.init()
    node = rclpy.create_node("bench_node_states")
    results: list[float] = []
    node.create_subscription(
        Detection2DArray, f"{ns}/detections", lambda m: results.append(time.monotonic()), 10
    )
    pub = node.create_publisher(Image, f"{ns}/image", qos_profile_sensor_data)
    change = node.create_client(ChangeState, f"{ns}/owl_node/change_state")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()
    threading.Thread(
        target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
        daemon=True,
    ).start()
    frame = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
    frame.data = scene(640, 480).tobytes()

    def stream() -> None:
        while not stop.wait(1.0 / args.rate):
            pub.publish(frame)

    threading.Thread(target=stream, daemon=True).start()

    def transition(label: str) -> None:
        future = change.call_async(ChangeState.Request(transition=Transition(label=label)))
        deadline = time.monotonic() + 300
        while not future.done():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{label} did not complete:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.05)
        if not future.result().success:
            raise SystemExit(f"{label} failed:\n{Path(log.name).read_text()[-3000:]}")

    def measure(state: str) -> None:
        time.sleep(2.0)  # let the transition settle (threads ending, memory returned)
        n0, c0, t0 = len(results), cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.seconds)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        rate = (len(results) - n0) / (t1 - t0)
        print(
            f"{state:<28} CPU {(c1 - c0) / (t1 - t0):5.2f} cores   RSS {rss_mib(proc.pid):7.0f} MiB"
            f"   results {rate:5.2f}/s",
            flush=True,
        )

    try:
        print(
            f"CPU: {cpu_model()} ({os.cpu_count()} cores); models: {owl} + {clip}; "
            f"640x480 rgb8 at {args.rate:g} Hz; {args.seconds:g} s per state",
            flush=True,
        )
        deadline = time.monotonic() + 300
        while not results:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"owl_node did not answer:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.1)
        measure("active (streaming)")
        transition("deactivate")
        measure("inactive (deactivated)")
        transition("cleanup")
        measure("unconfigured (cleaned up)")
        transition("configure")
        transition("activate")
        measure("active again")
    finally:
        stop.set()
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
