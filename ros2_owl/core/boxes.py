"""Box maths on (x0, y0, x1, y1) tensors: conversions, areas, IoU, exact greedy NMS."""

from __future__ import annotations

import numpy as np
import torch


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


MIN_BOX_SIDE = 0.01  # px: a clipped box narrower or lower than this is a line, not a box


def has_area(boxes: torch.Tensor, min_side: float = MIN_BOX_SIDE) -> torch.Tensor:
    """Which (x0, y0, x1, y1) boxes are at least `min_side` px wide and high (bool [N])."""
    return ((boxes[..., 2] - boxes[..., 0]) >= min_side) & (
        (boxes[..., 3] - boxes[..., 1]) >= min_side
    )


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of (x0, y0, x1, y1) boxes (0 for inverted boxes)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU [N, M] of xyxy boxes (0 where the union is empty)."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise generalised IoU [N, M] of xyxy boxes."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    hull_tl = torch.minimum(a[:, None, :2], b[None, :, :2])
    hull_br = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    hull = (hull_br - hull_tl).clamp(min=0).prod(-1)
    iou = inter / union.clamp(min=1e-12)
    return iou - (hull - union) / hull.clamp(min=1e-12)


def _greedy_keep(suppresses: np.ndarray) -> np.ndarray:
    """Greedy pass over a score-sorted [N, N] 'i suppresses j' matrix; returns the keep mask."""
    n = suppresses.shape[0]
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if keep[i]:
            keep[i + 1 :] &= ~suppresses[i, i + 1 :]
    return keep


def _suppression_matrix(boxes: torch.Tensor, iou_threshold: float) -> np.ndarray:
    """IoU > threshold as a bool matrix; numpy on CPU (small ops stall torch's thread pool)."""
    if boxes.device.type != "cpu":
        return (box_iou(boxes, boxes) > iou_threshold).cpu().numpy()
    b = boxes.detach().float().numpy()
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    w = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    h = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = area[:, None] + area[None, :] - inter
    return inter > iou_threshold * union  # IoU > t without dividing (0 when union is 0)


DEVICE_NMS_MAX_BOXES = 4096  # one [N, N] IoU matrix on the GPU above this is too much memory
DEVICE_NMS_ROUNDS = 64  # fixed-point rounds before the exact CPU pass takes over


def greedy_keep_fixed_point(suppresses: torch.Tensor, max_rounds: int) -> torch.Tensor | None:
    """Greedy NMS's keep mask without a Python loop per box, or None if not settled in time.

    With boxes in score order, greedy keeps j iff no kept i < j suppresses it: a triangular
    system whose only fixed point is the greedy answer. Each round re-evaluates every box from
    the last round's keep mask, all on the tensors' device; the rounds needed are the length of
    the longest suppression chain (a few on real frames), not the number of boxes.
    """
    earlier = torch.triu(suppresses, diagonal=1)  # [i, j]: i comes before j and suppresses it
    keep = torch.ones(suppresses.shape[0], dtype=torch.bool, device=suppresses.device)
    for _ in range(max_rounds):
        settled = ~(earlier & keep[:, None]).any(dim=0)
        if torch.equal(settled, keep):
            return keep
        keep = settled
    return None


def _nms_on_device(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, groups: torch.Tensor
) -> torch.Tensor | None:
    """Class-aware greedy NMS in one [N, N] pass on the boxes' device (None: too many rounds).

    Order ties as the per-group path does: score desc, then group, then index.
    """
    order = torch.argsort(groups, stable=True)
    order = order[torch.argsort(scores[order], descending=True, stable=True)]
    b, g = boxes[order], groups[order]
    suppresses = (box_iou(b, b) > iou_threshold) & (g[:, None] == g[None, :])
    keep = greedy_keep_fixed_point(suppresses, DEVICE_NMS_ROUNDS)
    return None if keep is None else order[keep]


def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact greedy NMS; kept indices sorted by score (desc, stable).

    With `groups`, a box only suppresses boxes of the same group (class-aware NMS). On a GPU
    all groups go through one fixed-point pass on the device (no host sync per group or box:
    the first GPU run measured 9.7 ms of 17 ms per frame in the per-group path). On the CPU,
    and on a GPU whose pass does not settle, one group at a time with a greedy pass in numpy.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    if groups is None:
        groups = torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
    if boxes.device.type != "cpu" and boxes.shape[0] <= DEVICE_NMS_MAX_BOXES:
        kept = _nms_on_device(boxes, scores, iou_threshold, groups)
        if kept is not None:
            return kept
    kept = []
    for group in torch.unique(groups).tolist():
        members = (groups == group).nonzero().squeeze(1)
        order = members[torch.argsort(scores[members], descending=True, stable=True)]
        suppresses = _suppression_matrix(boxes[order], iou_threshold)
        kept.append(order[torch.from_numpy(_greedy_keep(suppresses)).to(order.device)])
    kept = torch.cat(kept)
    return kept[torch.argsort(scores[kept], descending=True, stable=True)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each group id only (class-aware); kept indices sorted by score desc."""
    return nms(boxes, scores, iou_threshold, groups=groups)
