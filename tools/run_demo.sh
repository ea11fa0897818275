#!/usr/bin/env bash
# The main job (README): set up and build, then run ros2_owl end to end on samples/ twice:
# without ROS (`ros2-owl demo`, the pip user's path) and over ROS 2 (owl_node + DDS).
# Real weights are used where available; otherwise a loudly labelled random-weight model.
# Extra arguments go to both (e.g. --full-size for the real architecture size).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash tools/setup.sh
# shellcheck disable=SC1091
. tools/env.sh
echo "=== 1/2: ros2-owl demo (no ROS) ==="
ros2-owl demo --annotate .cache/demo --max-detections 5 "$@"
echo "=== 2/2: owl_node over ROS 2 ==="
python tools/demo_ros.py "$@"
