"""The main job end to end over ROS 2: start the colcon-installed owl_node, stream the bundled
sample images to it over DDS, change the prompt by service, and print what came back.

Run through `bash tools/run_demo.sh` (which sets up and sources the environment first).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_large_shm.xml"
NAMESPACE = "/owl_demo"
PROMPT = "[a person [a face], a cat, a cup] (indoors, outdoors)"
SECOND_PROMPT = "[a cat@0.05, a dog]"

# Sample frames are larger than Fast DDS's 512 KiB default shared-memory segment: both this
# process and the node use the shipped profile (read once, when the first participant starts).
from ros2_owl.ros.dds import large_image_env  # noqa: E402  (no rclpy import)

os.environ.update(large_image_env(PROFILE))

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_prefix  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data  # noqa: E402
from ros2_owl.msg import TreeDetectionArray  # noqa: E402
from ros2_owl.srv import SetPrompt  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

from ros2_owl.demo.fallback import demo_models  # noqa: E402
from ros2_owl.io.images import image_to_rgb, rgb_to_image_msg  # noqa: E402


class Inbox:
    """Messages of one topic, keyed by the header's frame_id, with a wait for a given key."""

    def __init__(self):
        self.by_frame: dict[str, object] = {}
        self.cond = threading.Condition()

    def __call__(self, msg) -> None:
        with self.cond:
            self.by_frame[msg.header.frame_id] = msg
            self.cond.notify_all()

    def wait(self, frame_id: str, timeout: float):
        with self.cond:
            if not self.cond.wait_for(lambda: frame_id in self.by_frame, timeout):
                raise SystemExit(f"demo: no result for frame {frame_id!r} within {timeout:.0f} s")
            return self.by_frame[frame_id]


def print_result(tree: TreeDetectionArray, dets: Detection2DArray, latency_ms: float) -> None:
    print(f"  {len(dets.detections)} detection(s) in {latency_ms:.0f} ms (publish -> received)")
    shown = sorted(tree.detections, key=lambda d: -d.score)[:5]
    for det in shown:
        b = det.bbox
        x0, y0 = b.center.position.x - b.size_x / 2, b.center.position.y - b.size_y / 2
        x1, y1 = x0 + b.size_x, y0 + b.size_y
        classes = "; ".join(
            ", ".join(f"{s.class_id}={s.score:.2f}" for s in c.results) for c in det.classifications
        )
        print(
            f"    #{det.id} (in #{det.parent_id}) {det.class_id!r} score={det.score:.3f} "
            f"box=({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f})" + (f" [{classes}]" if classes else "")
        )
    if len(tree.detections) > len(shown):
        print(f"    ... and {len(tree.detections) - len(shown)} more")
    for c in tree.image_classifications:
        print("    whole image: " + ", ".join(f"{s.class_id}={s.score:.2f}" for s in c.results))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="google/owlvit-base-patch32")
    parser.add_argument("--clip-model", default="openai/clip-vit-base-patch32")
    parser.add_argument("--full-size", action="store_true", help="random fallback at real size")
    parser.add_argument("--out", default=str(REPO / ".cache" / "demo"), help="annotated images")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per frame at most")
    args = parser.parse_args()

    owl, clip, random_weights = demo_models(args.model, args.clip_model, full_size=args.full_size)
    node_exe = Path(get_package_prefix("ros2_owl")) / "lib" / "ros2_owl" / "owl_node"
    print(f"[demo] starting {node_exe} (what `ros2 run ros2_owl owl_node` runs) in {NAMESPACE}")
    cmd = [sys.executable, str(node_exe), "--ros-args",
           "--params-file", str(REPO / "config" / "owl.yaml"),
           "-p", f"model:={owl}", "-p", f"clip_model:={clip}", "-p", f"prompt:='{PROMPT}'",  # YAML: quote the brackets
           "-p", "threshold:=0.1", "-r", f"__ns:={NAMESPACE}"]  # fmt: skip
    node_proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    rclpy.init()
    node = rclpy.create_node("owl_demo_client")
    dets, trees, annotated = Inbox(), Inbox(), Inbox()
    labels: list[LabelInfo] = []
    node.create_subscription(Detection2DArray, f"{NAMESPACE}/detections", dets, 10)
    node.create_subscription(TreeDetectionArray, f"{NAMESPACE}/tree", trees, 10)
    node.create_subscription(Image, f"{NAMESPACE}/annotated_image", annotated, 10)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(LabelInfo, f"{NAMESPACE}/label_info", labels.append, latched)
    pub = node.create_publisher(Image, f"{NAMESPACE}/image", qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinning = True

    def spin() -> None:
        while spinning:
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin)
    spinner.start()
    code = 1
    try:
        client = node.create_client(SetPrompt, f"{NAMESPACE}/owl_node/set_prompt")
        print("[demo] waiting for owl_node to load its models ...")
        deadline = time.monotonic() + 300
        while not client.wait_for_service(timeout_sec=0.5):
            if node_proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"demo: owl_node did not come up (exit code {node_proc.poll()})")
        while pub.get_subscription_count() < 1:
            time.sleep(0.05)  # discovery of the node's image subscription

        def run_frames(tag: str) -> None:
            for path in sorted((REPO / "samples").glob("*.jpg")):
                rgb = np.asarray(PILImage.open(path).convert("RGB"))
                msg = rgb_to_image_msg(rgb)
                msg.header.frame_id = f"{tag}/{path.name}"
                msg.header.stamp = node.get_clock().now().to_msg()
                print(f"[demo] {path.name} ({rgb.shape[1]}x{rgb.shape[0]}) -> {NAMESPACE}/image")
                start = time.monotonic()
                while True:  # best-effort: resend if the frame was lost or replaced
                    pub.publish(msg)
                    try:
                        tree = trees.wait(msg.header.frame_id, min(args.timeout, 20.0))
                        break
                    except SystemExit:
                        if time.monotonic() - start > args.timeout:
                            raise
                latency = (time.monotonic() - start) * 1000
                print_result(tree, dets.wait(msg.header.frame_id, 10), latency)
                try:
                    img = annotated.wait(msg.header.frame_id, 10)
                    target = out_dir / f"{tag}-{path.stem}.png"
                    PILImage.fromarray(image_to_rgb(img)).save(target)
                    print(f"    annotated image -> {target}")
                except SystemExit:
                    print("    (no annotated image)")

        print(f"[demo] prompt: {PROMPT}")
        run_frames("first")
        if labels:
            names = [c.class_name for c in labels[-1].class_map]
            print(f"[demo] label_info (transient local): {names}")

        for prompt in ("[a cat, (broken", SECOND_PROMPT):
            print(f"[demo] set_prompt {prompt!r}")
            future = client.call_async(SetPrompt.Request(prompt=prompt))
            done = threading.Event()
            future.add_done_callback(lambda _f, done=done: done.set())
            if not done.wait(30):
                raise SystemExit("demo: set_prompt did not answer")
            res = future.result()
            print(f"  success={res.success} message={res.message!r} labels={list(res.labels)}")
        run_frames("second")
        code = 0
    finally:
        spinning = False
        spinner.join()
        node_proc.send_signal(signal.SIGINT)
        try:
            node_proc.wait(15)
        except subprocess.TimeoutExpired:
            node_proc.kill()
        node.destroy_node()
        rclpy.shutdown()
    if random_weights:
        print("[demo] reminder: RANDOM WEIGHTS were used; the detections above are meaningless.")
    print(f"[demo] done: owl_node exited {node_proc.returncode}; annotated images in {out_dir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
