"""Random-weight model builder: real tokenizer ids, markers, caching, from_pretrained round trip."""

from __future__ import annotations

import json

import pytest
import torch
import transformers as tf

from ros2_owl import models
from ros2_owl.demo import random_models as ri


def test_clip_tokenizer_reproduces_reference_ids(clip_tokenizer):
    assert clip_tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(clip_tokenizer) == 49408


def test_owl_tokenizer_pads_with_bang_to_16(tiny_owlvit_dir):
    processor = tf.AutoProcessor.from_pretrained(tiny_owlvit_dir)
    ids = processor(text=[["a cat", "a photo of a dog"]], return_tensors="pt").input_ids
    assert ids.shape == (2, 16)
    assert ids[0, :4].tolist() == [49406, 320, 2368, 49407]
    assert ids[0, 4:].eq(0).all()  # "!" is id 0


def test_vocab_files_are_written(tmp_path):
    vocab, merges = ri.write_clip_vocab(tmp_path)
    data = json.loads(vocab.read_text())
    assert len(data) == 49408 and data["<|endoftext|>"] == 49407 and data["a</w>"] == 320
    assert merges.read_text().startswith("#version: 0.2\n")


@pytest.mark.parametrize(
    ("fixture", "cls"),
    [
        ("tiny_owlvit_dir", tf.OwlViTForObjectDetection),
        ("tiny_owlv2_dir", tf.Owlv2ForObjectDetection),
        ("tiny_clip_dir", tf.CLIPModel),
    ],
)
def test_saved_models_load_with_from_pretrained_and_are_marked(fixture, cls, request):
    path = request.getfixturevalue(fixture)
    model = cls.from_pretrained(path)
    assert isinstance(model, cls)
    assert models.is_random_weights(path)
    assert "RANDOM WEIGHTS" in (path / models.MARKER_FILE).read_text()
    info = json.loads((path / ri.INFO_FILE).read_text())
    assert info["random_weights"] is True and info["spec_hash"] in path.name


def test_owl_configs_tie_projection_to_text_width():
    for name in ("tiny-owlvit", "tiny-owlv2", "owlvit-base-patch32", "owlv2-base-patch16"):
        spec = ri.SPECS[name]
        assert spec.projection_dim == spec.text.get("hidden_size", 512)


def test_cache_is_idempotent_and_seeded(tmp_path, tiny_owlvit_dir):
    spec = ri.SPECS["tiny-owlvit"]
    first = ri.ensure_random_model(spec, tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert ri.ensure_random_model("tiny-owlvit", tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    a = tf.OwlViTForObjectDetection.from_pretrained(first).state_dict()
    b = tf.OwlViTForObjectDetection.from_pretrained(tiny_owlvit_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_spec_hash_changes_with_config():
    spec = ri.SPECS["tiny-owlvit"]
    other = ri.RandomModelSpec(spec.kind, spec.name, spec.text, spec.vision, 32, seed=99)
    assert other.key() != spec.key()


def test_unknown_model_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown random model 'nope'"):
        ri.ensure_random_model("nope", tmp_path)


def test_plain_directory_is_not_random(tmp_path):
    assert not models.is_random_weights(tmp_path)
