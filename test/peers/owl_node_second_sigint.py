"""Test peer: owl_node's main() whose teardown receives a second SIGINT, as under `ros2 launch`
(the terminal's Ctrl-C and launch's forwarded one): the signal is sent from inside
destroy_node(), so it lands during the teardown every time instead of by chance.

usage: owl_node_second_sigint.py --ros-args ... (the arguments of scripts/owl_node)
"""

import os
import signal
import sys

from ros2_owl.ros import node as owl_node

_destroy_node = owl_node.OwlNode.destroy_node


def destroy_node_with_a_second_sigint(self) -> None:
    os.kill(os.getpid(), signal.SIGINT)
    print("second SIGINT sent during teardown", flush=True)
    _destroy_node(self)


owl_node.OwlNode.destroy_node = destroy_node_with_a_second_sigint
sys.exit(owl_node.main())
