"""GPU benchmark: OWL-ViT B/32 @768 encoder and the whole predictor on CUDA, fp16.

One run on an NVIDIA GPU (run by tools/gpu_check.sh), full-size random OWL-ViT B/32 + CLIP B/32
(architecture-identical to the hub checkpoints, same compute), prints and writes to --results:

1. machine: GPU name, driver, torch, CUDA, cuDNN, transformers, onnxruntime, tensorrt versions;
2. image encoder, batch 1/2/4/8: eager fp16 vs CUDA graphs (captured once per batch size) vs
   torch.compile (batch 1 and 8, while time is left) -- ms per call and images/s;
3. end to end, flat prompt `[a person, a car, a dog]`, 640x480 and 1280x720 uint8 frames from
   host memory: eager and with the CUDA-graph encoder -- ms/frame and FPS (target >= 500);
4. several cameras: 1/2/4/8 frames per call (predict_batch when the predictor has it, else
   one predict per frame) -- aggregate FPS (target >= 1500 with 8);
5. tree prompt `[a person [a face, a hand] (standing, sitting)]` with 4 regions, for every
   region_resolution the predictor offers;
6. a profile of one flat-prompt frame (torch.profiler, CPU + CUDA), top ops, chrome trace.

``--dry-run`` runs every section on the CPU with the tiny test models and 2 iterations, so the
script is exercised where no GPU exists (CI); its numbers mean nothing.

    python benchmarks/bench_gpu.py --results DIR [--dry-run] [--budget-s 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_common import camera_scene  # noqa: E402

from ros2_owl.backends.cuda_graphs import CudaGraphEncoder  # noqa: E402

FLAT_PROMPT = "[a person, a car, a dog]"
TREE_PROMPT = "[a person [a face, a hand] (standing, sitting)]"
BATCHES = (1, 2, 4, 8)
SIZES = ((640, 480), (1280, 720))


class Report:
    """Prints each line and keeps every number for the JSON file."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}
        self.lines: list[str] = []

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def put(self, section: str, key: str, value) -> None:
        self.data.setdefault(section, {})[key] = value


class Budget:
    """Seconds left for the optional sections (torch.compile is the slow one)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


WARMUP = [3]  # calls before timing; 1 in a dry run


def time_ms(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    """Median ms per call, the device synchronised around every call."""
    for _ in range(WARMUP[0]):
        fn()
    sync(device)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync(device)
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def versions(device: torch.device) -> dict[str, str]:
    """GPU and software versions for the report."""
    info = {"torch": torch.__version__, "cuda (torch build)": str(torch.version.cuda)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        major, minor = torch.cuda.get_device_capability(device)
        info["compute capability"] = f"{major}.{minor}"
        info["cudnn"] = str(torch.backends.cudnn.version())
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            info["driver, memory"] = out.stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError) as err:
            info["driver, memory"] = f"nvidia-smi unavailable ({err})"
    else:
        info["gpu"] = "none (dry run on CPU)"
    for name in ("transformers", "onnxruntime", "tensorrt"):
        if importlib.util.find_spec(name) is None:
            info[name] = "not installed"
            continue
        module = __import__(name)
        info[name] = getattr(module, "__version__", "?")
        if name == "onnxruntime":
            info[name] += " (" + ", ".join(module.get_available_providers()) + ")"
    return info


def encoder_section(rep, encoder, size, device, iters, budget, batches) -> None:
    """Eager vs CUDA graphs vs torch.compile (CUDA only: minutes of compiling on a CPU)."""
    module, dtype = encoder.module, encoder.dtype
    rep.say(f"\n== image encoder {type(module).__name__} @{size}, {dtype}")
    graphed = CudaGraphEncoder(encoder, max(batches)) if device.type == "cuda" else None
    compiled = None
    for batch in batches:
        x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
        with torch.inference_mode():
            eager = time_ms(lambda x=x: module(x), device, iters)
        row = {"eager_ms": eager, "eager_img_s": batch * 1e3 / eager}
        line = f"batch {batch}: eager {eager:7.2f} ms ({batch * 1e3 / eager:7.0f} img/s)"
        if graphed is not None:
            graph_ms = time_ms(lambda x=x: graphed(x), device, iters)
            row.update(graphs_ms=graph_ms, graphs_img_s=batch * 1e3 / graph_ms)
            line += f"; cuda graphs {graph_ms:7.2f} ms ({batch * 1e3 / graph_ms:7.0f} img/s)"
        if device.type == "cuda" and batch in (1, 8) and budget.left() > 150:
            try:
                if compiled is None:
                    compiled = torch.compile(module, dynamic=False)
                start = time.perf_counter()
                with torch.no_grad():
                    compiled(x)
                sync(device)
                first = time.perf_counter() - start
                with torch.no_grad():
                    comp_ms = time_ms(lambda x=x, c=compiled: c(x), device, iters)
                row.update(compile_ms=comp_ms, compile_first_call_s=first)
                line += f"; torch.compile {comp_ms:7.2f} ms (first call {first:.0f} s)"
            except Exception as err:  # report, keep going: the other numbers still count
                line += f"; torch.compile failed: {type(err).__name__}: {str(err)[:120]}"
        rep.put("encoder", f"batch{batch}", row)
        rep.say(line)


def end_to_end_section(rep, predictor, device, iters, graphed) -> None:
    """Flat prompt per frame from host uint8 frames, eager and with the graphed encoder."""
    state = predictor.prepare(FLAT_PROMPT)
    eager_encoder = predictor.owl_encoder
    for width, height in SIZES:
        frame = camera_scene(height, width)
        rep.say(f"\n== end to end {FLAT_PROMPT}, {width}x{height} uint8 from host memory")
        variants = [("eager", eager_encoder)] + ([("cuda graphs", graphed)] if graphed else [])
        for name, encoder in variants:
            predictor.owl_encoder = encoder
            ms = time_ms(lambda f=frame: predictor.predict(f, state), device, iters)
            result = predictor.predict(frame, state)
            rep.put("end_to_end", f"{width}x{height} {name}", {"ms": ms, "fps": 1e3 / ms})
            stages = ", ".join(f"{k} {v:.2f}" for k, v in result.timings_ms.items())
            rep.say(f"{name:12s} {ms:7.2f} ms/frame = {1e3 / ms:7.0f} FPS   stages: {stages}")
    predictor.owl_encoder = eager_encoder


def cameras_section(rep, predictor, device, iters, graphed, batches) -> None:
    """1/2/4/8 cameras: one batched call per round when the predictor batches cameras."""
    state = predictor.prepare(FLAT_PROMPT)
    batched = hasattr(predictor, "predict_batch")
    how = "predict_batch (one encoder call)" if batched else "one predict per frame"
    rep.say(f"\n== several cameras, 640x480, {FLAT_PROMPT}: {how}")
    eager_encoder = predictor.owl_encoder
    variants = [("eager", eager_encoder)] + ([("cuda graphs", graphed)] if graphed else [])
    for name, encoder in variants:
        predictor.owl_encoder = encoder
        for n in batches:
            frames = [camera_scene(480, 640) for _ in range(n)]
            if batched:
                fn = lambda fr=frames: predictor.predict_batch(fr, [state] * len(fr))  # noqa: E731
            else:
                fn = lambda fr=frames: [predictor.predict(f, state) for f in fr]  # noqa: E731
            ms = time_ms(fn, device, iters)
            rep.put("cameras", f"{name} x{n}", {"ms_per_round": ms, "aggregate_fps": n * 1e3 / ms})
            rep.say(f"{name:12s} {n} cameras: {ms:7.2f} ms per round = {n * 1e3 / ms:7.0f} FPS")
    predictor.owl_encoder = eager_encoder


def tree_section(rep, predictor, device, iters) -> None:
    """Tree prompt with 4 regions, for each region resolution the predictor offers."""
    from ros2_owl.core.predictor import PredictorConfig

    names = {f.name for f in dataclasses.fields(PredictorConfig)}
    modes = ("native", "adaptive") if "region_resolution" in names else (None,)
    state = predictor.prepare(TREE_PROMPT)
    frame = camera_scene(480, 640)
    rep.say(f"\n== tree {TREE_PROMPT}, 4 regions, 640x480")
    for mode in modes:
        extra = {"region_resolution": mode} if mode else {}
        cfg = PredictorConfig(threshold=0.0, max_regions=4, max_detections=10_000, **extra)
        ms = time_ms(lambda c=cfg: predictor.predict(frame, state, c), device, iters)
        label = mode or "native (only mode)"
        rep.put("tree", label, {"ms": ms, "fps": 1e3 / ms})
        rep.say(f"{label:20s} {ms:7.2f} ms/frame = {1e3 / ms:7.0f} FPS")


def profile_section(rep, predictor, device, results: Path) -> None:
    """torch.profiler over one flat-prompt frame: where the time goes (CPU launch vs GPU)."""
    from torch.profiler import ProfilerActivity, profile

    state = predictor.prepare(FLAT_PROMPT)
    frame = camera_scene(480, 640)
    for _ in range(3):
        predictor.predict(frame, state)
    sync(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        predictor.predict(frame, state)
        sync(device)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    rep.say(f"\n== profile of one flat-prompt frame, 640x480 (sorted by {sort})")
    table = prof.key_averages().table(sort_by=sort, row_limit=15)
    rep.say(table)
    trace = results / "one_frame_trace.json"
    prof.export_chrome_trace(str(trace))
    rep.say(f"chrome trace: {trace}")


def load_predictors(dry_run: bool, device: torch.device, dtype: str, cache: Path):
    """(flat predictor without CLIP, tree predictor with CLIP) on the benchmark models."""
    from ros2_owl.core.predictor import PredictorConfig, TreePredictor
    from ros2_owl.demo.random_models import ensure_random_model

    owl_name, clip_name = (
        ("tiny-owlvit", "tiny-clip")
        if dry_run
        else ("owlvit-base-patch32", "clip-vit-base-patch32")
    )
    owl = str(ensure_random_model(owl_name, cache / "random-models"))
    clip = str(ensure_random_model(clip_name, cache / "random-models"))
    kw = dict(device=str(device), dtype=dtype, backend="torch", cache_dir=str(cache))
    flat = TreePredictor.from_pretrained(owl, None, config=PredictorConfig(max_regions=8), **kw)
    tree = TreePredictor.from_pretrained(owl, clip, config=PredictorConfig(max_regions=4), **kw)
    return flat, tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="directory for the JSON, text, trace")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny models, 2 iterations")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per item (median)")
    parser.add_argument("--budget-s", type=float, default=200.0, help="time for optional parts")
    parser.add_argument("--cache-dir", default=None, help="models + artefacts (default: results)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache_dir) if args.cache_dir else results / "cache"
    budget = Budget(args.budget_s)
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU visible to torch; use --dry-run on a CPU-only machine")
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    dtype_name = "float32" if args.dry_run else "float16"
    iters = 2 if args.dry_run else args.iters
    batches = (1, 2) if args.dry_run else BATCHES
    WARMUP[0] = 1 if args.dry_run else 3
    rep = Report()
    dry = " (DRY RUN: CPU, tiny models; numbers mean nothing)" if args.dry_run else ""
    rep.say("ros2_owl GPU benchmark" + dry)
    for key, value in versions(device).items():
        rep.put("machine", key, value)
        rep.say(f"{key}: {value}")
    torch.backends.cuda.matmul.allow_tf32 = True
    start = time.perf_counter()
    flat, tree = load_predictors(args.dry_run, device, dtype_name, cache)
    rep.say(f"models ready in {time.perf_counter() - start:.1f} s ({flat.owl.info.model_id})")
    size = flat.owl.info.image_size
    graphed = CudaGraphEncoder(flat.owl_encoder, max(batches)) if device.type == "cuda" else None
    sections = [
        (
            "encoder",
            lambda: encoder_section(rep, flat.owl_encoder, size, device, iters, budget, batches),
        ),
        ("end_to_end", lambda: end_to_end_section(rep, flat, device, iters, graphed)),
        ("cameras", lambda: cameras_section(rep, flat, device, iters, graphed, batches)),
        ("tree", lambda: tree_section(rep, tree, device, max(2, iters // 4))),
        ("profile", lambda: profile_section(rep, flat, device, results)),
    ]
    failed = [name for name, run in sections if not run_section(rep, name, run, flat)]
    rep.say(f"\ntotal {time.perf_counter() - start:.0f} s")
    if failed:
        rep.say(f"FAILED sections: {', '.join(failed)} (tracebacks above)")
    (results / "gpu_bench.json").write_text(json.dumps(rep.data, indent=2))
    (results / "gpu_bench.txt").write_text("\n".join(rep.lines) + "\n")
    return 1 if failed else 0


def run_section(rep: Report, name: str, run: Callable[[], None], predictor) -> bool:
    """One section; a failure is reported with its traceback and the next section still runs
    (the first GPU run lost four sections to one missing attribute)."""
    encoder = predictor.owl_encoder
    try:
        run()
        return True
    except Exception:  # report and go on: every later number still counts
        rep.say(f"\n!! section {name} failed:\n{traceback.format_exc()}")
        rep.put("failed", name, traceback.format_exc().splitlines()[-1])
        return False
    finally:
        predictor.owl_encoder = encoder  # a section that swapped encoders never leaks it


if __name__ == "__main__":
    sys.exit(main())
