"""models/clip.py: text and image embeddings and logits reproduce transformers' CLIPModel."""

from __future__ import annotations

import torch
import transformers as tf
from fixtures_models import noise_image

from ros2_owl.backends import TorchImageEncoder
from ros2_owl.models.clip import ClipModel

LABELS = ["a cat", "a remote control", "two dogs on a sofa"]


def test_clip_matches_hf(tiny_clip_dir):
    clip = ClipModel.load(str(tiny_clip_dir))
    hf = tf.CLIPModel.from_pretrained(tiny_clip_dir).eval()
    processor = tf.AutoProcessor.from_pretrained(tiny_clip_dir)
    inputs = processor(text=LABELS, images=noise_image(64, 64), return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = hf(**inputs)
    text = clip.encode_text(LABELS)
    assert torch.allclose(text, expected.text_embeds, atol=1e-5)
    image = TorchImageEncoder(clip.encoder)(inputs["pixel_values"])["image_embeds"]
    assert torch.allclose(clip.logits(image, text), expected.logits_per_image, atol=1e-4)
    assert clip.encoder.output_names == ("image_embeds",)
