"""Backend benchmark: naive transformers path = 1.00x vs backend auto, reduced precision, tree.

One run on this machine, full-size random OWL-ViT B/32 @768 + CLIP B/32 (architecture-identical
to the hub checkpoints, built by ros2_owl.demo.random_models), medians of interleaved rounds:

1. the machine's best fp32 (torch / onnxruntime) and bf16 (torch) matrix-multiply rates;
2. per frame `[a person, a car, a dog]`: naive path (text re-encoded, HF processor + full
   forward + HF post-processing) = 1.00x; our predictor with backend auto (fp32; target
   <= 0.45x); the reduced-precision options torch bf16 and ONNX Runtime int8 (target <= 0.35x),
   each with its drift against fp32 (detections matched, box and score drift);
3. the image encoder per backend: FLOP rate (FLOPs counted from its shapes) as a fraction of
   the best GEMM rate of its precision, and the ONNX Runtime kernel profile (what limits it);
4. the tree prompt `[a person [a face, a hand] (standing, sitting)]` with --regions regions,
   for every region_resolution the predictor offers, against our flat prompt.

    python benchmarks/bench_backends.py [--repeats 5] [--cache-dir DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_common import camera_scene, naive_hf_path  # noqa: E402

from ros2_owl.backends.auto import cpu_model  # noqa: E402

FLAT_PROMPT = "[a person, a car, a dog]"
TREE_PROMPT = "[a person [a face, a hand] (standing, sitting)]"


# --------------------------------------------------------------------------- timing helpers


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of fn in ms after warm-up runs, plus every sample."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), samples


def spread(samples: list[float]) -> str:
    return f"(min {min(samples):.0f}, max {max(samples):.0f})"


# --------------------------------------------------------------------------- FLOP counting


def vit_flops(size: int, patch: int, hidden: int, mlp: int, layers: int) -> dict[str, float]:
    """Multiply-add FLOPs (2 per MAC) of a ViT tower with a class token, from its shapes."""
    patches = (size // patch) ** 2
    tokens = patches + 1
    per_layer = {
        "qkv": 2 * tokens * hidden * 3 * hidden,
        "attention": 2 * 2 * tokens * tokens * hidden,  # QK^T and AV
        "out_proj": 2 * tokens * hidden * hidden,
        "mlp": 2 * 2 * tokens * hidden * mlp,
    }
    flops = {"patch_embedding": 2 * patches * 3 * patch * patch * hidden}
    for name, value in per_layer.items():
        flops[name] = layers * value
    return flops


def vision_tower_flops(vision) -> dict[str, float]:
    """vit_flops of a transformers vision config (OWL and CLIP towers alike)."""
    return vit_flops(
        vision.image_size,
        vision.patch_size,
        vision.hidden_size,
        vision.intermediate_size,
        vision.num_hidden_layers,
    )


def owl_encoder_flops(vision, projection_dim: int, objectness: bool) -> dict[str, float]:
    """FLOPs of the OWL image encoder: ViT + box head (+ objectness) + class head."""
    flops = vision_tower_flops(vision)
    patches = (vision.image_size // vision.patch_size) ** 2
    d = vision.hidden_size
    flops["box_head"] = 2 * patches * (2 * d * d + d * 4)
    flops["class_head"] = 2 * patches * (d * projection_dim + 2 * d)
    if objectness:
        flops["objectness_head"] = 2 * patches * (2 * d * d + d)
    return flops


def clip_image_flops(vision, projection_dim: int) -> dict[str, float]:
    """FLOPs of the CLIP image tower plus its projection of the class token."""
    flops = vision_tower_flops(vision)
    flops["projection"] = 2 * vision.hidden_size * projection_dim
    return flops


# --------------------------------------------------------------------------- GEMM rates


def gemm_items(n: int) -> dict[str, Callable[[], object]]:
    """n x n x n matrix multiplies: torch fp32 (both layouts), onnxruntime fp32, torch bf16."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from ros2_owl.backends.onnxruntime_backend import session_options

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    a16, b16 = a.bfloat16(), b.bfloat16()
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])],
        "gemm",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(b.numpy(), "B")],  # constant B: prepacked, like our weights
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    session = ort.InferenceSession(
        model.SerializeToString(), session_options(ort), providers=["CPUExecutionProvider"]
    )
    feed = {"A": a.numpy()}
    return {
        "gemm torch fp32 A@B": lambda: a @ b,
        "gemm torch fp32 A@B.T": lambda: a @ b.T,  # nn.Linear's layout
        "gemm onnxruntime fp32": lambda: session.run(None, feed),
        "gemm torch bf16 A@B.T": lambda: a16 @ b16.T,
    }


# --------------------------------------------------------------------------- contention


class CpuMeter:
    """CPU used by other processes (in cores) while a section ran: system busy minus ours."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")

    def _busy(self) -> float:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return (sum(fields[:8]) - idle) / self.tick

    def start(self) -> tuple[float, float, float]:
        t = os.times()
        return time.perf_counter(), self._busy(), t.user + t.system

    def other_cores(self, mark: tuple[float, float, float]) -> float:
        wall0, busy0, own0 = mark
        t = os.times()
        wall = time.perf_counter() - wall0
        other = (self._busy() - busy0) - (t.user + t.system - own0)
        return max(0.0, other / wall) if wall > 0 else 0.0


class Rounds:
    """Runs every measured item once per round so all items share the same contention."""

    def __init__(self, repeats: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.repeats = repeats
        self.clock = clock
        self.items: dict[str, Callable[[], object]] = {}
        self.samples: dict[str, list[float]] = {}
        self.other: dict[str, list[float]] = {}
        self.last: dict[str, object] = {}
        self.meter = CpuMeter()

    def add(self, name: str, fn: Callable[[], object]) -> None:
        self.items[name] = fn

    def run(self) -> None:
        for fn in self.items.values():  # warm-up
            fn()
        for r in range(self.repeats):
            for name, fn in self.items.items():
                mark = self.meter.start()
                start = self.clock()
                self.last[name] = fn()
                self.samples.setdefault(name, []).append((self.clock() - start) * 1e3)
                self.other.setdefault(name, []).append(self.meter.other_cores(mark))
            print(f"  round {r + 1}/{self.repeats} done", file=sys.stderr, flush=True)

    def ms(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def line(self, name: str) -> str:
        s = self.samples[name]
        load = statistics.mean(self.other[name])
        return f"{self.ms(name):8.1f} ms {spread(s)}  other load {load:.2f} cores"


# --------------------------------------------------------------------------- ORT diagnosis


def ort_profile(onnx_path: str, x: np.ndarray, runs: int = 2) -> dict[str, float]:
    """Per-op-type kernel time (ms per run) of the encoder graph under our session options."""
    import json

    import onnxruntime as ort

    from ros2_owl.backends.onnxruntime_backend import session_options

    opts = session_options(ort)
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.gettempdir(), "ros2_owl_ort_profile")
    session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    session.run(None, {name: x})
    for _ in range(runs):
        session.run(None, {name: x})
    trace = session.end_profiling()
    totals: dict[str, float] = {}
    with open(trace) as f:
        events = json.load(f)
    os.unlink(trace)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            totals[op] = totals.get(op, 0.0) + e["dur"] / 1e3 / (runs + 1)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------- main


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median; >= 3)")
    parser.add_argument("--regions", type=int, default=4, help="regions for the tree prompt")
    parser.add_argument("--gemm-size", type=int, default=3072)
    parser.add_argument("--cache-dir", default=None, help="artefact cache (default: the user's)")
    parser.add_argument("--threads", type=int, default=None, help="torch and ORT threads")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: the calling thread's CPU time (needs --threads 1); immune to other jobs "
        "on a shared machine, but it hides any waiting",
    )
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be >= 3")
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures one thread: use it with --threads 1")
    return args


def region_modes() -> tuple[str | None, ...]:
    """The region resolutions the predictor offers (None: only the native one exists)."""
    import dataclasses

    from ros2_owl.core.predictor import PredictorConfig

    names = {f.name for f in dataclasses.fields(PredictorConfig)}
    return ("native", "adaptive") if "region_resolution" in names else (None,)


def build_variants(owl_id: str, clip_id: str, args) -> dict[str, object]:
    """Our predictor (backend auto, fp32) plus encoders for every precision we compare."""
    from ros2_owl.backends import TorchImageEncoder, make_image_encoder
    from ros2_owl.backends.export import on_device
    from ros2_owl.core.predictor import PredictorConfig, TreePredictor

    config = PredictorConfig(threshold=0.1, max_regions=args.regions)
    start = time.perf_counter()
    ours = TreePredictor.from_pretrained(
        owl_id, clip_id, backend="auto", config=config, cache_dir=args.cache_dir
    )
    print(f"backend auto ready in {time.perf_counter() - start:.1f} s: {ours.backend_summary()}")
    module = ours.owl.encoder
    kw = dict(model_id=owl_id, cache_dir=args.cache_dir, max_batch=max(1, args.regions))
    enc = {
        "onnxruntime fp32": ours.owl_encoder
        if ours.owl_encoder.selection.backend == "onnxruntime"
        else make_image_encoder("onnxruntime", module, **kw),
        "torch fp32": TorchImageEncoder(module),
        "torch bf16": TorchImageEncoder(on_device(module, torch.device("cpu"), torch.bfloat16)),
        "onnxruntime int8": make_image_encoder("onnxruntime", module, dtype="int8", **kw),
    }
    start = time.perf_counter()
    enc["auto allow-reduced"] = make_image_encoder("auto", module, precision="allow-reduced", **kw)
    reduced_choice = enc["auto allow-reduced"].selection
    print(f"auto allow-reduced ({time.perf_counter() - start:.1f} s): {reduced_choice.describe()}")

    def variant(encoder):
        return TreePredictor(ours.owl, ours.clip, encoder, ours.clip_encoder, config)

    flat = {
        "auto fp32": ours,
        "torch bf16": variant(enc["torch bf16"]),
        "onnxruntime int8": variant(enc["onnxruntime int8"]),
        "auto allow-reduced": variant(enc["auto allow-reduced"]),
    }
    return {"ours": ours, "encoders": enc, "flat": flat, "reduced_choice": reduced_choice}


def print_drift(flat: dict, state, image, encoders: dict, pixels, size: int) -> dict:
    """Drift of each reduced precision against fp32: encoder boxes and matched detections."""
    from ros2_owl.core.predictor import PredictorConfig
    from ros2_owl.core.results import match_detections

    # Accuracy without NMS/top-k cuts, so a tiny score change cannot swap which box survives.
    acc_cfg = PredictorConfig(threshold=0.1, nms_iou=None, max_detections=10_000)
    ref = flat["auto fp32"].predict(image, state, acc_cfg).detections
    with torch.inference_mode():
        ref_boxes = encoders["torch fp32"](pixels)["pred_boxes"]
    print("\n== reduced precision vs fp32 (random full-size weights; accuracy on real weights")
    print("   not measured here)")
    drifts = {}
    for name in ("torch bf16", "onnxruntime int8"):
        with torch.inference_mode():
            boxes = encoders[name](pixels)["pred_boxes"]
        enc_drift = float((boxes - ref_boxes).abs().max()) * size
        drift = match_detections(ref, flat[name].predict(image, state, acc_cfg).detections)
        drifts[name] = drift
        print(
            f"{name:18s} encoder pred_boxes max drift {enc_drift:.2f} px of {size}; detections "
            f"{FLAT_PROMPT} @0.1 (640x480): {drift.summary()}"
        )
    return drifts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        os.environ["ROS2_OWL_ORT_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)

    import logging

    import onnxruntime as ort

    from ros2_owl.backends.onnxruntime_backend import default_threads, physical_cores
    from ros2_owl.core.predictor import PredictorConfig
    from ros2_owl.demo.random_models import ensure_random_model

    logging.getLogger("ros2_owl").setLevel(logging.ERROR)  # the random-weights banner
    load_before = os.getloadavg()
    owl_id = str(ensure_random_model("owlvit-base-patch32"))
    clip_id = str(ensure_random_model("clip-vit-base-patch32"))
    image = camera_scene()

    print("ros2_owl backend benchmark")
    print(f"cpu: {cpu_model()}, {os.cpu_count()} logical / {physical_cores()} physical cores")
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
        f"{ort.__version__} ({default_threads()} intra-op threads, graph optimisation all)"
    )
    print(f"models (random weights, hub architecture): {owl_id}\n    {clip_id}")
    print(
        f"image {image.shape[1]}x{image.shape[0]}; {args.repeats} interleaved rounds, medians; "
        f"clock: {'CPU time of the calling thread' if args.clock == 'cpu' else 'wall'}"
    )
    naive = naive_hf_path(owl_id, ["a person", "a car", "a dog"], image)
    built = build_variants(owl_id, clip_id, args)
    ours, enc, flat = built["ours"], built["encoders"], built["flat"]
    vision = ours.owl.model.config.vision_config
    enc_flops = owl_encoder_flops(vision, ours.owl.model.config.projection_dim, objectness=False)
    total_flops = sum(enc_flops.values())
    pixels = torch.randn(
        1, 3, vision.image_size, vision.image_size, generator=torch.Generator().manual_seed(0)
    )
    state, tree_state = ours.prepare(FLAT_PROMPT), ours.prepare(TREE_PROMPT)
    # Threshold 0: always more person candidates than max_regions, so exactly --regions crops.
    tree_cfgs = {
        mode: PredictorConfig(
            threshold=0.0,
            max_regions=args.regions,
            max_detections=10_000,
            **({"region_resolution": mode} if mode else {}),
        )
        for mode in region_modes()
    }

    rounds = Rounds(args.repeats, time.thread_time if args.clock == "cpu" else time.perf_counter)
    gemms = gemm_items(args.gemm_size)
    for name, fn in gemms.items():
        rounds.add(name, fn)
    rounds.add("naive per-frame (HF)", naive)
    for name, predictor in flat.items():
        rounds.add(f"ours {name}", lambda p=predictor: p.predict(image, state))
    for name in ("onnxruntime fp32", "torch fp32", "torch bf16", "onnxruntime int8"):
        rounds.add(f"encoder {name}", lambda e=enc[name]: e(pixels))
    for mode, cfg in tree_cfgs.items():
        rounds.add(f"tree {mode or 'native'}", lambda c=cfg: ours.predict(image, tree_state, c))
    rounds.run()
    load_after = os.getloadavg()
    report(args, rounds, gemms, built, enc_flops, total_flops, vision, tree_cfgs)
    print_drift(flat, state, image, enc, pixels, vision.image_size)
    print_profile(enc["onnxruntime fp32"], pixels, total_flops, enc_flops)
    print_targets(rounds, gemms, args, enc_flops, total_flops, built, tree_cfgs)
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"(machine shared with other jobs; 'other load' above is CPU used by other "
        f"processes during each timed call)"
    )
    return 0


def gemm_rates(rounds, gemms, size: int) -> tuple[dict[str, float], str]:
    gflop = 2.0 * size**3 / 1e9
    rate = {name: gflop / rounds.ms(name) * 1e3 for name in gemms}
    return rate, max((n for n in rate if "fp32" in n), key=rate.get)


def report(args, rounds, gemms, built, enc_flops, total_flops, vision, tree_cfgs) -> None:
    """The measured table: GEMM rates, per-frame ratios, encoder FLOP rates, tree prompt."""
    rate, best_name = gemm_rates(rounds, gemms, args.gemm_size)
    print(f"\n== matrix multiply {args.gemm_size}^3 ({2.0 * args.gemm_size**3 / 1e9:.0f} GFLOP)")
    for name in gemms:
        print(f"{name:28s} {rate[name]:7.0f} GFLOP/s   {rounds.line(name)}")
    naive_ms = rounds.ms("naive per-frame (HF)")
    print(f"\n== per frame, {FLAT_PROMPT}")
    print(f"{'naive per-frame (HF)':28s} {rounds.line('naive per-frame (HF)')}   1.00x")
    for name in built["flat"]:
        key = f"ours {name}"
        print(f"{key:28s} {rounds.line(key)}   {rounds.ms(key) / naive_ms:.2f}x naive")
    stages = rounds.last["ours auto fp32"].timings_ms
    print(
        "    auto fp32 stages (ms, last run): "
        + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    )
    print(
        f"\n== image encoder (OWL-ViT B/32 @{vision.image_size}: {total_flops / 1e9:.1f} GFLOP: "
        + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in enc_flops.items())
        + ")"
    )
    refs = {"bf16": ("gemm torch bf16 A@B.T", "bf16 GEMM")}
    for name in ("onnxruntime fp32", "torch fp32", "torch bf16", "onnxruntime int8"):
        key = f"encoder {name}"
        gemm_key, ref_name = refs.get(name.split()[-1], (best_name, "best fp32 GEMM"))
        flops = total_flops / rounds.ms(key) / 1e6
        print(
            f"{key:28s} {rounds.line(key)}  {flops:6.0f} GFLOP/s = "
            f"{flops / rate[gemm_key]:.2f} of {ref_name}"
        )
    flat_ms = rounds.ms("ours auto fp32")
    print(f"\n== tree {TREE_PROMPT}, {args.regions} regions (backend auto fp32)")
    for mode in tree_cfgs:
        key = f"tree {mode or 'native'}"
        res = rounds.last[key]
        regions = len({d.parent_id for d in res.detections if d.parent_id})
        print(
            f"{key:28s} {rounds.line(key)}   {rounds.ms(key) / flat_ms:.2f}x our flat, "
            f"{rounds.ms(key) / naive_ms:.2f}x naive; {regions} regions with children"
        )
        print(
            "    stages (ms, last run): "
            + ", ".join(f"{k} {v:.1f}" for k, v in res.timings_ms.items())
        )


def print_profile(ort_encoder, pixels, total_flops, enc_flops) -> None:
    """Where the ONNX Runtime fp32 encoder spends its kernel time (what limits its FLOP rate)."""
    print("\n== onnxruntime fp32 encoder profile (kernel ms per run, top ops)")
    prof = ort_profile(str(ort_encoder.onnx_path), pixels.numpy())
    total = sum(prof.values())
    for op, ms in list(prof.items())[:8]:
        print(f"  {op:24s} {ms:7.1f} ms  {ms / total:5.1%}")
    matmul_ms = prof.get("MatMul", 0.0) + prof.get("FusedMatMul", 0.0) + prof.get("Gemm", 0.0)
    matmul_flops = total_flops - enc_flops["patch_embedding"]
    print(
        f"  matrix multiplies: {matmul_ms / total:.0%} of kernel time at "
        f"{matmul_flops / matmul_ms / 1e6:.0f} GFLOP/s; everything else {total - matmul_ms:.0f} ms"
    )


def print_targets(rounds, gemms, args, enc_flops, total_flops, built, tree_cfgs) -> None:
    """The issue's targets, each with its measured value and verdict."""
    rate, best_name = gemm_rates(rounds, gemms, args.gemm_size)
    naive_ms = rounds.ms("naive per-frame (HF)")
    auto = built["ours"].owl_encoder.selection
    ratio = rounds.ms("ours auto fp32") / naive_ms
    reduced = {n: rounds.ms(f"ours {n}") / naive_ms for n in ("torch bf16", "onnxruntime int8")}
    reduced_auto = rounds.ms("ours auto allow-reduced") / naive_ms
    enc_key = "encoder onnxruntime fp32" if auto.backend == "onnxruntime" else "encoder torch fp32"
    frac = total_flops / rounds.ms(enc_key) / 1e6 / rate[best_name]
    flat_ms = rounds.ms("ours auto fp32")
    mode = "adaptive" if "adaptive" in tree_cfgs else None
    tree_ratio = rounds.ms(f"tree {mode or 'native'}") / flat_ms
    print("\n== targets")
    print(
        f"auto ({auto.backend} {auto.dtype}) / naive  {ratio:.2f}x (<= 0.45) {verdict(ratio <= 0.45)}"
    )
    for name, value in reduced.items():
        print(f"{name} / naive{'':12s} {value:.2f}x (<= 0.35) {verdict(value <= 0.35)}")
    choice = built["reduced_choice"]
    print(
        f"auto allow-reduced ({choice.backend} {choice.dtype}) / naive {reduced_auto:.2f}x "
        f"(<= 0.35) {verdict(reduced_auto <= 0.35)}"
    )
    print(
        f"tree {args.regions} regions {mode or 'native'} / our flat  {tree_ratio:.2f}x (<= 2) "
        f"{verdict(tree_ratio <= 2.0)}"
    )
    print(f"{enc_key} FLOP rate / best fp32 GEMM  {frac:.2f} (>= 0.9) {verdict(frac >= 0.9)}")


if __name__ == "__main__":
    sys.exit(main())
