"""Model wrappers (OWL-ViT / OWLv2 detection, CLIP classification) and their shared errors."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model or processor could not be loaded; the message names what was tried and why."""


__all__ = ["ModelLoadError"]
