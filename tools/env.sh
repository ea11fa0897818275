# Source this (bash) to use the environment tools/setup.sh made: venv, built workspace, and
# DDS kept on this machine (loopback + shared memory) on a random domain.
#   source tools/env.sh [--distro kilted|jazzy]   (or ROS2_OWL_DISTRO; default: a sourced
#   ROS 2's ROS_DISTRO, else kilted). Sets ROS2_OWL_DISTRO for the processes started from here.
_owl_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/paths.sh
. "$_owl_repo/tools/paths.sh"
_owl_asked=""
case "${1:-}" in
  --distro) _owl_asked="${2:-}" ;;
  --distro=*) _owl_asked="${1#--distro=}" ;;
esac
_owl_pick_distro "$_owl_asked"
if [ -z "${ROS_DISTRO:-}" ]; then
  _owl_forget_other_envs "$_owl_repo"  # switching distros in one shell mixes nothing
fi
_owl_paths "$_owl_repo" "$_owl_distro"
if [ ! -f "$_owl_venv/bin/activate" ]; then
  echo "tools/env.sh: no venv for ROS 2 $_owl_distro at $_owl_venv: run bash tools/setup.sh --distro $_owl_distro" >&2
else
  # shellcheck disable=SC1091
  . "$_owl_venv/bin/activate"
  export ROS2_OWL_DISTRO="$_owl_distro"
fi
if [ -z "${ROS_DISTRO:-}" ]; then
  # ROS from wheels: the venv is the underlay colcon's setup script cannot chain to.
  case ":${AMENT_PREFIX_PATH:-}:" in *":$_owl_venv:"*) ;; *)
    export AMENT_PREFIX_PATH="$_owl_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
  esac
fi
if [ -f "$_owl_ws/install/setup.bash" ]; then
  _owl_nounset=$(set -o | awk '$1=="nounset"{print $2}'); set +u
  # shellcheck disable=SC1091
  . "$_owl_ws/install/setup.bash"
  [ "$_owl_nounset" = on ] && set -u
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
unset _owl_repo _owl_venv _owl_ws _owl_distro _owl_asked _owl_nounset _OWL_WHEEL_DISTROS
unset -f _owl_pick_distro _owl_paths _owl_forget_other_envs
