#!/usr/bin/env bash
# The project's test command (README, .ci/run): set up or refresh the environment, lint,
# then run every test. Fails when any test fails or when no test ran.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh test/unit/test_prompt.py -x`.
# The ROS 2 distribution: a leading `--distro jazzy`, or ROS2_OWL_DISTRO (default kilted).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
case "${1:-}" in
  --distro) export ROS2_OWL_DISTRO="${2:?--distro needs kilted or jazzy}"; shift 2 ;;
  --distro=*) export ROS2_OWL_DISTRO="${1#--distro=}"; shift ;;
esac
bash tools/setup.sh
# shellcheck disable=SC1091
. tools/env.sh --distro "${ROS2_OWL_DISTRO:-}"
echo "[test] ROS 2 ${ROS2_OWL_DISTRO:-?} ($(python -c 'import importlib.metadata as m; print("rclpy", m.version("ros-rclpy"))' 2>/dev/null || echo "rclpy from the sourced ROS 2"))"
export ROS2_OWL_REQUIRE_ROS=1   # ROS tests fail instead of skipping if rclpy is missing

echo "[test] ruff check + format check"
ruff check .
ruff format --check .

echo "[test] pytest (ROS_DOMAIN_ID is randomised per run)"
set +e
pytest "$@"
code=$?
set -e
if [ "$code" = 5 ]; then
  echo "[test] FAILED: pytest collected no tests" >&2
  exit 1
fi
exit "$code"
