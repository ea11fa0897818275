"""Typed results of one TreePredictor.predict call (what the ROS layer turns into messages)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .prompt import Tree


@dataclass(frozen=True)
class LabelScore:
    """One label's score within a classify group."""

    label_index: int
    label: str
    score: float


@dataclass(frozen=True)
class Classification:
    """A classify group's scores for one region (region_id 0 = the whole image)."""

    node_index: int
    region_id: int
    scores: tuple[LabelScore, ...]

    @property
    def best(self) -> LabelScore:
        """The highest-scoring label of the group (first one on ties)."""
        return max(self.scores, key=lambda s: s.score)


@dataclass(frozen=True)
class InstanceMask:
    """One detection's mask in input-image pixels, with the model's IoU guess and its own box."""

    mask: Any  # bool torch.Tensor [H, W] on the CPU
    score: float  # the segmenter's predicted IoU for this mask
    box: tuple[float, float, float, float] | None  # tight (x0, y0, x1, y1); None when empty

    @property
    def area(self) -> int:
        """Pixels inside the mask."""
        return int(self.mask.sum())

    def rle(self) -> dict[str, Any]:
        """COCO's uncompressed RLE (column-major runs, zeros first): {'size': [h, w], 'counts'}."""
        import numpy as np

        flat = np.asarray(self.mask, dtype=bool).T.reshape(-1)
        edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
        bounds = np.concatenate(([0], edges, [flat.size]))
        counts = np.diff(bounds).tolist()
        if flat.size and flat[0]:
            counts = [0, *counts]  # runs start with zeros
        return {"size": [int(self.mask.shape[0]), int(self.mask.shape[1])], "counts": counts}

    def to_dict(self) -> dict[str, Any]:
        """Score, area, tight box and the mask itself as RLE (the CLI's and recordings' JSON)."""
        box = None if self.box is None else list(self.box)
        return {"score": self.score, "area": self.area, "box": box, "rle": self.rle()}


@dataclass(frozen=True)
class Detection:
    """One detected instance; boxes are (x0, y0, x1, y1) in input-image pixels."""

    id: int
    parent_id: int
    label_index: int
    label: str
    score: float
    box: tuple[float, float, float, float]
    classifications: tuple[Classification, ...] = ()  # raw scores of this frame
    track_id: int = 0  # id across frames, unique per camera (tracking.py); 0 = no track
    track_classifications: tuple[Classification, ...] = ()  # smoothed over the track
    mask: InstanceMask | None = None  # labels marked {mask}, with a segmenter (sam_model)


@dataclass(frozen=True)
class TreeResult:
    """Everything one frame produced for one prompt state."""

    tree: Tree
    prompt: str
    image_size: tuple[int, int]  # (width, height)
    detections: tuple[Detection, ...]
    image_classifications: tuple[Classification, ...] = ()
    dropped_regions: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    # core.depth.Box3D (or None) per detection once depth paired this frame; None = no 3D
    boxes_3d: tuple[Any, ...] | None = None

    def by_id(self, detection_id: int) -> Detection:
        """The detection with this id (KeyError when absent)."""
        for det in self.detections:
            if det.id == detection_id:
                return det
        raise KeyError(detection_id)

    def children_of(self, region_id: int) -> tuple[Detection, ...]:
        """Detections found inside region `region_id` (0 = the whole image)."""
        return tuple(d for d in self.detections if d.parent_id == region_id)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (used by the CLI's --json output)."""

        def cls_dict(c: Classification) -> dict[str, Any]:
            return {
                "node_index": c.node_index,
                "region_id": c.region_id,
                "scores": [
                    {"label_index": s.label_index, "label": s.label, "score": s.score}
                    for s in c.scores
                ],
            }

        return {
            "prompt": self.prompt,
            "image_size": list(self.image_size),
            "detections": [
                {
                    "id": d.id,
                    "parent_id": d.parent_id,
                    "label_index": d.label_index,
                    "label": d.label,
                    "score": d.score,
                    "box": list(d.box),
                    "classifications": [cls_dict(c) for c in d.classifications],
                    "track_id": d.track_id,
                    "track_classifications": [cls_dict(c) for c in d.track_classifications],
                    "mask": None if d.mask is None else d.mask.to_dict(),
                }
                for d in self.detections
            ],
            "image_classifications": [cls_dict(c) for c in self.image_classifications],
            "dropped_regions": self.dropped_regions,
            "timings_ms": dict(self.timings_ms),
        }


@dataclass(frozen=True)
class DetectionDrift:
    """How far one run's detections are from a reference run's (precision, device, backend)."""

    reference: int
    other: int
    matched: int
    max_box_drift_px: float
    median_box_drift_px: float
    max_score_drift: float

    def summary(self) -> str:
        return (
            f"{self.reference} vs {self.other} detections, {self.matched} matched; box drift max "
            f"{self.max_box_drift_px:.2f} px, median {self.median_box_drift_px:.2f} px; score "
            f"drift max {self.max_score_drift:.4f}"
        )


def match_detections(
    reference: tuple[Detection, ...], other: tuple[Detection, ...], max_px: float = 8.0
) -> DetectionDrift:
    """Greedy same-label nearest-box matching, best reference score first (L-inf px distance,
    so boxes clipped to zero area at the image edge still pair up)."""
    import statistics

    used: set[int] = set()
    drifts: list[float] = []
    score_drifts: list[float] = []
    for det in sorted(reference, key=lambda d: -d.score):
        best, best_dist = None, max_px
        for j, cand in enumerate(other):
            if j in used or cand.label_index != det.label_index:
                continue
            dist = max(abs(a - b) for a, b in zip(det.box, cand.box, strict=True))
            if dist <= best_dist:
                best, best_dist = j, dist
        if best is not None:
            used.add(best)
            drifts.append(best_dist)
            score_drifts.append(abs(det.score - other[best].score))
    return DetectionDrift(
        reference=len(reference),
        other=len(other),
        matched=len(drifts),
        max_box_drift_px=max(drifts, default=0.0),
        median_box_drift_px=statistics.median(drifts) if drifts else 0.0,
        max_score_drift=max(score_drifts, default=0.0),
    )
