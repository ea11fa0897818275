"""region_resolution: bucket sizes, transformers' interpolation reproduced, regions grouped by size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf
from fixtures_models import synthetic_scene

from ros2_owl.backends import TorchImageEncoder
from ros2_owl.backends.cache import ArtefactCache
from ros2_owl.models.owl import OwlModel, decode_logits
from ros2_owl.predictor import PredictorConfig, TreePredictor
from ros2_owl.preprocess import crop_box_pixels, load_image
from ros2_owl.region_resolution import bucket_sizes, group_by_size, region_input_size
from ros2_owl.results import match_detections

LABELS = ["a cat", "a remote control", "two dogs on a sofa"]
TREE = "[a person [a face, a hand]]"


def test_buckets_are_few_patch_multiples_up_to_native():
    assert bucket_sizes(768, 32) == (256, 384, 512, 768)  # OWL-ViT B/32
    assert bucket_sizes(960, 16) == (320, 480, 640, 960)  # OWLv2 B/16
    assert bucket_sizes(96, 16) == (64, 96)  # the tiny test model: 4-patch minimum
    assert region_input_size(150, 300, 768, 32) == 384  # 300 px -> 320 -> bucket 384
    assert region_input_size(40, 30, 768, 32) == 256  # never under the smallest bucket
    assert region_input_size(700, 20, 768, 32) == 768
    assert region_input_size(3000, 2000, 768, 32) == 768  # never over native
    frames = [(0, 0, 150, 300), (10, 10, 50, 40), (0, 0, 700, 600)]
    assert group_by_size(frames, 768, 32, "adaptive") == {384: [0], 256: [1], 768: [2]}
    assert group_by_size(frames, 768, 32, "native") == {768: [0, 1, 2]}


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("kind", ["owlvit", "owlv2"])
def test_other_sizes_match_transformers_interpolate_pos_encoding(
    kind, size, tiny_owlvit_dir, tiny_owlv2_dir
):
    path = tiny_owlvit_dir if kind == "owlvit" else tiny_owlv2_dir
    cls = tf.OwlViTForObjectDetection if kind == "owlvit" else tf.Owlv2ForObjectDetection
    owl, hf = OwlModel.load(str(path)), cls.from_pretrained(path).eval()
    image = (np.random.default_rng(1).random((90, 120, 3)) * 255).astype(np.uint8)
    pixels, _ = owl.pixels(load_image(image), None, size)
    assert pixels.shape == (1, 3, size, size) and owl.encoder.image_size == 96
    tokens = owl.tokenizer(LABELS, padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        expected = hf(
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
            pixel_values=pixels,
            interpolate_pos_encoding=True,
        )
    outputs = TorchImageEncoder(owl.encoder)(pixels)
    assert outputs["pred_boxes"].shape[1] == (size // 16) ** 2
    # the same tolerances as the native-size parity test (test_models)
    logits = decode_logits(outputs, owl.encode_text(LABELS))
    assert torch.allclose(logits, expected.logits, atol=1e-4)
    assert torch.allclose(outputs["pred_boxes"], expected.pred_boxes, atol=1e-6)
    if kind == "owlv2":
        assert torch.allclose(outputs["objectness"], expected.objectness_logits, atol=1e-5)


class ShapeRecorder:
    """Delegates to a real encoder and records the shape of every batch it encodes."""

    def __init__(self, inner):
        self.inner, self.shapes = inner, []
        self.name, self.output_names = inner.name, inner.output_names
        self.max_batch = inner.max_batch

    def __call__(self, pixels):
        self.shapes.append(tuple(pixels.shape))
        return self.inner(pixels)


def _config(mode: str) -> PredictorConfig:
    return PredictorConfig(
        threshold=0.0, nms_iou=0.0, max_regions=6, max_detections=10_000, region_resolution=mode
    )


def test_adaptive_groups_regions_by_size_and_keeps_native_ones_identical(tiny_owlvit_dir):
    predictor = TreePredictor.from_pretrained(str(tiny_owlvit_dir), None, backend="torch")
    recorder = ShapeRecorder(predictor.owl_encoder)
    predictor.owl_encoder = recorder
    # random tiny weights predict boxes about 1/6 of the image: big enough for both sizes here
    image, state = synthetic_scene(480, 640), predictor.prepare(TREE)
    native = predictor.predict(image, state, _config("native"))
    recorder.shapes.clear()
    adaptive = predictor.predict(image, state, _config("adaptive"))
    parents = [d for d in adaptive.detections if d.parent_id == 0]
    regions = sorted(parents, key=lambda d: -d.score)[:6]
    frames = [crop_box_pixels(d.box, 640, 480) for d in regions]
    sizes = {
        d.id: region_input_size(f[2] - f[0], f[3] - f[1], 96, 16)
        for d, f in zip(regions, frames, strict=True)
    }
    assert set(sizes.values()) == {64, 96}  # the scene has regions of both kinds
    expected_calls = sorted(
        (sum(1 for s in sizes.values() if s == size), 3, size, size) for size in {64, 96}
    )
    assert recorder.shapes[0] == (1, 3, 96, 96)  # the whole image: always native
    assert sorted(recorder.shapes[1:]) == expected_calls  # one batched call per size
    # regions encoded at the native size give exactly the native mode's children
    for region_id, size in sizes.items():
        mine = [(d.label, d.score, d.box) for d in adaptive.children_of(region_id)]
        if size == 96:
            assert mine == [(d.label, d.score, d.box) for d in native.children_of(region_id)]
        assert mine and all(
            frames_contain(crop_box_pixels(adaptive.by_id(region_id).box, 640, 480), d[2])
            for d in mine
        )


def frames_contain(frame, box) -> bool:
    x0, y0, x1, y1 = frame
    return x0 <= box[0] <= box[2] <= x1 and y0 <= box[1] <= box[3] <= y1


def test_adaptive_on_onnxruntime_matches_torch_with_one_artefact_per_bucket(
    tiny_owlvit_dir, tmp_path
):
    kw = dict(clip_model=None, cache_dir=str(tmp_path))
    torch_p = TreePredictor.from_pretrained(str(tiny_owlvit_dir), backend="torch", **kw)
    ort_p = TreePredictor.from_pretrained(str(tiny_owlvit_dir), backend="onnxruntime", **kw)
    image = synthetic_scene(480, 640)
    ref = torch_p.predict(image, torch_p.prepare(TREE), _config("adaptive"))
    got = ort_p.predict(image, ort_p.prepare(TREE), _config("adaptive"))
    assert len(ref.detections) == len(got.detections) > 0
    drift = match_detections(ref.detections, got.detections, max_px=1.0)
    assert drift.matched == drift.reference, drift.summary()
    assert drift.max_score_drift < 1e-4 and drift.max_box_drift_px < 0.01, drift.summary()
    sizes = sorted(e.manifest["key"]["input_size"] for e in ArtefactCache(tmp_path).entries("onnx"))
    assert sizes == [64, 96]  # the native graph and the one bucket this scene needed
