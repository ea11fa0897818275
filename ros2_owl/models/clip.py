"""CLIP for region classification: image encoder module, cached text encoder, scaled cosines."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..image_ops import Preprocessor
from . import ModelLoadError, load_pretrained
from .random_init import is_random_weights
from .text_cache import CachedTextEncoder, TextEmbeddingCache

CLIP_TEXT_TOKENS = 77


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

    @classmethod
    def load(cls, model_id: str, device: str = "cpu", cache_dir: str | None = None) -> ClipModel:
        """Load CLIPModel + processor from a hub id or directory (ModelLoadError on failure)."""
        import transformers as tf

        def _load(source: str):
            config = tf.AutoConfig.from_pretrained(source, cache_dir=cache_dir)
            if getattr(config, "model_type", "?") != "clip":
                raise ModelLoadError(
                    f"{source!r} is a {getattr(config, 'model_type', '?')!r} model, not CLIP "
                    "(expected model_type 'clip' in config.json)"
                )
            model = tf.CLIPModel.from_pretrained(source, cache_dir=cache_dir)
            processor = tf.AutoProcessor.from_pretrained(source, cache_dir=cache_dir)
            return model, processor

        model, processor = load_pretrained("CLIP classification", model_id, _load)
        try:
            model = model.to(device).eval()
        except (RuntimeError, AssertionError) as error:
            raise ModelLoadError(
                f"cannot move {model_id!r} to device {device!r}: {error}"
            ) from error
        ip = processor.image_processor
        info = ClipInfo(
            model_id=str(model_id),
            image_size=int(model.config.vision_config.image_size),
            embed_dim=int(model.config.projection_dim),
            logit_scale=float(model.logit_scale.detach().exp()),
            random_weights=is_random_weights(model_id),
        )
        mean = tuple(float(v) for v in ip.image_mean)
        std = tuple(float(v) for v in ip.image_std)
        return cls(model, processor.tokenizer, info, mean, std)

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
