"""predict_batch: several cameras' frames share the whole-image encoder call; results per frame."""

from __future__ import annotations

import pytest
from fixtures_models import synthetic_scene
from test_region_resolution import ShapeRecorder

from ros2_owl.core.predictor import PredictorConfig, TreePredictor

TREE = "[a person [a face, a hand] (standing, sitting)]"


@pytest.fixture(scope="module")
def predictor(tiny_owlvit_dir, tiny_clip_dir):
    p = TreePredictor.from_pretrained(str(tiny_owlvit_dir), str(tiny_clip_dir), backend="torch")
    p.owl_encoder = ShapeRecorder(p.owl_encoder)
    return p


def _same(a, b) -> None:
    assert (a.prompt, a.image_size, a.dropped_regions) == (
        b.prompt,
        b.image_size,
        b.dropped_regions,
    )
    assert len(a.detections) == len(b.detections) > 0
    for x, y in zip(a.detections, b.detections, strict=True):
        assert (x.id, x.parent_id, x.label) == (y.id, y.parent_id, y.label)
        assert abs(x.score - y.score) < 1e-4
        assert max(abs(p - q) for p, q in zip(x.box, y.box, strict=True)) < 1e-3
        assert [c.best.label for c in x.classifications] == [
            c.best.label for c in y.classifications
        ]


def test_one_encoder_call_for_every_camera_and_results_equal_predict(predictor):
    images = [synthetic_scene(), synthetic_scene()[::-1].copy(), synthetic_scene(100, 140)]
    states = [predictor.prepare(TREE), predictor.prepare("[a cat, a dog]"), predictor.prepare(TREE)]
    config = PredictorConfig(threshold=0.05, max_regions=3)
    singles = [predictor.predict(i, s, config) for i, s in zip(images, states, strict=True)]
    predictor.owl_encoder.shapes.clear()
    batch = predictor.predict_batch(images, states, config)
    assert predictor.owl_encoder.shapes[0] == (3, 3, 96, 96)  # every camera's image at once
    assert all(shape[0] <= 3 and shape[2] == 96 for shape in predictor.owl_encoder.shapes[1:])
    for single, batched in zip(singles, batch, strict=True):  # in camera order, per camera
        _same(single, batched)
        assert batched.timings_ms["encode_image"] > 0


def test_frames_without_a_root_detect_group_are_not_encoded_by_owl(predictor):
    images = [synthetic_scene(), synthetic_scene()]
    states = [predictor.prepare("(indoors, outdoors)"), predictor.prepare("[a cat]")]
    predictor.owl_encoder.shapes.clear()
    only_classify, detect = predictor.predict_batch(images, states)
    assert predictor.owl_encoder.shapes == [(1, 3, 96, 96)]
    assert not only_classify.detections and only_classify.image_classifications
    assert detect.detections and not detect.image_classifications
    with pytest.raises(ValueError, match="2 images but 1 prompt states"):
        predictor.predict_batch(images, states[:1])
