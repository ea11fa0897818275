"""SAM masks' cost per frame against the detector alone: full-size random SAM ViT-B + OWL-ViT B/32.

One run, one machine (the CPU model is printed): the detector's frame (flat prompt, 640x480),
then SAM's image embedding once per frame plus one batched mask-decoder call for 1, 5 and 20
boxes. Random weights: compute cost only, no accuracy.

    python benchmarks/bench_sam.py [--iters 3] [--cache-dir DIR] [--onnxruntime]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_common import camera_scene  # noqa: E402

from ros2_owl.backends.auto import cpu_model  # noqa: E402
from ros2_owl.core.predictor import TreePredictor  # noqa: E402
from ros2_owl.core.preprocess import load_image  # noqa: E402
from ros2_owl.demo.random_models import default_cache_dir, ensure_random_model  # noqa: E402
from ros2_owl.models.sam import SamSegmenter  # noqa: E402

BOX_COUNTS = (1, 5, 20)


def median_ms(fn, iters: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def boxes(n: int, width: int, height: int) -> torch.Tensor:
    """n boxes spread over the frame (what a detector hands SAM)."""
    g = torch.Generator().manual_seed(n)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([width * 0.7, height * 0.7])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([width * 0.3, height * 0.3]) + 8
    return torch.cat([xy, xy + wh], dim=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3, help="timed frames per figure (median)")
    parser.add_argument("--cache-dir", default=None, help="random models (default: the cache)")
    parser.add_argument(
        "--onnxruntime", action="store_true", help="also time SAM's encoder on ONNX Runtime"
    )
    args = parser.parse_args(argv)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    owl = ensure_random_model("owlvit-base-patch32", cache)
    sam = ensure_random_model("sam-vit-base", cache)
    predictor = TreePredictor.from_pretrained(str(owl), None, backend="torch")
    segmenter = SamSegmenter.load(str(sam))
    frame = camera_scene(480, 640)
    image = load_image(frame)
    state = predictor.prepare("[a person, a car, a dog]")
    detector = median_ms(lambda: predictor.predict(frame, state), args.iters)
    print(f"detector alone (OWL-ViT B/32 @768, torch fp32): {detector:8.1f} ms/frame")
    pixels, resized = segmenter.pixels(image)
    embed = median_ms(lambda: segmenter.embed(pixels), args.iters)
    print(f"SAM ViT-B image embedding @{segmenter.size}, once per frame: {embed:8.1f} ms")
    if args.onnxruntime:  # the same encoder exported to ONNX Runtime (export + check first)
        start = time.perf_counter()
        ort = SamSegmenter.load(str(sam), backend="onnxruntime", artefact_dir=str(cache))
        ready = time.perf_counter() - start
        ort_ms = median_ms(lambda: ort.embed(pixels), args.iters)
        print(
            f"  the same on onnxruntime: {ort_ms:8.1f} ms = {ort_ms / embed:.2f}x torch "
            f"(export, check and load {ready:.0f} s, once: cached)"
        )
        del ort
    embeddings = segmenter.embed(pixels)
    for n in BOX_COUNTS:
        b = boxes(n, 640, 480)
        decode = median_ms(
            lambda b=b: segmenter.mask_logits(embeddings, b, (480, 640), resized), args.iters
        )
        whole = median_ms(lambda b=b: segmenter.segment(image, b), args.iters)
        print(
            f"{n:2d} boxes: decoder {decode:7.1f} ms; SAM in all {whole:8.1f} ms; "
            f"detector + SAM {detector + whole:8.1f} ms = {(detector + whole) / detector:.2f}x "
            "the detector alone"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
