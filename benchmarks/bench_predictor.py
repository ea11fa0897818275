"""Predictor benchmark: naive per-frame transformers path vs our steady state vs a tree prompt.

    python benchmarks/bench_predictor.py                 # random full-size B/32 @768, CPU
    python benchmarks/bench_predictor.py --runs 7 --backend onnxruntime

(a) what a naive ROS wrapper runs per frame: processor (tokenise the labels + preprocess the
    image) + OwlViTForObjectDetection forward (text and vision) + post_process_object_detection;
(b) TreePredictor.predict in steady state for `[a person, a car, a dog]` (text cached);
(c) the tree `[a person [a face, a hand] (standing, sitting)]` with exactly --regions person
    regions (threshold 0 so there are always more candidates than max_regions).
One run: a warm-up of each, then --runs rounds of (a), (b), (c) interleaved, medians printed;
interleaving keeps the ratios fair when other processes load a shared CPU.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import camera_scene, naive_hf_path  # noqa: E402

from ros2_owl.core.predictor import PredictorConfig, TreePredictor  # noqa: E402
from ros2_owl.demo.random_models import ensure_random_model  # noqa: E402

FLAT = "[a person, a car, a dog]"
TREE = "[a person [a face, a hand] (standing, sitting)]"


def interleaved_medians(fns: dict, runs: int) -> tuple[dict[str, float], dict[str, object]]:
    """Median wall time per function over `runs` rounds (one warm-up each), interleaved.

    Each round runs every function once, so load from other processes on a shared CPU hits
    all of them alike and the ratios stay meaningful even when absolute times drift.
    """
    last = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            last[name] = fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}, last


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="OWL model (default: random full-size B/32 @768)")
    parser.add_argument("--clip-model", help="CLIP model (default: random full-size B/32)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be >= 5 (the median of at least five runs is reported)")

    root = Path(args.cache_dir) / "random-models" if args.cache_dir else None
    owl_id = args.model or str(ensure_random_model("owlvit-base-patch32", root))
    clip_id = args.clip_model or str(ensure_random_model("clip-vit-base-patch32", root))
    image = camera_scene()
    labels = ["a person", "a car", "a dog"]

    # (a) naive per-frame transformers path
    naive = naive_hf_path(owl_id, labels, image, args.device)

    # (b) our steady state, flat prompt
    config = PredictorConfig(threshold=0.1, max_regions=args.regions)
    predictor = TreePredictor.from_pretrained(
        owl_id, clip_id, device=args.device, dtype=args.dtype, backend=args.backend, config=config
    )
    flat = predictor.prepare(FLAT)

    # (c) the tree with a fixed number of regions
    tree_cfg = PredictorConfig(threshold=0.0, max_regions=args.regions, max_detections=10_000)
    tree = predictor.prepare(TREE)
    fns = {
        "a": naive,
        "b": lambda: predictor.predict(image, flat),
        "c": lambda: predictor.predict(image, tree, tree_cfg),
    }
    ms, last = interleaved_medians(fns, args.runs)
    (ms_a, ms_b, ms_c), res_b, res_c = (ms["a"], ms["b"], ms["c"]), last["b"], last["c"]
    regions = len({d.parent_id for d in res_c.detections if d.parent_id})

    head = f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    print(f"ros2_owl predictor benchmark ({head}, backend {args.backend}/{args.dtype})")
    print(f"models: {owl_id}\n        {clip_id}")
    size = f"{image.shape[1]}x{image.shape[0]}"
    print(f"image {size}, median of {args.runs} interleaved rounds after 1 warm-up each")
    print(f"(a) naive per-frame HF (text+vision forward + post-process): {ms_a:8.1f} ms  1.00x")
    print(f"(b) ours, steady state {FLAT}: {ms_b:8.1f} ms  {ms_a / ms_b:.2f}x faster than (a)")
    ratios = f"{ms_c / ms_a:.2f}x the time of (a), {ms_c / ms_b:.2f}x (b)"
    print(f"(c) ours, {TREE} with {regions} regions: {ms_c:8.1f} ms  {ratios}")
    for name, res in (("(b)", res_b), ("(c)", res_c)):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in res.timings_ms.items())
        print(f"    {name} last run stages (ms): {stages}")
    print(f"    (c) detections {len(res_c.detections)}, dropped regions {res_c.dropped_regions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
