"""boxes: conversions, IoU and exact greedy NMS."""

from __future__ import annotations

import pytest
import torch

from ros2_owl.core import boxes as io


def test_box_conversions_and_iou():
    xyxy = io.cxcywh_to_xyxy(torch.tensor([[0.5, 0.5, 0.2, 0.4]]))[0]
    assert xyxy.tolist() == pytest.approx([0.4, 0.3, 0.6, 0.7])
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0]])
    assert io.box_iou(a, b)[0].tolist() == pytest.approx([1 / 7, 0.0, 1.0])
    giou = io.generalized_box_iou(a, b)[0]
    assert giou[1] == pytest.approx(0 - (36 - 5) / 36)
    assert io.box_iou(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0


def _greedy_nms(boxes, scores, thr, groups):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(
            groups[i] != groups[j] or io.box_iou(boxes[i : i + 1], boxes[j : j + 1]).item() <= thr
            for j in keep
        ):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_equals_greedy_reference(seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(60, 2, generator=g) * 50
    wh = torch.rand(60, 2, generator=g) * 30 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(60, generator=g)
    groups = torch.randint(0, 3, (60,), generator=g)
    for thr in (0.3, 0.5):
        got = io.batched_nms(boxes, scores, groups, thr).tolist()
        assert got == _greedy_nms(boxes, scores.tolist(), thr, groups.tolist())


def test_nms_is_class_aware_and_handles_empty():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert io.batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert io.nms(boxes, scores, 0.5).tolist() == [0]
    assert io.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


@pytest.mark.parametrize("seed", range(4))
def test_device_pass_equals_the_per_group_path(seed):
    """The GPU's one-pass NMS (run here on CPU tensors) keeps what the CPU path keeps, in the
    same order, ties in score included."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(300, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + torch.rand(300, 2, generator=g) * 60 + 1], dim=1)
    scores = (torch.rand(300, generator=g) * 8).round() / 8  # many ties
    groups = torch.randint(0, 6, (300,), generator=g)
    for thr in (0.1, 0.5):
        want = io.batched_nms(boxes, scores, groups, thr)
        got = io._nms_on_device(boxes, scores, thr, groups)
        assert 0 < want.numel() < 300 and got.tolist() == want.tolist()


def test_fixed_point_gives_up_on_a_chain_longer_than_its_rounds():
    # box k overlaps only box k+1: greedy keeps every other box, settled only after ~n rounds
    boxes = torch.tensor([[k * 6.0, 0, k * 6.0 + 10, 10] for k in range(20)])
    suppresses = io.box_iou(boxes, boxes) > 0.1
    assert io.greedy_keep_fixed_point(suppresses, max_rounds=5) is None
    keep = io.greedy_keep_fixed_point(suppresses, max_rounds=40)
    assert keep.tolist() == [k % 2 == 0 for k in range(20)]
