"""tools/gpu_check.sh --dry-run: the GPU check runs end to end on a CPU-only machine, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "gpu_check.sh"


def test_dry_run_runs_every_step(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", str(results)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,  # tiny models, but a shared 2-core CPU: minutes under load
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = (results / "summary.txt").read_text()
    assert "cuda tests exit status: 0" in summary and "benchmark exit status: 0" in summary
    tests = (results / "cuda-tests.txt").read_text()
    if not torch.cuda.is_available():  # every CUDA test is skipped, each with its reason
        assert "passed" not in tests and "failed" not in tests and " skipped" in tests
        assert "needs a CUDA GPU" in tests
    bench = json.loads((results / "gpu_bench.json").read_text())
    assert {"machine", "encoder", "end_to_end", "cameras", "tree"} <= set(bench)
    assert bench["encoder"]["batch2"]["eager_ms"] > 0
    assert {"640x480 eager", "1280x720 eager"} <= set(bench["end_to_end"])
    assert bench["cameras"]["eager x2"]["aggregate_fps"] > 0
    assert (results / "one_frame_trace.json").stat().st_size > 0
    assert "torch" in (results / "env.txt").read_text()


def test_missing_wheel_folder_is_one_clear_error(tmp_path):
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "no-wheels"), str(tmp_path / "results")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: wheel folder {tmp_path / 'no-wheels'} does not exist (prepare it with "
        "--prepare-wheels)"
    ]


def test_a_failing_benchmark_section_is_reported_and_the_rest_still_runs():
    import sys
    from types import SimpleNamespace

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    rep = bench_gpu.Report()
    predictor = SimpleNamespace(owl_encoder="eager")

    def broken():
        predictor.owl_encoder = "graphed"
        raise AttributeError("'GraphedEncoder' object has no attribute 'max_batch'")

    assert bench_gpu.run_section(rep, "end_to_end", broken, predictor) is False
    assert predictor.owl_encoder == "eager"  # the swapped-in encoder did not leak out
    assert "max_batch" in rep.data["failed"]["end_to_end"]
    assert bench_gpu.run_section(rep, "tree", lambda: None, predictor) is True
