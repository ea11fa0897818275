"""Test peer: owl_node on an rclpy without the post-set parameter callbacks, as Humble's rclpy
3.3 is (they came in Iron): the methods are removed from rclpy.node.Node before the node is
built, so OwlNode takes its Humble path (commit at the end of the on-set callback).

usage: owl_node_humble_rclpy.py --ros-args ... (the arguments of scripts/owl_node)
"""

import sys

import rclpy.node

HUMBLE_LACKS = (
    "add_pre_set_parameters_callback",
    "remove_pre_set_parameters_callback",
    "add_post_set_parameters_callback",
    "remove_post_set_parameters_callback",
)
for name in HUMBLE_LACKS:
    if hasattr(rclpy.node.Node, name):
        delattr(rclpy.node.Node, name)
print("rclpy without " + ", ".join(HUMBLE_LACKS), flush=True)

from ros2_owl.ros import node as owl_node  # noqa: E402  after rclpy lost the methods

sys.exit(owl_node.main())
