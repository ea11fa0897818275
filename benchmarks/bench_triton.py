"""Shared inference server benchmark: 1, 2, 4 client processes against one Triton server.

One run on this machine, full-size random OWL-ViT B/32 @768 (architecture-identical to the hub
checkpoint, built by ros2_owl.demo.random_models), prompt ``[a person, a car, a dog]`` on a
640x480 camera frame. Each client is a separate process running the whole predictor with
backend 'triton' (preprocessing, text cache, decoding and NMS on the client; the image encoder
on the server). Printed: frames/s per client and in total, bytes per frame on the wire, and the
same predictor with the local onnxruntime backend in one process as the baseline.

The server is tools/triton_server.py (PyTriton's tritonserver; ONNX Runtime on CPU inside it),
so here clients and server share the same CPU cores: the totals show the batching and protocol
overhead, not what a GPU server adds (see the printed note).

    python benchmarks/bench_triton.py [--seconds 20] [--clients 1 2 4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))
sys.path.insert(0, str(REPO / "benchmarks"))
from ros2_owl.backends.auto import cpu_model  # noqa: E402

PROMPT = "[a person, a car, a dog]"


def run_client(owl_id: str, cache: str, backend: str, url: str, seconds: float, sync, out):
    """One client process: build the predictor, warm up, report ready, wait, count frames."""
    from bench_common import camera_scene

    from ros2_owl.backends.triton_backend import TritonOptions
    from ros2_owl.core.predictor import PredictorConfig, TreePredictor

    ready, start = sync
    predictor = TreePredictor.from_pretrained(
        owl_id, clip_model=None, backend=backend, cache_dir=cache,
        config=PredictorConfig(max_regions=4),
        triton=TritonOptions(url=url, timeout_s=120.0) if backend == "triton" else None,
    )  # fmt: skip
    state = predictor.prepare(PROMPT)
    image = camera_scene()
    predictor.predict(image, state)  # warm-up
    ready.put(True)
    start.wait()
    frames, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        predictor.predict(image, state)
        frames += 1
    elapsed = time.perf_counter() - t0
    stats = getattr(predictor.owl_encoder, "stats", None)
    per_frame = stats.bytes_sent / max(1, stats.requests) if stats else 0
    out.put((frames / elapsed, per_frame))


def measure(owl_id, cache, backend, url, clients, seconds) -> list[tuple[float, float]]:
    """fps and bytes/frame of each of `clients` processes, timed from a common start."""
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=run_client, args=(owl_id, cache, backend, url, seconds, (ready, start), out)
        )
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    waiting = len(procs)
    deadline = time.monotonic() + 900
    while waiting:  # every client loaded and warmed up (a client that died fails the run)
        try:
            ready.get(timeout=1.0)
            waiting -= 1
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"a client failed to start (exit codes {dead})") from None
    start.set()
    results = [out.get(timeout=seconds + 900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


def batch_counts(url: str, header) -> dict[int, int]:
    """Executions per batch size of the served OWL encoder (Triton's own statistics)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    stats = client.get_inference_statistics(
        "owl_image_encoder", headers=dict([header]), as_json=True
    )
    model = stats["model_stats"][0]
    return {
        int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in model.get("batch_stats", [])
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--max-queue-delay-us", type=int, default=20000)
    args = parser.parse_args()

    from fixtures_triton import TOKEN_HEADER, TritonServer

    from ros2_owl.demo.random_models import ensure_random_model

    print(f"CPU: {cpu_model()} ({mp.cpu_count()} logical cores)")
    owl_id = str(ensure_random_model("owlvit-base-patch32"))
    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    cache = str(work / "cache")
    build = [
        sys.executable, "-m", "ros2_owl.cli.build_engine", "--model", owl_id, "--no-clip",
        "--cache-dir", cache, "--max-batch", "4", "--triton-repo", str(work / "models"),
        "--triton-instance-kind", "cpu", "--triton-max-queue-delay-us",
        str(args.max_queue_delay_us),
    ]  # fmt: skip
    subprocess.run(build, check=True, capture_output=True)
    python = (
        subprocess.run(
            ["bash", str(REPO / "tools" / "setup_triton_server.sh")], capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    server = TritonServer(python, work / "models", work / "triton.log").start()
    try:
        local = measure(owl_id, cache, "onnxruntime", "", 1, args.seconds)[0][0]
        print(f"local onnxruntime, 1 process: {local:.2f} frames/s")
        print(
            "clients | fps per client (each)    | total fps | x local | bytes/frame | server batches"
        )
        for n in args.clients:
            before = batch_counts(server.url, TOKEN_HEADER)
            rows = measure(owl_id, cache, "triton", server.url, n, args.seconds)
            after = batch_counts(server.url, TOKEN_HEADER)
            batches = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
            fps = [r[0] for r in rows]
            total = sum(fps)
            each = ", ".join(f"{f:.2f}" for f in fps)
            print(
                f"{n:7d} | {each:24s} | {total:9.2f} | {total / local:7.2f} | "
                f"{rows[0][1]:11,.0f} | {batches}"
            )
    finally:
        server.stop()
    print(
        "bytes/frame: uint8 pixels, 3x768x768 = 1,769,472 (float32 would be 4x, float16 2x).\n"
        "Server and clients share this machine's CPU cores: the encoder (~115 GFLOP/frame) runs\n"
        "on the same cores either way, so these totals measure CPU sharing (client work and\n"
        "server work overlap in separate processes), not serving capacity. With a GPU server the\n"
        "encoder leaves the robot: each client then runs at its own preprocess/decode rate plus\n"
        "one round trip, and the GPU's batched throughput is shared by all clients."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
