"""region_resolution: bucket sizes, transformers' interpolation reproduced, regions grouped by size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf
from fixtures_models import synthetic_scene

from ros2_owl.backends import TorchImageEncoder
from ros2_owl.backends.cache import ArtefactCache
from ros2_owl.core.predictor import PredictorConfig, TreePredictor
from ros2_owl.core.preprocess import crop_box_pixels, load_image
from ros2_owl.core.region_resolution import bucket_sizes, group_by_size, region_input_size
from ros2_owl.core.results import match_detections
from ros2_owl.models.owl import OwlModel, decode_logits

LABELS = ["a cat", "a remote control", "two dogs on a sofa"]


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
        threshold=0.0, nms_iou=0.0, max_regions=4, max_detections=10_000, region_resolution=mode
    )


def test_adaptive_sizes_each_level_and_keeps_native_sized_regions_identical(tiny_owlvit_dir):
    predictor = TreePredictor.from_pretrained(str(tiny_owlvit_dir), None, backend="torch")
    recorder = ShapeRecorder(predictor.owl_encoder)
    predictor.owl_encoder = recorder
    # random tiny weights predict boxes of 1/6 of their region: 67x50 px people in a 400x300
    # image (bucket 96 = native), 11x8 px faces inside them (bucket 64)
    image, state = synthetic_scene(300, 400), predictor.prepare("[a person [a face [an eye]]]")
    native = predictor.predict(image, state, _config("native"))
    recorder.shapes.clear()
    adaptive = predictor.predict(image, state, _config("adaptive"))
    people = sorted(adaptive.children_of(0), key=lambda d: -d.score)[:4]
    faces = sorted((d for p in people for d in adaptive.children_of(p.id)), key=lambda d: -d.score)[
        :4
    ]
    assert {_size(d) for d in people} == {96} and {_size(d) for d in faces} == {64}
    # one batched encoder call per level and size: the image, 4 people at 96, 4 faces at 64
    assert recorder.shapes == [(1, 3, 96, 96), (4, 3, 96, 96), (4, 3, 64, 64)]
    for person in people:  # regions at the native size give exactly native mode's children
        mine = [(d.label, d.score, d.box) for d in adaptive.children_of(person.id)]
        assert mine == [(d.label, d.score, d.box) for d in native.children_of(person.id)]
    for face in faces:  # regions at 64 px still give children inside them
        eyes = adaptive.children_of(face.id)
        frame = crop_box_pixels(face.box, 400, 300)
        assert eyes and all(frames_contain(frame, e.box) for e in eyes)
        assert [e.box for e in eyes] != [e.box for e in native.children_of(face.id)]


def _size(det) -> int:
    x0, y0, x1, y1 = crop_box_pixels(det.box, 400, 300)
    return region_input_size(x1 - x0, y1 - y0, 96, 16)


def frames_contain(frame, box) -> bool:
    x0, y0, x1, y1 = frame
    return x0 <= box[0] <= box[2] <= x1 and y0 <= box[1] <= box[3] <= y1


def test_adaptive_on_onnxruntime_matches_torch_with_one_artefact_per_bucket(
    tiny_owlvit_dir, tmp_path
):
    kw = dict(clip_model=None, cache_dir=str(tmp_path))
    torch_p = TreePredictor.from_pretrained(str(tiny_owlvit_dir), backend="torch", **kw)
    ort_p = TreePredictor.from_pretrained(str(tiny_owlvit_dir), backend="onnxruntime", **kw)
    image, tree = synthetic_scene(300, 400), "[a person [a face [an eye]]]"
    ref = torch_p.predict(image, torch_p.prepare(tree), _config("adaptive"))
    got = ort_p.predict(image, ort_p.prepare(tree), _config("adaptive"))
    assert len(ref.detections) == len(got.detections) > 0
    drift = match_detections(ref.detections, got.detections, max_px=1.0)
    assert drift.matched == drift.reference, drift.summary()
    assert drift.max_score_drift < 1e-4 and drift.max_box_drift_px < 0.01, drift.summary()
    sizes = sorted(e.manifest["key"]["input_size"] for e in ArtefactCache(tmp_path).entries("onnx"))
    assert sizes == [64, 96]  # the native graph and the one bucket this scene needed
