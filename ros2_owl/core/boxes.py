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


def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact greedy NMS; kept indices sorted by score (desc, stable).

    With `groups`, a box only suppresses boxes of the same group (class-aware NMS). IoUs are
    computed in torch on the boxes' device, one group at a time; the greedy pass runs on CPU.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    if groups is None:
        groups = torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
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
