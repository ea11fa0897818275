#!/usr/bin/env bash
# GPU check: the CUDA tests (pytest -m cuda) and the GPU benchmark, in one prepared run.
#
# For a machine with an NVIDIA GPU and Python with a CUDA build of torch, transformers and
# onnxruntime already installed, but no ROS and no network. Nothing here needs ROS.
#
#   bash tools/gpu_check.sh WHEELS_DIR RESULTS_DIR            # the real run (under 8 minutes)
#   bash tools/gpu_check.sh --dry-run [WHEELS_DIR] RESULTS_DIR  # any machine: CPU, tiny models
#   bash tools/gpu_check.sh --prepare-wheels WHEELS_DIR       # needs network (or a pip mirror)
#
# WHEELS_DIR holds the wheels of requirements/gpu-check.txt (the packages beyond torch,
# transformers and onnxruntime) for the GPU machine's Python (default 3.12, manylinux x86_64;
# set GPU_PYTHON_VERSION=3.10 etc. for another). --prepare-wheels fills it: binary wheels are
# downloaded for that Python/platform, pure-Python sdists (openai-clip) are built into wheels.
# Copy the folder to the GPU machine next to the checkout.
#
# The real run installs those wheels offline (pip --no-index --no-deps --target) into
# RESULTS_DIR/site, put first on PYTHONPATH of the machine's python3 (which holds the CUDA torch,
# transformers and onnxruntime; a venv made from a venv would not see them), then:
#   1. records the machine (nvidia-smi, versions)                 -> RESULTS_DIR/env.txt
#   2. pytest -m cuda test/unit/test_cuda.py (CUDA vs CPU, fp16 drift)  -> cuda-tests.txt, .xml
#   3. benchmarks/bench_gpu.py (encoder, end to end, cameras, tree, profile)
#                                                                 -> gpu_bench.txt/.json, trace
#   4. summary.txt with each step's exit status and the elapsed time.
# --dry-run does the same on the CPU with the current Python (no install; WHEELS_DIR, when
# given, is checked to hold every wheel): the CUDA tests are skipped with their reason and the
# benchmark runs every section on tiny models. CI runs it (test/unit/test_gpu_check.py).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$repo/requirements/gpu-check.txt"
pyver="${GPU_PYTHON_VERSION:-3.12}"

usage() {
  sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

prepare_wheels() {
  local dir="$1"
  mkdir -p "$dir"
  echo "[gpu_check] binary wheels for CPython $pyver manylinux x86_64 -> $dir"
  grep -v '^openai-clip' "$requirements" | grep -v '^#' | grep -v '^$' >"$dir/.binary.txt"
  python3 -m pip download --no-deps --only-binary=:all: --implementation cp \
    --python-version "$pyver" --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d "$dir" -r "$dir/.binary.txt"
  echo "[gpu_check] pure-Python wheels built from sdists -> $dir"
  grep '^openai-clip' "$requirements" >"$dir/.sdist.txt"
  python3 -m pip wheel --no-deps -w "$dir" -r "$dir/.sdist.txt"
  rm -f "$dir/.binary.txt" "$dir/.sdist.txt"
  ls -1 "$dir"
}

dry_run=0
case "${1:-}" in
  --prepare-wheels) [ $# -eq 2 ] || usage; prepare_wheels "$2"; exit 0 ;;
  --dry-run) dry_run=1; shift ;;
  -h|--help|"") usage ;;
esac
if [ "$dry_run" = 1 ] && [ $# -eq 1 ]; then
  wheels="" results="$1"
elif [ $# -eq 2 ]; then
  wheels="$1" results="$2"
else
  usage
fi
if [ -n "$wheels" ] && [ ! -d "$wheels" ]; then
  echo "error: wheel folder $wheels does not exist (prepare it with --prepare-wheels)" >&2
  exit 2
fi
mkdir -p "$results"
results="$(cd "$results" && pwd)"
[ -z "$wheels" ] || wheels="$(cd "$wheels" && pwd)"
start=$(date +%s)
cd "$repo"

# ---- Python environment ---------------------------------------------------------------------
if [ "$dry_run" = 1 ]; then
  python=python3
  if [ -n "$wheels" ]; then
    echo "[gpu_check] checking that $wheels holds every wheel of requirements/gpu-check.txt"
    "$python" -m pip install --dry-run --ignore-installed --no-index --no-deps \
      --find-links "$wheels" -r "$requirements" >"$results/wheels-check.txt"
  fi
else
  # Not a venv: python3 there may itself be a venv (/opt/torch/.venv), and a venv made from it
  # with --system-site-packages sees the base interpreter's packages, not its torch.
  site="$results/site"
  python=python3
  echo "[gpu_check] wheels -> $site (on PYTHONPATH, before $("$python" -c 'import sys; print(sys.prefix)'))"
  "$python" -m pip install --no-index --no-deps --no-compile --upgrade --target "$site" \
    --find-links "$wheels" -r "$requirements" >"$results/pip-install.txt" 2>&1 \
    || { cat "$results/pip-install.txt"; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export ROS2_OWL_CACHE="$results/cache"   # exported graphs, auto decisions: kept with the results
export ROS2_OWL_TEST_CACHE="$results/cache/random-models"  # test + benchmark models, built once
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# ---- 1. the machine -------------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -a)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true
  else
    echo "nvidia-smi: not found"
  fi
  "$python" - <<'PY'
import importlib.util, sys
import torch
print("python", sys.version.split()[0])
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for name in ("transformers", "onnxruntime", "onnx", "tensorrt", "pytest"):
    spec = importlib.util.find_spec(name)
    print(name, __import__(name).__version__ if spec else "not installed")
print("rclpy importable:", importlib.util.find_spec("rclpy") is not None, "(not needed here)")
PY
} 2>&1 | tee "$results/env.txt"

# ---- 2. CUDA tests ----------------------------------------------------------------------------
set +e
echo "[gpu_check] pytest -m cuda test/unit/test_cuda.py"
timeout 150 "$python" -m pytest -m cuda test/unit/test_cuda.py -q -rs -s -p no:cacheprovider \
  --junitxml "$results/cuda-tests.xml" 2>&1 | tee "$results/cuda-tests.txt"
tests_rc=${PIPESTATUS[0]}

# ---- 3. GPU benchmark -------------------------------------------------------------------------
echo "[gpu_check] benchmarks/bench_gpu.py"
bench_args=(--results "$results" --cache-dir "$results/cache")
[ "$dry_run" = 1 ] && bench_args+=(--dry-run)
timeout 300 "$python" benchmarks/bench_gpu.py "${bench_args[@]}" 2>&1 | tee "$results/bench.log"
bench_rc=${PIPESTATUS[0]}
set -e

# ---- 4. summary -------------------------------------------------------------------------------
elapsed=$(( $(date +%s) - start ))
{
  echo "mode: $([ "$dry_run" = 1 ] && echo 'dry run (CPU, tiny models)' || echo 'GPU')"
  echo "cuda tests exit status: $tests_rc"
  echo "benchmark exit status: $bench_rc"
  echo "elapsed: ${elapsed} s"
} | tee "$results/summary.txt"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
