"""Reference-image queries: transformers' image-guided parity, box selection, save/load."""

from __future__ import annotations

import json

import pytest
import torch
import transformers as tf
from fixtures_models import noise_image

from ros2_owl.core.predictor import PredictorConfig, TreePredictor
from ros2_owl.core.queries import QueryStore, check_query_name
from ros2_owl.models.owl import decode_logits, select_query_patch


@pytest.fixture(scope="module", params=["owlvit", "owlv2"])
def predictor(request, tiny_owlvit_dir, tiny_owlv2_dir):
    path = tiny_owlvit_dir if request.param == "owlvit" else tiny_owlv2_dir
    return TreePredictor.from_pretrained(str(path), None)


def test_registered_query_reproduces_image_guided_detection(predictor):
    path = predictor.owl.info.model_id
    v2 = predictor.owl.info.kind == "owlv2"
    cls = tf.Owlv2ForObjectDetection if v2 else tf.OwlViTForObjectDetection
    model = cls.from_pretrained(path).eval()
    processor = tf.AutoProcessor.from_pretrained(path)
    reference, target = noise_image(96, 96, 1), noise_image(96, 96, 2)
    inputs = processor(images=target, query_images=reference, return_tensors="pt")
    with torch.no_grad():
        expected = model.image_guided_detection(**inputs)

    predictor.register_query("ref", reference)
    state = predictor.prepare("[$ref, a cat]")
    pixels = predictor.owl.preprocessor(torch.from_numpy(target).permute(2, 0, 1))[None]
    outputs = predictor.owl_encoder(pixels)
    logits = decode_logits(outputs, state.detect_queries[0])
    assert torch.allclose(logits[..., :1], expected.logits, atol=1e-4)

    loose = PredictorConfig(threshold=0.0, nms_iou=None, max_detections=10_000)
    result = predictor.predict(target, state, loose)
    ref_scores = sorted((d.score for d in result.detections if d.label == "$ref"), reverse=True)
    want = torch.sigmoid(expected.logits[0, :, 0]).sort(descending=True).values
    assert torch.allclose(torch.tensor(ref_scores), want, atol=1e-5)
    assert {d.label for d in result.detections} == {"$ref", "a cat"}


def test_query_box_selects_an_overlapping_patch(predictor):
    img = noise_image(80, 120, 3)
    query = predictor.register_query("corner", img, (0, 0, 40, 30))
    assert query.box == (0.0, 0.0, 40.0, 30.0) and query.image_size == (120, 80)
    pixels = predictor.owl.preprocessor(torch.from_numpy(img).permute(2, 0, 1))[None]
    outputs = predictor.owl_encoder(pixels)
    assert torch.equal(query.embedding, outputs["class_embeds"][0, query.patch_index])
    with pytest.raises(ValueError, match="not inside the 120x80 image"):
        predictor.register_query("bad", img, (10, 10, 200, 20))


@pytest.mark.parametrize("objectness", [False, True])
def test_a_box_that_overlaps_no_predicted_box_still_selects_a_patch(objectness):
    """Nothing overlaps: the generalised IoUs are all negative and transformers' 0.8 x best
    cut selects nothing (IndexError); the patch nearest the box is chosen instead."""
    centres = torch.tensor([[0.7, 0.7], [0.9, 0.9], [0.6, 0.8]])
    outputs = {
        "pred_boxes": torch.cat([centres, torch.full((3, 2), 0.1)], dim=1)[None],
        "class_embeds": torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(0)),
    }
    if objectness:
        outputs["objectness"] = torch.tensor([[0.0, 5.0, 1.0]])
    one_pixel = torch.tensor([0.0, 0.0, 0.01, 0.01])
    embeds = outputs["class_embeds"][0]
    # every generalised IoU is about -0.98: all three are within 20% of the best
    expected = 1 if objectness else int((embeds @ embeds.mean(dim=0)).argmin())
    assert select_query_patch(outputs, one_pixel) == expected


def test_every_tiny_box_inside_the_image_gets_a_patch(predictor):
    """1x1 and 2x1 px boxes all over the image (corners, edges, padding side) never fail."""
    img = noise_image(60, 100, 5)
    boxes = [(x, y, x + w, y + 1) for x in (0, 37, 99 - 1) for y in (0, 30, 59) for w in (1, 2)]
    boxes = [b for b in boxes if b[2] <= 100]
    for box in boxes:
        query = predictor.register_query("tiny", img, box)
        assert (
            0
            <= query.patch_index
            < predictor.owl_encoder(
                predictor.owl.preprocessor(torch.from_numpy(img).permute(2, 0, 1))[None]
            )["class_embeds"].shape[1]
        )


def test_save_and_load_round_trip(predictor, tmp_path):
    predictor.register_query("mug", noise_image(96, 96, 4))
    path = tmp_path / "queries.json"
    predictor.save_queries(path)
    fresh = QueryStore()
    names = fresh.load(path, embedding_dim=predictor.owl.info.embed_dim)
    assert "mug" in names
    assert torch.equal(fresh.get("mug").embedding, predictor.queries.get("mug").embedding)
    predictor.queries.remove("mug")
    with pytest.raises(ValueError, match=r"\$mug"):
        predictor.prepare("[$mug]")
    assert "mug" in predictor.load_queries(path)
    assert predictor.prepare("[$mug]").detect_queries[0].shape[0] == 1


def test_load_rejects_other_models_and_bad_files(tmp_path):
    store = QueryStore()
    entry = {"name": "cup", "embedding": [0.0] * 8, "image_size": [4, 4], "box": None}
    doc = {"format": "ros2_owl.queries", "version": 1, "queries": [entry]}
    path = tmp_path / "q.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="8-dim embedding but the loaded detection model uses 32"):
        store.load(path, embedding_dim=32)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        store.load(path, embedding_dim=32)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a ros2_owl query file"):
        store.load(path, embedding_dim=32)
    with pytest.raises(ValueError, match="cannot read"):
        store.load(tmp_path / "missing.json", embedding_dim=32)


def test_query_names_follow_the_prompt_syntax():
    assert check_query_name("red_mug-2") == "red_mug-2"
    with pytest.raises(ValueError, match="invalid query name"):
        check_query_name("red mug")


def test_a_huge_query_name_is_not_echoed_whole():
    with pytest.raises(ValueError) as refused:
        check_query_name("x y" * 20_000)
    assert len(str(refused.value)) < 200, str(refused.value)
