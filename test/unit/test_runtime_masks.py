"""The segment step: labels marked {mask} get SAM instance masks in every front end's results;
3D from the mask; masks drawn. Tiny random SAM and OWL-ViT: behaviour, not accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_models import synthetic_scene

from ros2_owl.core.depth import PinholeIntrinsics, boxes_3d
from ros2_owl.core.draw import draw_result
from ros2_owl.core.predictor import PredictorConfig, TreePredictor
from ros2_owl.core.results import Detection, InstanceMask, TreeResult
from ros2_owl.core.settings import Settings
from ros2_owl.models.sam import SamSegmenter
from ros2_owl.runtime.session import FrameSession, SessionFrame

CONFIG = PredictorConfig(threshold=0.0, max_detections=12)


@pytest.fixture(scope="module")
def predictor(tiny_owlvit_dir):
    return TreePredictor.from_pretrained(str(tiny_owlvit_dir), None, backend="torch", config=CONFIG)


def test_only_marked_labels_get_masks_of_the_frames_size(predictor, tiny_sam_dir):
    session = FrameSession(predictor, Settings(), segmenter=SamSegmenter.load(str(tiny_sam_dir)))
    session.state = session.prepare("[a person {mask}, a car]")
    image = synthetic_scene()
    (done,) = session.process([SessionFrame("cam", image)])
    people = [d for d in done.result.detections if d.label == "a person"]
    cars = [d for d in done.result.detections if d.label == "a car"]
    assert people and cars
    assert all(d.mask is not None and tuple(d.mask.mask.shape) == image.shape[:2] for d in people)
    assert all(d.mask is None for d in cars)
    assert done.result.timings_ms["segment"] > 0
    # the same boxes through the segmenter directly: the step changed nothing on the way
    direct = session.segmenter.segment(
        torch.from_numpy(image).permute(2, 0, 1), torch.tensor([d.box for d in people])
    )
    assert all(torch.equal(a.mask, b.mask.mask) for a, b in zip(direct, people, strict=True))


def test_a_mask_prompt_without_a_segmenter_is_one_clear_error(predictor):
    session = FrameSession(predictor, Settings())
    with pytest.raises(ValueError, match=r"marks labels \{mask\} but no SAM model is loaded"):
        session.prepare("[a mug {mask}]")


def _result_with_mask(mask: np.ndarray, box) -> TreeResult:
    det = Detection(1, 0, 1, "a mug", 0.9, box, mask=InstanceMask(torch.from_numpy(mask), 0.8, box))
    return TreeResult(None, "[a mug {mask}]", (mask.shape[1], mask.shape[0]), (det,))


def test_depth_is_taken_over_the_mask_not_the_box_centre():
    depth = np.full((40, 60), 5000, np.uint16)  # 5 m everywhere ...
    mask = np.zeros((80, 120), bool)
    mask[10:30, 10:40] = True  # ... but the object (colour pixels) is at 2 m
    depth[5:15, 5:20] = 2000
    box = (10.0, 10.0, 110.0, 70.0)  # a loose box whose centre is background
    k = PinholeIntrinsics(fx=100.0, fy=100.0, cx=60.0, cy=40.0, width=120, height=80)
    (by_box,) = boxes_3d([box], depth, "16UC1", k)
    (by_mask,) = boxes_3d([box], depth, "16UC1", k, masks=[mask])
    assert by_box.center[2] == pytest.approx(5.0) and by_mask.center[2] == pytest.approx(2.0)
    assert by_mask.valid_pixels == 150  # the mask's 20x30 colour pixels on the half-size depth


def test_masks_tint_their_pixels_in_the_label_colour():
    image = np.full((80, 120, 3), 100, np.uint8)
    mask = np.zeros((80, 120), bool)
    mask[20:40, 30:60] = True
    drawn = draw_result(image, _result_with_mask(mask, (25.0, 15.0, 65.0, 45.0)))
    assert not np.array_equal(drawn[30, 45], image[30, 45])  # inside the mask (no line, no caption)
    assert np.array_equal(drawn[70, 100], image[70, 100])  # far outside it


def test_mask_rle_is_cocos_uncompressed_format():
    mask = np.zeros((3, 4), bool)
    mask[0, 0] = mask[1, 0] = mask[2, 3] = True
    rle = InstanceMask(torch.from_numpy(mask), 0.5, (0.0, 0.0, 4.0, 3.0)).rle()
    # column-major: col0 = 1,1,0; col1 = 0,0,0; col2 = 0,0,0; col3 = 0,0,1
    assert rle == {"size": [3, 4], "counts": [0, 2, 9, 1]}
    assert sum(rle["counts"]) == 12
    empty = InstanceMask(torch.zeros(2, 2, dtype=torch.bool), 0.1, None).rle()
    assert empty["counts"] == [4]
