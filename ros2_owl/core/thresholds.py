"""Which score threshold a detect label uses: the precedence, written once.

1. the prompt's own `@value` on the label (fixed: the page cannot move it),
2. a per-label override (the label_thresholds setting, --label-threshold, the page's slider),
3. a threshold given for the whole prompt when it was encoded (TreePredictor.prepare),
4. the per-frame default (PredictorConfig.threshold, the `threshold` setting, live).
The first three are fixed when the prompt is encoded; the fourth is read per frame.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["is_fixed_by_prompt", "resolve"]


def resolve(
    label, default: float, overrides: Mapping[str, float] | None = None, given: float | None = None
) -> tuple[float, bool]:
    """(threshold, explicit) of `label` (a prompt Label); explicit: rules 1-3 chose it, so the
    per-frame default does not replace it."""
    if label.threshold is not None:
        return label.threshold, True
    if overrides and label.text in overrides:
        return float(overrides[label.text]) + 0.0, True
    if given is not None:
        return float(given), True
    return float(default), False


def is_fixed_by_prompt(label) -> bool:
    """Rule 1: the prompt's `@value` wins over every setting and the page."""
    return label.threshold is not None
