"""TreePredictor on tiny random models: parity with transformers, the tree, caching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf
from fixtures_models import noise_image, synthetic_scene

from ros2_owl.core.boxes import box_iou
from ros2_owl.core.predictor import NEUTRAL_PROMPT, PredictorConfig, TreePredictor
from ros2_owl.core.preprocess import ImageError
from ros2_owl.core.prompt import PromptError

FLAT = PredictorConfig(threshold=0.0, scoring="exclusive", nms_iou=None, max_detections=10_000)


@pytest.fixture(scope="module")
def owlvit(tiny_owlvit_dir, tiny_clip_dir):
    return TreePredictor.from_pretrained(str(tiny_owlvit_dir), str(tiny_clip_dir))


@pytest.fixture(scope="module")
def owlv2(tiny_owlv2_dir, tiny_clip_dir):
    return TreePredictor.from_pretrained(str(tiny_owlv2_dir), str(tiny_clip_dir))


@pytest.mark.parametrize("which", ["owlvit", "owlv2"])
def test_flat_prompt_equals_transformers_post_processing(which, request):
    predictor = request.getfixturevalue(which)
    path = predictor.owl.info.model_id
    # OWL-ViT at its own size (no resize); OWLv2 non-square (pad to square, no resize)
    img = noise_image(96, 96) if which == "owlvit" else noise_image(64, 96)
    cls = tf.OwlViTForObjectDetection if which == "owlvit" else tf.Owlv2ForObjectDetection
    processor = tf.AutoProcessor.from_pretrained(path)
    inputs = processor(text=[["a cat", "a dog"]], images=img, return_tensors="pt")
    with torch.no_grad():
        outputs = cls.from_pretrained(path).eval()(**inputs)
    threshold = float(torch.sigmoid(outputs.logits.max(-1).values).median())
    side = max(img.shape[:2])
    sizes = [img.shape[:2]] if which == "owlvit" else [(side, side)]  # OWLv2 boxes: padded square
    expected = processor.image_processor.post_process_object_detection(
        outputs, threshold=threshold, target_sizes=sizes
    )[0]
    state = predictor.prepare("[a cat, a dog]", threshold=threshold)
    result = predictor.predict(img, state, FLAT)
    assert len(result.detections) == len(expected["scores"]) > 5
    order = torch.argsort(expected["scores"], descending=True)
    ours = sorted(result.detections, key=lambda d: -d.score)
    assert torch.allclose(
        torch.tensor([d.score for d in ours]), expected["scores"][order], atol=1e-4
    )
    # transformers leaves boxes unclipped; ours are clipped to the input image
    height, width = img.shape[:2]
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    hf_boxes = torch.minimum(expected["boxes"][order].clamp(min=0), limit)
    assert torch.allclose(torch.tensor([d.box for d in ours]), hf_boxes, atol=1e-4)
    assert all(
        0 <= d.box[0] <= d.box[2] <= width and 0 <= d.box[1] <= d.box[3] <= height for d in ours
    )
    assert [d.label_index - 1 for d in ours] == expected["labels"][order].tolist()
    assert {d.parent_id for d in ours} == {0} and result.image_size == (img.shape[1], img.shape[0])

    loose = PredictorConfig(threshold=0.0, nms_iou=None, max_detections=10_000)
    independent = predictor.predict(img, state, loose)
    assert len(independent.detections) >= len(result.detections)
    assert all(d.score > threshold for d in independent.detections)
    best = {(round(d.score, 6), d.box) for d in result.detections}
    assert best <= {(round(d.score, 6), d.box) for d in independent.detections}


def test_nms_and_max_detections(owlvit):
    state = owlvit.prepare("[a cat, a dog]", threshold=0.0)
    result = owlvit.predict(synthetic_scene(), state, PredictorConfig(threshold=0.0, nms_iou=0.3))
    for label in (1, 2):
        boxes = torch.tensor([d.box for d in result.detections if d.label_index == label])
        assert len(boxes) > 1  # otherwise there is nothing NMS could have suppressed
        iou = box_iou(boxes, boxes).fill_diagonal_(0)
        assert iou.max() <= 0.3 + 1e-6
    capped = owlvit.predict(
        synthetic_scene(), state, PredictorConfig(threshold=0.0, max_detections=3)
    )
    assert len(capped.detections) == 3
    assert [d.id for d in capped.detections] == [1, 2, 3]


def test_spent_detection_budget_skips_nested_encoding(tiny_owlvit_dir):
    """Once the root level fills max_detections, nested crops are not encoded for nothing."""
    predictor = TreePredictor.from_pretrained(str(tiny_owlvit_dir), None)
    batches = []
    encoder = predictor.owl_encoder

    def counting(pixels):
        batches.append(pixels.shape[0])
        return encoder(pixels)

    counting.max_batch = encoder.max_batch  # the backend protocol's batch limit
    predictor.owl_encoder = counting
    state = predictor.prepare("[a cat [a dog]]", threshold=0.0)
    full = predictor.predict(
        synthetic_scene(), state, PredictorConfig(threshold=0.0, max_detections=50)
    )
    assert batches == [1, 8] and any(d.parent_id != 0 for d in full.detections)
    batches.clear()
    capped = predictor.predict(
        synthetic_scene(), state, PredictorConfig(threshold=0.0, max_detections=4)
    )
    assert batches == [1]
    assert len(capped.detections) == 4 and {d.parent_id for d in capped.detections} == {0}


def test_per_label_thresholds(owlvit):
    state = owlvit.prepare("[a cat@0.99, a dog]", threshold=0.0)
    result = owlvit.predict(synthetic_scene(), state, FLAT)
    assert state.thresholds == {1: 0.99, 2: 0.0}
    assert all(d.label_index == 2 for d in result.detections) and result.detections
    override = owlvit.prepare("[a cat, a dog]", label_thresholds={"a dog": 0.999})
    assert override.thresholds[2] == 0.999
    loose = owlvit.predict(
        synthetic_scene(), override, PredictorConfig(threshold=0.0, nms_iou=None)
    )
    assert all(d.label_index == 1 for d in loose.detections)  # config threshold for 'a cat'


def test_nested_detect_and_classify_tree(owlvit):
    prompt = "[a person [a face, a hand] (standing, sitting)]"
    state = owlvit.prepare(prompt, threshold=0.0)
    config = PredictorConfig(threshold=0.0, nms_iou=0.3, max_regions=3, max_detections=60)
    result = owlvit.predict(synthetic_scene(), state, config)
    by_id = {d.id: d for d in result.detections}
    persons = [d for d in result.detections if d.label == "a person"]
    children = [d for d in result.detections if d.parent_id != 0]
    assert persons and children
    assert len({d.parent_id for d in children}) <= 3
    assert result.dropped_regions == max(0, len(persons) - 3)
    for child in children:
        parent = by_id[child.parent_id]
        assert parent.label == "a person" and child.label in ("a face", "a hand")
        px0, py0, px1, py1 = parent.box
        x0, y0, x1, y1 = child.box
        assert px0 - 1 <= x0 <= x1 <= px1 + 1 and py0 - 1 <= y0 <= y1 <= py1 + 1
    classified = [p for p in persons if p.classifications]
    assert len(classified) == min(3, len(persons))
    for person in classified:
        (cls,) = person.classifications
        assert cls.region_id == person.id and [s.label for s in cls.scores] == [
            "standing",
            "sitting",
        ]
        assert sum(s.score for s in cls.scores) == pytest.approx(1.0, abs=1e-5)
        assert cls.best.score == max(s.score for s in cls.scores)
    stages = {"preprocess", "encode_image", "decode", "nms", "classify", "total"}
    assert stages <= set(result.timings_ms)


def test_root_classify_and_single_label_score(owlvit):
    state = owlvit.prepare("(indoor, outdoor)")
    result = owlvit.predict(synthetic_scene(), state)
    (cls,) = result.image_classifications
    assert cls.region_id == 0 and sum(s.score for s in cls.scores) == pytest.approx(1.0)
    single = owlvit.prepare("(indoor)")
    (one,) = owlvit.predict(synthetic_scene(), single).image_classifications
    clip = owlvit.clip
    # the whole frame, padded to a square (the region rule), not CLIPProcessor's centre crop
    pixels = clip.preprocess_region(torch.from_numpy(synthetic_scene()).permute(2, 0, 1))[None]
    emb = owlvit.clip_encoder(pixels)["image_embeds"]
    texts = clip.encode_text(["indoor", NEUTRAL_PROMPT])
    logits = clip.logits(emb, texts)[0]
    expected = torch.sigmoid(logits[0] - logits[1]).item()
    assert one.scores[0].score == pytest.approx(expected, abs=1e-5)
    assert 0.0 < expected < 1.0


def test_root_classify_sees_the_whole_wide_frame(owlvit):
    """A 16:9 frame whose only content is in its left and right fifths: a centre crop would see
    the same uniform grey whatever is there; the padded square sees it."""
    state = owlvit.prepare("(indoors, outdoors)")
    grey = np.full((90, 160, 3), 128, np.uint8)
    edges = grey.copy()
    edges[:, :32] = (250, 20, 20)
    edges[:, -32:] = (20, 20, 250)
    plain = owlvit.predict(grey, state).image_classifications[0].scores[0].score
    framed = owlvit.predict(edges, state).image_classifications[0].scores[0].score
    assert abs(plain - framed) > 1e-4


@pytest.mark.parametrize("which", ["owlvit", "owlv2"])
@pytest.mark.parametrize("prompt", ["[a cat, a dog]", "[a cat [an ear, a dog]]"])
def test_no_zero_area_boxes_at_any_level(which, prompt, request):
    """OWLv2 patches in the bottom padding of a 640x360 frame clip to zero height; such boxes
    (and boxes of nested levels that fall outside their parent) are dropped, not published."""
    predictor = request.getfixturevalue(which)
    state = predictor.prepare(prompt, threshold=0.0)
    frame = np.asarray(
        torch.nn.functional.interpolate(
            torch.from_numpy(synthetic_scene()).permute(2, 0, 1)[None].float(), (360, 640)
        )[0]
        .permute(1, 2, 0)
        .byte()
    )
    config = PredictorConfig(threshold=0.0, nms_iou=None, max_detections=10_000, max_regions=4)
    result = predictor.predict(frame, state, config)
    assert result.detections
    for d in result.detections:
        x0, y0, x1, y1 = d.box
        assert x1 - x0 >= 0.01 and y1 - y0 >= 0.01, d
    if "[an ear" in prompt:
        assert any(d.parent_id != 0 for d in result.detections)


def test_text_cache_counts(owlvit):
    owl = owlvit.owl
    owlvit.prepare("[a red kite, a blue kite]")
    before = owl.labels_encoded
    state = owlvit.prepare("[a red kite, a blue kite]")
    owlvit.predict(synthetic_scene(), state)
    assert owl.labels_encoded == before
    owlvit.prepare("[a red kite, a green kite]")
    assert owl.labels_encoded == before + 1


def test_bad_images_raise_image_error(owlvit):
    state = owlvit.prepare("[a cat]")
    bad_images = (
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((8, 8, 3), np.int32),
        np.full((8, 8, 3), np.nan, np.float32),
        np.zeros((8, 8), np.uint8),
    )
    for bad in bad_images:
        with pytest.raises(ImageError):
            owlvit.predict(bad, state)


def test_prepare_errors(owlvit, tiny_owlvit_dir):
    with pytest.raises(PromptError):
        owlvit.prepare("[a cat")
    with pytest.raises(ValueError, match="threshold"):
        owlvit.prepare("[a cat]", threshold=1.5)
    with pytest.raises(ValueError, match=r"unknown reference query \$nothing"):
        owlvit.prepare("[$nothing]")
    long_label = "a very small red and white striped cat sitting on top of a big old wooden box"
    with pytest.raises(PromptError, match="16") as info:
        owlvit.prepare(f"[a dog, {long_label}]")
    assert info.value.column == 8
    with pytest.raises(PromptError, match="nested under classify label 'indoors'") as info:
        owlvit.prepare("[a cat] (indoors [a lamp], outdoors)")
    assert info.value.column == 17  # the nested "["
    no_clip = TreePredictor.from_pretrained(str(tiny_owlvit_dir), None)
    with pytest.raises(ValueError, match="no CLIP model"):
        no_clip.prepare("[a cat (black, white)]")


def test_config_validation():
    with pytest.raises(ValueError, match="scoring"):
        PredictorConfig(scoring="best")
    with pytest.raises(ValueError, match="nms_iou"):
        PredictorConfig(nms_iou=2.0)
