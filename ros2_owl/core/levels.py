"""The pieces of one level of the tree walk: the regions a level runs on, which prompt nodes
run on them, encoder calls in chunks, the kept candidates (NMS and the frame's budget) and the
per-stage timings. TreePredictor (predictor.py) strings them together."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..backends import ImageEncoderBackend
from ..models.owl import Candidates
from .boxes import batched_nms
from .preprocess import image_size
from .prompt import Tree
from .settings import PredictorConfig

__all__ = [
    "Box",
    "Region",
    "Timings",
    "crop_boxes",
    "distinct_regions",
    "encode_chunks",
    "level_jobs",
    "root_region",
    "select_candidates",
]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Region:
    """A region a level runs on: the whole image (id 0) or a detection of the level above."""

    id: int
    parent_id: int
    label_index: int
    score: float
    box: Box


class Timings:
    """Milliseconds per pipeline stage, accumulated over the levels of one frame."""

    STAGES = ("preprocess", "encode_image", "decode", "nms", "classify")

    def __init__(self) -> None:
        self.ms = dict.fromkeys(self.STAGES, 0.0)
        self.start = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.ms[name] += (time.perf_counter() - t) * 1e3

    def total(self) -> dict[str, float]:
        return {**self.ms, "total": (time.perf_counter() - self.start) * 1e3}


def level_jobs(tree: Tree, level: list[Region], op: str) -> list[tuple[Region, int]]:
    """(region, node index) pairs of one op that run on this level's regions."""
    return [
        (r, i)
        for r in level
        for i, n in enumerate(tree.nodes)
        if n.input == r.label_index and n.op == op
    ]


def root_region(img: torch.Tensor) -> Region:
    """The whole image as the region of the first level."""
    width, height = image_size(img)
    return Region(0, 0, 0, 1.0, (0.0, 0.0, float(width), float(height)))


def distinct_regions(jobs: list[tuple[Region, int]]) -> list[Region]:
    return list({r.id: r for r, _ in jobs}.values())


def crop_boxes(regions: list[Region]) -> list[Box] | None:
    """None for the root level (the models prepare the whole image), else the parent boxes."""
    return None if [r.id for r in regions] == [0] else [r.box for r in regions]


def encode_chunks(encoder: ImageEncoderBackend, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run an encoder in chunks of its max_batch (0 = the whole batch at once)."""
    step = int(encoder.max_batch or pixels.shape[0] or 1)
    parts = [encoder(pixels[i : i + step]) for i in range(0, pixels.shape[0], step)]
    if len(parts) == 1:
        return parts[0]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def select_candidates(
    candidates: Candidates,
    label_count: int,
    cfg: PredictorConfig,
    budget: int,
    region_rows: dict[int, int],
) -> list[int]:
    """Candidate rows to keep: per-label NMS within each parent region (nms_iou 0 = off), the
    frame's remaining budget, then grouped by parent region (level order), best first."""
    score, label, parent = candidates.scores, candidates.labels, candidates.parents
    if cfg.nms_iou > 0 and score.numel():
        group = parent * label_count + label
        order = batched_nms(candidates.boxes, score, group, float(cfg.nms_iou))
    else:
        order = torch.argsort(score, descending=True, stable=True)
    order = order[: max(0, budget)]
    return sorted(order.tolist(), key=lambda j: region_rows[int(parent[j])])
