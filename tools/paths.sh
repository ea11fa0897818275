# Sourced by tools/setup.sh and tools/env.sh: which ROS 2 distribution, and where its venv and
# colcon workspace live. Kilted (the default) keeps the paths from before there were two
# (venv-<hash>, .ws); another distribution gets its own (venv-<hash>-jazzy, .ws-jazzy).
# Wheels exist here for kilted and jazzy; a sourced ROS 2 (ROS_DISTRO) is used as it is.

_OWL_WHEEL_DISTROS="kilted jazzy"

# _owl_pick_distro ASKED: sets _owl_distro to ASKED, else ROS2_OWL_DISTRO, else the sourced
# ROS_DISTRO, else kilted.
_owl_pick_distro() {
  _owl_distro="${1:-${ROS2_OWL_DISTRO:-${ROS_DISTRO:-kilted}}}"
}

# _owl_paths REPO DISTRO: sets _owl_venv and _owl_ws (ROS2_OWL_VENV overrides the venv).
_owl_paths() {
  local suffix=""
  [ "$2" = kilted ] || suffix="-$2"
  _owl_venv="${ROS2_OWL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ros2_owl/venv-$(printf %s "$1" | sha256sum | cut -c1-10)$suffix}"
  _owl_ws="$1/.ws$suffix"
}

# _owl_forget_other_envs REPO: drops from the search paths every entry that belongs to one of
# this checkout's environments (any distro), so switching distros in one shell mixes nothing.
_owl_forget_other_envs() {
  local var value kept entry
  local venvs="${XDG_CACHE_HOME:-$HOME/.cache}/ros2_owl/venv-$(printf %s "$1" | sha256sum | cut -c1-10)"
  for var in AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH PYTHONPATH LD_LIBRARY_PATH PATH; do
    value="${!var:-}"
    [ -n "$value" ] || continue
    kept=""
    while IFS= read -r -d: entry; do
      case "$entry" in "$venvs"* | "$1/.ws"/* | "$1/.ws-"*/* | "${ROS2_OWL_VENV:-/nonexistent}"*) continue ;; esac
      kept="${kept:+$kept:}$entry"
    done <<<"$value:"
    if [ -n "$kept" ]; then export "$var=$kept"; else unset "$var"; fi
  done
  unset VIRTUAL_ENV
}
