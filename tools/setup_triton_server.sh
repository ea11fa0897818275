#!/usr/bin/env bash
# Builds the small venv of the test/benchmark Triton server (tools/triton_server.py): PyTriton's
# wheel bundles a real tritonserver but needs numpy<2, so it cannot share the main venv.
# Idempotent; prints the venv's python on the last line. A wheel that cannot be installed
# (no such platform build) leaves no venv and exits 0: the Triton tests then skip, saying why.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ROS2_OWL_TRITON_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ros2_owl/triton-server-venv}"
reqs="$repo/requirements/triton-server.txt"
stamp="$venv/.requirements"
want="$(sha256sum "$reqs" | cut -c1-16)"
log() { printf '[setup-triton] %s\n' "$*"; }

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "creating the Triton server venv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$reqs" 2>"$venv.log"; then
    log "nvidia-pytriton could not be installed here (see $venv.log); Triton tests will skip"
    rm -rf "$venv"
    exit 0
  fi
  "$venv/bin/python" -c "import pytriton.triton, onnxruntime, tritonclient.grpc"
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
