"""CLIP for region classification: image encoder module, cached text encoder, classify.

Classify groups: with two or more labels the scores are the softmax of CLIP's scaled cosines
among the sibling labels (they sum to 1). A single-label group would always score 1.0 that
way, so it is scored against a fixed neutral prompt instead: score = sigmoid(logit_scale *
(cos(region, label) - cos(region, NEUTRAL_PROMPT))), the two-way softmax of label vs "a photo
of something". 0.5 means the label describes the region no better than a generic caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..core.preprocess import Preprocessor, crop_regions
from . import load_transformers_model
from .text_cache import CachedTextEncoder, TextEmbeddingCache

CLIP_TEXT_TOKENS = 77
NEUTRAL_PROMPT = "a photo of something"


class ClipImageEncoder(nn.Module):
    """CLIP vision tower + projection: pixels [B,3,S,S] -> (image_embeds [B,D],), unnormalised."""

    output_names: tuple[str, ...] = ("image_embeds",)

    def __init__(self, model: nn.Module):
        super().__init__()
        self.vision_model = model.vision_model
        self.visual_projection = model.visual_projection
        self.image_size: int = int(model.config.vision_config.image_size)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor]:
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output
        return (self.visual_projection(pooled),)


@dataclass(frozen=True)
class ClipInfo:
    """What the predictor needs to know about a loaded CLIP model."""

    model_id: str
    image_size: int
    embed_dim: int
    logit_scale: float
    random_weights: bool


class ClipModel(CachedTextEncoder):
    """A loaded CLIP: cached text encoder, image encoder module and the two crop rules."""

    max_text_tokens = CLIP_TEXT_TOKENS
    text_model_name = "CLIP"

    def __init__(self, model: nn.Module, tokenizer, info: ClipInfo, mean, std):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.encoder = ClipImageEncoder(model)
        self.device = next(model.parameters()).device
        size = info.image_size
        self.preprocess_image = Preprocessor(size, "crop", mean, std)  # CLIPProcessor's rule
        self.preprocess_region = Preprocessor(size, "pad_center", mean, std)
        self.text_cache = TextEmbeddingCache(
            self._run_text, self.check_label, info.embed_dim, self.device
        )

    def free_image_encoder(self) -> None:
        """Drop the torch vision tower once a runtime backend encodes the regions (text stays)."""
        from .owl import FreedImageEncoder
        from .weight_pages import drop_weight_pages

        weights = list(self.encoder.parameters())
        self.model.vision_model = self.model.visual_projection = None
        self.encoder = FreedImageEncoder.of(self.encoder)
        drop_weight_pages(weights)

    @classmethod
    def load(cls, model_id: str, device: str = "cpu", cache_dir: str | None = None) -> ClipModel:
        """Load CLIPModel + processor from a hub id or directory (ModelLoadError on failure)."""
        loaded = load_transformers_model(
            "CLIP classification",
            "CLIP",
            model_id,
            {"clip": "CLIPModel"},
            device=device,
            cache_dir=cache_dir,
        )
        model = loaded.model
        info = ClipInfo(
            model_id=str(model_id),
            image_size=int(model.config.vision_config.image_size),
            embed_dim=int(model.config.projection_dim),
            logit_scale=float(model.logit_scale.detach().exp()),
            random_weights=loaded.random_weights,
        )
        return cls(model, loaded.tokenizer, info, loaded.mean, loaded.std)

    def pixels(self, image: torch.Tensor, boxes: Sequence[Sequence[float]] | None) -> torch.Tensor:
        """Model input [R, 3, S, S]: the whole image (boxes None) or crops, each padded to a
        square (centred, mean colour) like every region, never centre-cropped as CLIPProcessor
        does: a root group such as (indoors, outdoors) sees all of a 16:9 frame."""
        if boxes is None:
            return self.preprocess_region(image)[None]
        return crop_regions(image, boxes, self.preprocess_region)[0]

    def group_texts(
        self, groups: Sequence[Sequence[str]]
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Text embeddings [K, D] per classify group, and NEUTRAL_PROMPT's [1, D] when a group
        has a single label (None otherwise); one batched (cached) text-encoder call."""
        texts = [t for group in groups for t in group]
        if any(len(group) == 1 for group in groups):
            texts.append(NEUTRAL_PROMPT)
        embeds = dict(zip(texts, self.encode_text(texts), strict=True))
        per_group = [torch.stack([embeds[t] for t in group]) for group in groups]
        return per_group, embeds[NEUTRAL_PROMPT][None] if NEUTRAL_PROMPT in embeds else None

    @torch.inference_mode()
    def _run_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
        pooled = self.model.text_model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).pooler_output
        embeds = self.model.text_projection(pooled).float()
        return embeds / torch.linalg.norm(embeds, dim=-1, keepdim=True)

    def logits(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """CLIP's scaled cosine similarities [R, K] (logit_scale * cos)."""
        img = image_embeds.float()
        img = img / torch.linalg.norm(img, dim=-1, keepdim=True)
        return self.info.logit_scale * img @ text_embeds.to(img.device, torch.float32).T

    def classify(
        self, image_embeds: torch.Tensor, texts: torch.Tensor, neutral: torch.Tensor | None
    ) -> torch.Tensor:
        """One region's label probabilities [K] (see the module docstring for the two rules)."""
        logits = self.logits(image_embeds, texts)[0]
        if logits.numel() == 1:
            return torch.sigmoid(logits - self.logits(image_embeds, neutral)[0])
        return torch.softmax(logits, dim=0)
