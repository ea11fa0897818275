"""Per-frame cost of track ids and of 3D boxes for 100 detections, against the frame without them.

    python benchmarks/bench_tracking_depth.py             # random full-size B/32, CPU
    python benchmarks/bench_tracking_depth.py --tiny      # tiny random model (quick check)

(a) TreePredictor.predict on a 640x480 camera frame with `[a person [a face], a car]`,
    threshold 0 and max_detections 100, so the frame has exactly 100 detections (root and
    nested): the frame without tracking or 3D;
(b) CameraTracker.update on that result, the boxes shifted a little every frame (a moving
    scene, so ByteTrack's Kalman filters and matching do real work);
(c) boxes_3d for the same 100 boxes on a 640x480 16UC1 depth frame (with holes).
Each round runs (a) once and (b), (c) for --frames frames; medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import camera_scene  # noqa: E402

from ros2_owl.backends.auto import cpu_model  # noqa: E402
from ros2_owl.core.depth import PinholeIntrinsics, boxes_3d  # noqa: E402
from ros2_owl.core.predictor import PredictorConfig, TreePredictor  # noqa: E402
from ros2_owl.core.tracking import CameraTracker, TrackingConfig  # noqa: E402
from ros2_owl.demo.random_models import ensure_random_model  # noqa: E402

PROMPT = "[a person [a face], a car]"
DETECTIONS = 100


def depth_frame(height: int = 480, width: int = 640) -> np.ndarray:
    """A 16UC1 depth frame: a sloped floor/wall in millimetres with 10 % holes."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:height, 0:width]
    depth = (1500 + 2 * yy + xx).astype(np.uint16)
    depth[rng.random(depth.shape) < 0.1] = 0
    return depth


def shifted(result, t: int):
    """The result with every box moved back and forth (nested ones with their parents)."""
    step = t % 40 if t % 40 < 20 else 40 - t % 40  # a triangle wave: smooth, bounded motion
    dx, dy = 2.0 * step, 1.0 * step
    moved = tuple(
        replace(d, box=(d.box[0] + dx, d.box[1] + dy, d.box[2] + dx, d.box[3] + dy))
        for d in result.detections
    )
    return replace(result, detections=moved)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random model instead")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=40, help="tracked frames per round")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    if args.rounds < 5:
        parser.error("--rounds must be >= 5 (the median of at least five rounds is reported)")

    root = Path(args.cache_dir) / "random-models" if args.cache_dir else None
    owl_id = str(ensure_random_model("tiny-owlvit" if args.tiny else "owlvit-base-patch32", root))
    config = PredictorConfig(threshold=0.0, max_detections=DETECTIONS, max_regions=4)
    predictor = TreePredictor.from_pretrained(owl_id, None, config=config)
    state = predictor.prepare(PROMPT)
    image = camera_scene()
    depth = depth_frame()
    camera = PinholeIntrinsics.from_k((525, 0, 319.5, 0, 525, 239.5, 0, 0, 1), 640, 480)
    tracker = CameraTracker(TrackingConfig(max_missed_frames=30))

    result = predictor.predict(image, state)  # warm-up
    boxes = [d.box for d in result.detections]
    tracker.update(result)
    boxes_3d(boxes, depth, "16UC1", camera)
    frame_ms, track_ms, depth_ms, t = [], [], [], 0
    for _ in range(args.rounds):
        start = time.perf_counter()
        result = predictor.predict(image, state)
        frame_ms.append((time.perf_counter() - start) * 1e3)
        for _ in range(args.frames):
            t += 1
            moved = shifted(result, t)
            start = time.perf_counter()
            tracked = tracker.update(moved)
            track_ms.append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            out = boxes_3d([d.box for d in moved.detections], depth, "16UC1", camera)
            depth_ms.append((time.perf_counter() - start) * 1e3)
    frame, track, three_d = (statistics.median(x) for x in (frame_ms, track_ms, depth_ms))
    nested = sum(1 for d in result.detections if d.parent_id)
    with_ids = sum(1 for d in tracked.detections if d.track_id)

    print(f"ros2_owl tracking + 3D benchmark (CPU: {cpu_model()}, torch {torch.__version__}, ")
    print(f"  {torch.get_num_threads()} threads); model {owl_id}")
    print(
        f"frame: {PROMPT} on {image.shape[1]}x{image.shape[0]}, {len(result.detections)} "
        f"detections ({nested} nested); median of {args.rounds} rounds, "
        f"{args.rounds * args.frames} tracked frames"
    )
    print(f"(a) frame without tracking/3D (predict): {frame:9.2f} ms  1.00x")
    print(f"(b) tracking, per frame:                 {track:9.3f} ms  {track / frame:.4f}x (a)")
    print(f"(c) 3D from 16UC1 depth, per frame:      {three_d:9.3f} ms  {three_d / frame:.4f}x (a)")
    print(f"(a)+(b)+(c) = {(frame + track + three_d) / frame:.3f}x (a)")
    print(
        f"    last frame: {with_ids} detections with track ids, {sum(b is not None for b in out)}"
    )
    print(f"    with a 3D box; active tracks {tracker.active_tracks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
