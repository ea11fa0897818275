"""models: the encode-text / encode-image / decode split reproduces transformers; clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import transformers as tf

from ros2_owl.backends import TorchImageEncoder
from ros2_owl.models import LabelTooLongError, ModelLoadError
from ros2_owl.models.clip import ClipModel
from ros2_owl.models.owl import OwlModel, box_scale, decode_boxes, decode_logits
from ros2_owl.preprocess import Preprocessor

LABELS = ["a cat", "a remote control", "two dogs on a sofa"]


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module", params=["owlvit", "owlv2"])
def owl_pair(request, tiny_owlvit_dir, tiny_owlv2_dir):
    path = tiny_owlvit_dir if request.param == "owlvit" else tiny_owlv2_dir
    cls = tf.OwlViTForObjectDetection if request.param == "owlvit" else tf.Owlv2ForObjectDetection
    return OwlModel.load(str(path)), cls.from_pretrained(path).eval(), path


def test_split_reproduces_hf_forward(owl_pair):
    owl, hf, path = owl_pair
    processor = tf.AutoProcessor.from_pretrained(path)
    inputs = processor(text=[LABELS], images=_image(96, 96), return_tensors="pt")
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


def test_clip_matches_hf(tiny_clip_dir):
    clip = ClipModel.load(str(tiny_clip_dir))
    hf = tf.CLIPModel.from_pretrained(tiny_clip_dir).eval()
    processor = tf.AutoProcessor.from_pretrained(tiny_clip_dir)
    inputs = processor(text=LABELS, images=_image(64, 64), return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = hf(**inputs)
    text = clip.encode_text(LABELS)
    assert torch.allclose(text, expected.text_embeds, atol=1e-5)
    image = TorchImageEncoder(clip.encoder)(inputs["pixel_values"])["image_embeds"]
    assert torch.allclose(clip.logits(image, text), expected.logits_per_image, atol=1e-4)
    assert clip.encoder.output_names == ("image_embeds",)


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        OwlModel.load(str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(info.value)
    assert issubclass(ModelLoadError, RuntimeError)


def test_directory_without_config_lists_its_files(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"missing config.json.*weights.bin"):
        OwlModel.load(str(tmp_path))


def test_directory_without_weights_is_a_clear_error(tmp_path, tiny_owlvit_dir):
    shutil.copy(tiny_owlvit_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelLoadError, match=f"local directory '{tmp_path}'"):
        OwlModel.load(str(tmp_path))


def test_wrong_model_type_is_named(tiny_clip_dir, tiny_owlvit_dir):
    with pytest.raises(ModelLoadError, match="'clip' model, not OWL-ViT or OWLv2"):
        OwlModel.load(str(tiny_clip_dir))
    with pytest.raises(ModelLoadError, match="not CLIP"):
        ClipModel.load(str(tiny_owlvit_dir))


def test_corrupt_config_is_wrapped(tmp_path, tiny_owlvit_dir):
    for item in tiny_owlvit_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": 42})[:-3])
    with pytest.raises(ModelLoadError, match="cannot load OWL detection model"):
        OwlModel.load(str(tmp_path))


MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_box_scale_rules():
    assert box_scale(Preprocessor(96, "stretch", MEAN, STD), 640, 480) == (640.0, 480.0)
    assert box_scale(Preprocessor(96, "pad", MEAN, STD), 640, 480) == (640.0, 640.0)
