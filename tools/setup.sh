#!/usr/bin/env bash
# Sets up a development/CI machine: a venv with the pinned Python stack and the colcon
# workspace in .ws/ (interfaces + Python sources). Idempotent: a second run only rebuilds.
#
# Without a sourced ROS 2, ROS 2 Kilted (default) or Jazzy comes from PyPI wheels into the
# venv. With a sourced ROS 2 (ROS_DISTRO set and rclpy importable), the venv sees the system
# packages instead.
#
#   bash tools/setup.sh [--distro kilted|jazzy] [EXTRAS_DIR]
#       (or ROS2_OWL_DISTRO=kilted|jazzy, ROS2_OWL_EXTRAS=EXTRAS_DIR)
# --distro: which ROS 2 wheels (requirements/ros-<distro>.txt). Kilted uses the venv
# venv-<hash> and .ws; Jazzy its own venv-<hash>-jazzy and .ws-jazzy (tools/paths.sh), so both
# can exist side by side; `source tools/env.sh --distro jazzy` (or ROS2_OWL_DISTRO) uses it.
# EXTRAS_DIR: a folder with install.sh and the upstream sources of launch, ros2cli and
# vision_msgs (.ci/run passes ../shared/ros2-extras). They are installed into the venv and a
# workspace beside it, and .ws is built against that real vision_msgs instead of the fixture.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 2; }
# shellcheck source=tools/paths.sh
. "$repo/tools/paths.sh"
asked=""
extras="${ROS2_OWL_EXTRAS:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --distro) [ $# -ge 2 ] || die "--distro needs a name (kilted or jazzy)"; asked="$2"; shift 2 ;;
    --distro=*) asked="${1#--distro=}"; shift ;;
    -*) die "unknown option $1 (usage: bash tools/setup.sh [--distro kilted|jazzy] [EXTRAS_DIR])" ;;
    *) extras="$1"; shift ;;
  esac
done
if [ -n "$extras" ]; then
  [ -f "$extras/install.sh" ] || die "no install.sh in extras folder $extras"
  extras="$(cd "$extras" && pwd)"
fi

system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && python3 -c "import rclpy" >/dev/null 2>&1; then
  system_ros=1
  want_distro="${asked:-${ROS2_OWL_DISTRO:-$ROS_DISTRO}}"
  [ "$want_distro" = "$ROS_DISTRO" ] \
    || die "ROS 2 $ROS_DISTRO is sourced but $want_distro was asked for: open a shell without it"
  log "using the sourced ROS 2 $ROS_DISTRO"
  _owl_pick_distro "$ROS_DISTRO"
else
  # ignore a ROS_DISTRO without rclpy; forget an environment of another distro of ours
  _owl_pick_distro "${asked:-${ROS2_OWL_DISTRO:-kilted}}"
  case " $_OWL_WHEEL_DISTROS " in *" $_owl_distro "*) ;; *)
    die "no ROS 2 $_owl_distro wheels here (--distro ${_OWL_WHEEL_DISTROS// / or }); or source a ROS 2 install" ;;
  esac
  _owl_forget_other_envs "$repo"
fi
distro="$_owl_distro"
# The venv lives outside the checkout: CMake refuses include dirs inside a package's source dir.
_owl_paths "$repo" "$distro"
venv="$_owl_venv"
ws="$_owl_ws"
constraints="$repo/requirements/constraints.txt"
ros_pins="$repo/requirements/ros-$distro.txt"
# The extras' colcon workspace (vision_msgs, composition_interfaces): outside .ws, which holds
# only this package and, where no real vision_msgs exists, the fixture.
extras_ws="$venv-extras"
log "ROS 2 $distro: venv $venv, workspace ${ws#"$repo"/}"

# 0. Debian's chromium for the live page's browser test (Playwright drives this binary; its
#    own browser download is never used). Where it cannot be installed, that one test skips.
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing Debian's chromium (for the browser test of the live page)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
      log "could not install chromium: the browser test will skip"
    fi
  else
    log "no chromium and no root apt-get: the browser test will skip (apt-get install chromium)"
  fi
fi

# 1. The venv, reinstalled only when the pinned requirements change.
stamp="$venv/.ros2_owl_requirements"
# the shared pins, every non-ROS requirements file, and this distro's ROS pins (not the others')
hashed=("$constraints")
for f in "$repo"/requirements/*.txt; do
  case "$(basename "$f")" in ros-*.txt) ;; *) hashed+=("$f") ;; esac
done
[ "$system_ros" = 1 ] || hashed+=("$ros_pins")
want="$(cat "${hashed[@]}" | sha256sum | cut -c1-16)-$system_ros-$distro"
if [ ! -x "$venv/bin/python" ]; then
  log "creating venv $venv"
  if [ "$system_ros" = 1 ]; then python3 -m venv --system-site-packages "$venv"; else python3 -m venv "$venv"; fi
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
if [ "$system_ros" = 1 ]; then
  # ROS's generated message modules are compiled against the system numpy: never shadow it
  # with the pinned numpy 2 (a numpy-1 build of them fails to import under numpy 2).
  grep -iv "^numpy==" "$repo/requirements/constraints.txt" > "$venv/constraints-system-ros.txt"
  constraints="$venv/constraints-system-ros.txt"
  pins=(-c "$constraints")
else
  pins=(-c "$constraints" -c "$ros_pins")
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # quiet pip that stops setup on a failure (its output without find-links noise)
  pipq() {
    local out code=0
    out="$(python -m pip install -q --disable-pip-version-check "${pins[@]}" "$@" 2>&1)" || code=$?
    printf '%s\n' "$out" | grep -v -e "is ignored: it is neither a file nor a directory" -e '^$' || true
    [ "$code" = 0 ] || die "pip install $* failed (exit $code)"
  }
  log "installing setuptools pin (setuptools >= 80 breaks colcon-core)"
  pipq "setuptools>=77.0.3,<80"
  log "installing torch==2.13.0 (CPU build) before anything that depends on torch"
  pipq torch==2.13.0
  if [ "$system_ros" = 0 ]; then
    log "installing ROS 2 $distro wheels (requirements/ros-$distro.txt)"
    pipq -r "$ros_pins"
  fi
  log "installing the model and test stack"
  pipq -r "$repo/requirements/dev.txt"
  python - <<'PY'
import torch, transformers, rclpy  # noqa: F401  fail here, not in the tests, when a pin broke
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert not torch.version.cuda, "a CUDA torch was pulled in; only the CPU build is allowed here"
PY
  # the `ros2-owl` command, from this checkout (editable, so edits need no reinstall)
  python -m pip install -q --no-deps --no-build-isolation -e "$repo" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  echo "$want" > "$stamp"
fi

# 1b. The test/benchmark Triton server's own venv (PyTriton needs numpy<2): see that script.
log "Triton server venv: $(bash "$repo/tools/setup_triton_server.sh" | tail -n 1)"

if [ "$system_ros" = 0 ]; then
  # 2. The wheels' exported CMake files name the include dirs of the machine that built them.
  py_inc="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_inc="$(python -c 'import numpy; print(numpy.get_include())')"
  pyver="$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  tag="cp${pyver/./}-cp${pyver/./}"
  { grep -rl "/opt/python/$tag" "$venv"/share/*/cmake/ 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/$tag/lib/python$pyver/site-packages/numpy/_core/include#$np_inc#g" \
           -e "s#/opt/python/$tag/include/python$pyver#$py_inc#g" "$f"
  done
  # 3. colcon and rosidl find the wheel-installed packages through the venv prefix.
  export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
fi

# 4. The ros2 CLI, launch and the real vision_msgs, when an extras folder is given; once
# installed they are used by every later run (with or without the folder).
if [ -n "$extras" ] && [ "$system_ros" = 1 ]; then
  log "a sourced ROS 2 brings its own ros2 CLI and launch: not installing $extras"
elif [ -n "$extras" ]; then
  log "installing ros2 CLI, launch and vision_msgs from $extras"
  # pip reads several files from PIP_CONSTRAINT, separated by spaces
  pip_constraint="$constraints"
  [ "$system_ros" = 1 ] || pip_constraint+=" $ros_pins"
  if ! PIP_CONSTRAINT="$pip_constraint" bash "$extras/install.sh" "$venv" "$extras_ws"; then
    echo "[setup] ERROR: $extras/install.sh failed (see its message above)" >&2
    exit 1
  fi
fi
if [ -f "$extras_ws/install/local_setup.bash" ]; then
  set +u
  # shellcheck disable=SC1091
  . "$extras_ws/install/local_setup.bash"
  set -u
  if [ -e "$ws/install/share/vision_msgs/package.xml" ]; then
    # --merge-install keeps the fixture's files in .ws/install, where they shadow the real one
    log "removing .ws built with the vision_msgs fixture (rebuilding against the real one)"
    rm -rf "$ws/build" "$ws/install"
  fi
fi

# 5. The workspace: ros2_owl, plus each fallback interface package in test/fixtures/ where no
#    real one exists (vision_msgs; foxglove_msgs' and tf2_msgs' messages, which have no wheel).
paths=("$repo")
for pkg in vision_msgs foxglove_msgs tf2_msgs; do
  # A package found only inside our own .ws is the fallback from an earlier run, not a real one.
  found="$(python -c "import $pkg; print($pkg.__file__)" 2>/dev/null || true)"
  if [ -n "$found" ] && [[ "$found" != "$ws"/* ]]; then
    log "$pkg found at $found: not building the fallback in test/fixtures"
  else
    paths+=("$repo/test/fixtures/$pkg")
  fi
done
log "colcon build (${#paths[@]} package paths)"
(cd "$repo" && colcon --log-base "$ws/log" build --base-paths "${paths[@]}" \
    --build-base "$ws/build" --install-base "$ws/install" --merge-install --symlink-install \
    --event-handlers console_direct- summary+ --cmake-args -DBUILD_TESTING=OFF -Wno-dev)
if [ "$distro" = kilted ]; then
  log "done: source tools/env.sh to use it"
else
  log "done: source tools/env.sh --distro $distro (or ROS2_OWL_DISTRO=$distro) to use it"
fi
