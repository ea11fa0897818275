"""models/owl.py: the encode-text / encode-image / decode split reproduces transformers."""

from __future__ import annotations

import pytest
import torch
import transformers as tf
from fixtures_models import noise_image

from ros2_owl.backends import TorchImageEncoder
from ros2_owl.core.preprocess import Preprocessor
from ros2_owl.models import LabelTooLongError
from ros2_owl.models.owl import OwlModel, box_scale, decode_boxes, decode_logits

LABELS = ["a cat", "a remote control", "two dogs on a sofa"]
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(scope="module", params=["owlvit", "owlv2"])
def owl_pair(request, tiny_owlvit_dir, tiny_owlv2_dir):
    path = tiny_owlvit_dir if request.param == "owlvit" else tiny_owlv2_dir
    cls = tf.OwlViTForObjectDetection if request.param == "owlvit" else tf.Owlv2ForObjectDetection
    return OwlModel.load(str(path)), cls.from_pretrained(path).eval(), path


def test_split_reproduces_hf_forward(owl_pair):
    owl, hf, path = owl_pair
    processor = tf.AutoProcessor.from_pretrained(path)
    inputs = processor(text=[LABELS], images=noise_image(96, 96), return_tensors="pt")
    with torch.no_grad():
        expected = hf(**inputs)
    text = owl.encode_text(LABELS)
    assert torch.allclose(text, expected.text_embeds[0], atol=1e-5)
    encoder = TorchImageEncoder(owl.encoder)
    outputs = encoder(inputs["pixel_values"])
    assert set(outputs) == set(owl.encoder.output_names)
    assert torch.allclose(decode_logits(outputs, text), expected.logits, atol=1e-4)
    assert torch.allclose(outputs["pred_boxes"], expected.pred_boxes, atol=1e-6)
    corners = decode_boxes(outputs)
    assert torch.allclose(corners[..., 2:] - corners[..., :2], expected.pred_boxes[..., 2:])
    if owl.info.kind == "owlv2":
        assert torch.allclose(outputs["objectness"], expected.objectness_logits, atol=1e-5)
    assert owl.info.random_weights and owl.encoder.image_size == 96


def test_text_cache_encodes_each_label_once(owl_pair):
    owl = owl_pair[0]
    before = owl.labels_encoded
    owl.encode_text(["a zebra", "a lion"])
    assert owl.labels_encoded == before + 2
    again = owl.encode_text(["a lion", "a zebra", "a lion"])
    assert owl.labels_encoded == before + 2 and again.shape == (3, owl.info.embed_dim)
    owl.encode_text(["a lion", "a tiger"])
    assert owl.labels_encoded == before + 3


def test_label_longer_than_16_tokens_is_rejected(owl_pair):
    owl = owl_pair[0]
    long_label = "a very small red and white striped cat sitting on top of a big old wooden box"
    with pytest.raises(LabelTooLongError, match=r"at most 16 \(including start/end tokens\)"):
        owl.encode_text([long_label])


def test_bfloat16_encoder_returns_float32(owl_pair):
    owl = OwlModel.load(str(owl_pair[2]))
    encoder = TorchImageEncoder(owl.encoder, dtype="bfloat16")
    outputs = encoder(torch.zeros(1, 3, 96, 96))
    assert all(v.dtype == torch.float32 for v in outputs.values())


def test_box_scale_rules():
    assert box_scale(Preprocessor(96, "stretch", MEAN, STD), 640, 480) == (640.0, 480.0)
    assert box_scale(Preprocessor(96, "pad", MEAN, STD), 640, 480) == (640.0, 640.0)
