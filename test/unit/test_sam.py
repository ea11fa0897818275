"""models/sam.py against transformers' own SamProcessor + SamModel + post_process_masks.

Random tiny weights: parity with transformers on the same weights, not accuracy (no trained
SAM weights exist here).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf
from fixtures_models import synthetic_scene
from PIL import Image

from ros2_owl.core.preprocess import load_image
from ros2_owl.models import ModelLoadError
from ros2_owl.models.sam import SamSegmenter, mask_box, resized_shape

BOXES = [[10.0, 12.0, 90.0, 70.0], [40.0, 30.0, 150.0, 115.0], [0.0, 0.0, 160.0, 120.0]]


@pytest.fixture(scope="module")
def reference(tiny_sam_dir):
    """transformers' pipeline on one frame: processor inputs, model outputs, final masks."""
    image = synthetic_scene()
    processor = tf.SamProcessor(
        image_processor=tf.SamImageProcessorPil.from_pretrained(str(tiny_sam_dir))
    )
    model = tf.SamModel.from_pretrained(str(tiny_sam_dir)).eval()
    inputs = processor(images=Image.fromarray(image), input_boxes=[BOXES], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, multimask_output=False)
    masks = processor.image_processor.post_process_masks(
        out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"], binarize=False
    )[0][:, 0]
    return image, inputs, out, masks


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(1, float((a | b).sum()))


def test_decoding_matches_transformers_on_its_pixels(tiny_sam_dir, reference):
    image, inputs, out, want = reference
    seg = SamSegmenter.load(str(tiny_sam_dir))
    height, width = image.shape[:2]
    resized = tuple(int(v) for v in inputs["reshaped_input_sizes"][0])
    logits, iou = seg.mask_logits(
        seg.embed(inputs["pixel_values"]), torch.tensor(BOXES), (height, width), resized
    )
    assert logits.shape == want.shape == (3, height, width)
    assert float((logits - want).abs().max()) < 1e-5
    assert torch.equal(logits > 0, want > 0)  # mask IoU 1.0 for every box
    assert torch.allclose(iou, out.iou_scores[0, :, 0], atol=1e-6)


def test_whole_pipeline_matches_transformers(tiny_sam_dir, reference):
    image, inputs, _, want = reference
    seg = SamSegmenter.load(str(tiny_sam_dir))
    pixels, resized = seg.pixels(load_image(image))
    assert resized == tuple(int(v) for v in inputs["reshaped_input_sizes"][0])
    # torch's antialiased bilinear on uint8 is PIL's kernel: the same pixels (measured 0.0
    # grey levels apart at 160x120, 640x480 and 500x333)
    assert float((pixels - inputs["pixel_values"]).abs().max()) < 1e-5
    masks = seg.segment(load_image(image), torch.tensor(BOXES))
    assert len(masks) == 3
    for got, ref in zip(masks, want, strict=True):
        assert got.mask.shape == ref.shape and got.mask.dtype == torch.bool
        assert _iou(got.mask, ref > 0) == 1.0
        assert got.box == mask_box(got.mask)


def test_no_boxes_no_work_and_a_non_sam_model_is_one_clear_error(tiny_sam_dir, tiny_clip_dir):
    seg = SamSegmenter.load(str(tiny_sam_dir))
    assert seg.segment(load_image(synthetic_scene()), torch.zeros(0, 4)) == []
    with pytest.raises(ModelLoadError, match="is a 'clip' model, not SAM"):
        SamSegmenter.load(str(tiny_clip_dir))


def test_mask_box_and_resized_shape():
    mask = torch.zeros(10, 20, dtype=torch.bool)
    assert mask_box(mask) is None
    mask[2:5, 7:11] = True
    assert mask_box(mask) == (7.0, 2.0, 11.0, 5.0)
    assert resized_shape(480, 640, 1024) == (768, 1024)
    assert resized_shape(*np.array([333, 500]).tolist(), 1024) == (682, 1024)


def test_onnxruntime_image_encoder_gives_the_torch_masks(tiny_sam_dir, tmp_path):
    image = load_image(synthetic_scene())
    torch_seg = SamSegmenter.load(str(tiny_sam_dir))
    ort_seg = SamSegmenter.load(
        str(tiny_sam_dir), backend="onnxruntime", artefact_dir=str(tmp_path)
    )
    assert ort_seg.encoder.name == "onnxruntime" and torch_seg.encoder.name == "torch"
    pixels, resized = torch_seg.pixels(image)
    want = torch_seg.embed(pixels)
    got = ort_seg.embed(pixels)
    assert float((want - got).abs().max()) < 1e-4
    for a, b in zip(
        torch_seg.segment(image, torch.tensor(BOXES)),
        ort_seg.segment(image, torch.tensor(BOXES)),
        strict=True,
    ):
        assert _iou(a.mask, b.mask) >= 0.999
    assert list(tmp_path.rglob("*.onnx"))  # exported once into the artefact cache
