"""CPU cost of camera batching: the node worker's batched call vs one call per camera.

    python benchmarks/bench_camera_batching.py [--cameras 2] [--rounds 8] [--backend auto]
        [--tiny]

With several cameras waiting, owl_node's inference thread encodes their frames in one
`TreePredictor.predict_batch` call (ros/pipeline.py); before, it ran `predict` per frame.
This times both on the same frames, interleaved round by round, and prints process CPU
seconds (all threads; other processes on a shared machine do not inflate it) and wall time
per round, and their ratio. Full-size random OWL-ViT B/32 by default (true compute).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import camera_scene  # noqa: E402

from ros2_owl.backends.auto import cpu_model  # noqa: E402

PROMPT = "[a person, a car, a dog]"


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--backend", default="auto")
    p.add_argument("--tiny", action="store_true", help="tiny test model instead of B/32")
    args = p.parse_args()
    import numpy as np
    import torch

    from ros2_owl.core.predictor import TreePredictor
    from ros2_owl.demo.random_models import ensure_random_model

    name = "tiny-owlvit" if args.tiny else "owlvit-base-patch32"
    predictor = TreePredictor.from_pretrained(
        str(ensure_random_model(name)), None, backend=args.backend
    )
    state = predictor.prepare(PROMPT)
    rng = np.random.default_rng(0)
    frames = [
        np.clip(camera_scene() + rng.integers(-8, 8, (480, 640, 3)), 0, 255).astype(np.uint8)
        for _ in range(args.cameras)
    ]
    print(
        f"CPU: {cpu_model()}, {torch.get_num_threads()} torch threads; {name} "
        f"({predictor.backend_summary()}); {args.cameras} cameras 640x480; prompt {PROMPT}",
        flush=True,
    )

    def batched():
        return predictor.predict_batch(frames, [state] * len(frames))

    def one_by_one():
        return [predictor.predict(f, state) for f in frames]

    def outputs(results):  # everything but the timings
        return [{k: v for k, v in r.to_dict().items() if k != "timings_ms"} for r in results]

    same = outputs(batched()) == outputs(one_by_one())
    runs: dict[str, list[tuple[float, float]]] = {"batched": [], "one by one": []}
    for _ in range(args.rounds):  # interleaved: load changes hit both alike
        runs["batched"].append(timed(batched))
        runs["one by one"].append(timed(one_by_one))
    median = {k: tuple(statistics.median(x[i] for x in v) for i in (0, 1)) for k, v in runs.items()}
    for key, (wall, cpu) in median.items():
        print(f"  {key:<11} {wall * 1000:9.1f} ms wall  {cpu * 1000:9.1f} ms CPU per round")
    b, s = median["batched"], median["one by one"]
    print(
        f"batched / one by one: CPU {b[1] / s[1]:.2f}x, wall {b[0] / s[0]:.2f}x "
        f"(median of {args.rounds}); identical results: {same}"
    )


if __name__ == "__main__":
    main()
