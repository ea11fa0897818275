# Source this (bash) to use the environment tools/setup.sh made: venv, built workspace, and
# DDS kept on this machine (loopback + shared memory) on a random domain.
_owl_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_owl_venv="${ROS2_OWL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ros2_owl/venv-$(printf %s "$_owl_repo" | sha256sum | cut -c1-10)}"
# shellcheck disable=SC1091
. "$_owl_venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
  # ROS from wheels: the venv is the underlay colcon's setup script cannot chain to.
  case ":${AMENT_PREFIX_PATH:-}:" in *":$_owl_venv:"*) ;; *)
    export AMENT_PREFIX_PATH="$_owl_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
  esac
fi
if [ -f "$_owl_repo/.ws/install/setup.bash" ]; then
  _owl_nounset=$(set -o | awk '$1=="nounset"{print $2}'); set +u
  # shellcheck disable=SC1091
  . "$_owl_repo/.ws/install/setup.bash"
  [ "$_owl_nounset" = on ] && set -u
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
unset _owl_repo _owl_venv _owl_nounset
