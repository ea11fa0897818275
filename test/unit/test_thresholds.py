"""core/thresholds.py: the prompt's @value, then a per-label override, then a threshold given
at encoding, then the per-frame default."""

from __future__ import annotations

from ros2_owl.core.prompt import parse_prompt
from ros2_owl.core.thresholds import is_fixed_by_prompt, resolve


def test_the_precedence_is_prompt_then_label_then_given_then_default():
    _, fixed, free = parse_prompt("[a cat@0.7, a dog]").labels  # 0 is the whole image
    overrides = {"a cat": 0.2, "a dog": 0.3}
    assert resolve(fixed, 0.1, overrides, given=0.5) == (0.7, True)
    assert resolve(free, 0.1, overrides, given=0.5) == (0.3, True)
    assert resolve(free, 0.1, {}, given=0.5) == (0.5, True)
    assert resolve(free, 0.1) == (0.1, False)  # not explicit: the frame's config decides
    assert is_fixed_by_prompt(fixed) and not is_fixed_by_prompt(free)
