"""Bounds more than one module checks, defined once (the settings, the prompt's `@value`, the
page's slider): a score threshold or IoU is a fraction."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

__all__ = ["FRACTION", "is_fraction"]

FRACTION = (0.0, 1.0)  # thresholds and IoUs


def is_fraction(value: Any) -> bool:
    """A real number (not a bool, not NaN) in FRACTION."""
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
        return False
    return FRACTION[0] <= value <= FRACTION[1]
