"""What to look for: the prompt and per-label thresholds (live), and PredictorConfig, the
per-frame predictor settings (validated by their own Settings)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..limits import FRACTION
from .schema import (
    DEFAULT_PROMPT,
    REGION_RESOLUTIONS,
    SCORING_MODES,
    check_label_thresholds,
    check_prompt,
    setting,
    settings_of,
)

__all__ = ["PredictorConfig", "PromptSettings"]


@dataclass(frozen=True)
class PredictorConfig:
    """Per-frame predictor settings (the SETTINGS with frame=True), validated."""

    threshold: float = setting(
        0.1,
        "Default detection score threshold for labels without their own.",
        range=FRACTION,
        cli=True,
    )
    scoring: str = setting(
        "independent",
        "Detection scoring: 'independent' judges every (box, label) pair on its own; 'exclusive' "
        "keeps only each box's best label of its group (NanoOWL's behaviour).",
        choices=SCORING_MODES,
        cli=True,
    )
    nms_iou: float = setting(
        0.5,
        "IoU of per-label non-maximum suppression; 0 turns it off.",
        range=FRACTION,
        cli=True,
    )
    max_detections: int = setting(
        100,
        "Most detections per frame, all levels together.",
        range=(1, 10000),
        cli=True,
    )
    max_regions: int = setting(
        8,
        "Most regions a nested level runs on per frame.",
        range=(0, 1024),
        cli=True,
    )
    region_resolution: str = setting(
        "native",
        "Input size of nested regions: 'native' (the model's size) or 'adaptive' (the smallest "
        "bucket covering the region's longer side; see README).",
        choices=REGION_RESOLUTIONS,
        cli=True,
    )

    def __post_init__(self) -> None:
        """Every field against its Setting (nms_iou None means 0 = off)."""
        if self.nms_iou is None:
            object.__setattr__(self, "nms_iou", 0.0)
        for f in fields(PredictorConfig):
            reason = _FRAME[f.name].problem(getattr(self, f.name))
            if reason:
                raise ValueError(reason)


_FRAME = {s.name: s for s in settings_of(PredictorConfig, frame=True)}


@dataclass(frozen=True)
class PromptSettings:
    """What to look for (live): the tree prompt and per-label thresholds."""

    prompt: str = setting(
        DEFAULT_PROMPT,
        "Tree prompt, e.g. '[a person [a face] (standing, sitting)]'.",
        check=check_prompt,
        constraints="tree prompt syntax; `label@0.3` sets a per-label threshold",
    )
    label_thresholds: tuple[str, ...] = setting(
        (),
        "Per-label detection thresholds as 'label=value' items, e.g. ['a face=0.3'].",
        check=check_label_thresholds,
        constraints="items 'label=value' with value in [0, 1]; `label@v` in the prompt wins",
        cli="--label-threshold",
    )
