"""Humble's parameter path on this machine's rclpy: owl_node started through a peer that
removes the pre/post-set parameter callback methods from rclpy.node.Node (Humble's rclpy 3.3
lacks them), so every commit goes through the end of the on-set callback instead.

The tests are the same functions as test_node.py's and test_web_bridge.py's parameter,
~/set_prompt, ~/register_query and live-page tests, collected here again against such a node.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import test_node
import test_web_bridge
from peers.owl_support import wait_for_log

HUMBLE_RCLPY = Path(__file__).parents[1] / "peers" / "owl_node_humble_rclpy.py"
FALLBACK_LINE = "rclpy has no post-set parameter callback (Humble)"

# test_node.py's: ~/set_prompt, bad prompts and values refused atomically, parameters applied
# to the next frame, 200 prompt changes under a frame stream, a query used in a prompt
from test_node import (  # noqa: E402, F401  (collected here again, against the node below)
    fresh_settings,
    test_200_prompt_changes_while_frames_stream_never_mix_prompts,
    test_bad_parameter_value_is_rejected_and_nothing_changes,
    test_bad_prompt_is_rejected_with_its_column_and_the_old_prompt_stays,
    test_parameter_changes_take_effect_on_the_next_frame,
    test_register_query_then_use_it_in_a_prompt,
    test_set_prompt_applies_to_the_next_frames_and_updates_the_parameter,
)

# test_web_bridge.py's: a page's prompt and slider reach the parameters and the detections
from test_web_bridge import (  # noqa: E402, F401
    test_page_prompt_reaches_the_parameter_and_the_next_detections,
)


@pytest.fixture(scope="module")
def owl(rclpy_context, tiny_owlvit_dir, tiny_clip_dir, tmp_path_factory):
    with test_node.running_owl(
        rclpy_context, tiny_owlvit_dir, tiny_clip_dir, tmp_path_factory, launcher=HUMBLE_RCLPY
    ) as node:
        wait_for_log(node.proc, FALLBACK_LINE)  # the Humble path, not the post-set callback
        yield node


@pytest.fixture(scope="module")
def web_node(rclpy_context, tiny_owlvit_dir, tiny_clip_dir, tmp_path_factory):
    with test_web_bridge.running_web_node(
        rclpy_context, tiny_owlvit_dir, tiny_clip_dir, tmp_path_factory, launcher=HUMBLE_RCLPY
    ) as node:
        wait_for_log(node.proc, FALLBACK_LINE)
        yield node
