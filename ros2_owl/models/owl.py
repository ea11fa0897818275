"""OWL-ViT / OWLv2 split into encode-text, encode-image (vision tower + heads) and decode.

The split reproduces ``OwlViTForObjectDetection.forward`` / ``Owlv2ForObjectDetection.forward``
(same submodules, same maths), so text is encoded once per prompt and an image once per region.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..image_ops import Preprocessor, cxcywh_to_xyxy
from . import ModelLoadError, load_pretrained
from .random_init import is_random_weights
from .text_cache import CachedTextEncoder, TextEmbeddingCache

OWL_TEXT_TOKENS = 16


class OwlImageEncoder(nn.Module):
    """Vision tower + class/box (+ objectness) heads: pixels [B,3,S,S] -> per-patch outputs.

    Outputs, in `output_names` order: class_embeds [B,P,D] (class head projection, not yet
    normalised), logit_shift [B,P,1], logit_scale [B,P,1] (after elu + 1), pred_boxes [B,P,4]
    (cx, cy, w, h in [0, 1] of the square input) and, for OWLv2, objectness [B,P] (logits).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        base = model.owlv2 if hasattr(model, "owlv2") else model.owlvit
        self.is_v2 = hasattr(model, "objectness_head")
        self.vision_model = base.vision_model
        self.layer_norm = model.layer_norm
        self.class_head = model.class_head
        self.box_head = model.box_head
        if self.is_v2:
            self.objectness_head = model.objectness_head
        vision = model.config.vision_config
        self.image_size: int = int(vision.image_size)
        self.grid = self.image_size // int(vision.patch_size)
        self.register_buffer("box_bias", model.box_bias.detach().clone(), persistent=False)
        names = ("class_embeds", "logit_shift", "logit_scale", "pred_boxes")
        self.output_names: tuple[str, ...] = names + (("objectness",) if self.is_v2 else ())

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.vision_model(pixel_values=pixel_values)[0]
        hidden = self.vision_model.post_layernorm(hidden)
        feats = self.layer_norm(hidden[:, 1:, :] * hidden[:, :1, :])  # patches x class token
        head = self.class_head
        class_embeds = head.dense0(feats)
        logit_shift = head.logit_shift(feats)
        logit_scale = head.elu(head.logit_scale(feats)) + 1
        boxes = torch.sigmoid(self.box_head(feats) + self.box_bias.to(feats.dtype))
        out = (class_embeds, logit_shift, logit_scale, boxes)
        if self.is_v2:
            out = out + (self.objectness_head(feats)[..., 0],)
        return out


def decode_logits(outputs: dict[str, torch.Tensor], queries: torch.Tensor) -> torch.Tensor:
    """Patch-vs-query logits [B, P, Q] exactly as the OWL class head computes them."""
    embeds = outputs["class_embeds"].float()
    embeds = embeds / (torch.linalg.norm(embeds, dim=-1, keepdim=True) + 1e-6)
    q = queries.to(embeds.device, torch.float32)
    q = q / (torch.linalg.norm(q, dim=-1, keepdim=True) + 1e-6)
    logits = torch.einsum("bpd,qd->bpq", embeds, q)
    return (logits + outputs["logit_shift"].float()) * outputs["logit_scale"].float()


def decode_boxes(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Predicted boxes [B, P, 4] as normalised (x0, y0, x1, y1) of the square model input."""
    return cxcywh_to_xyxy(outputs["pred_boxes"].float())


@dataclass(frozen=True)
class OwlInfo:
    """What the predictor needs to know about a loaded OWL model."""

    model_id: str
    kind: str  # "owlvit" | "owlv2"
    image_size: int
    embed_dim: int
    random_weights: bool


class OwlModel(CachedTextEncoder):
    """A loaded OWL-ViT/OWLv2: text encoder with a per-label cache, image encoder module, decode."""

    max_text_tokens = OWL_TEXT_TOKENS
    text_model_name = "OWL"

    def __init__(self, model: nn.Module, tokenizer, info: OwlInfo, preprocessor: Preprocessor):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.preprocessor = preprocessor
        self.encoder = OwlImageEncoder(model)
        self.device = next(model.parameters()).device
        self.text_cache = TextEmbeddingCache(
            self._run_text, self.check_label, info.embed_dim, self.device
        )

    @classmethod
    def load(cls, model_id: str, device: str = "cpu", cache_dir: str | None = None) -> OwlModel:
        """Load model + processor from a hub id or directory (ModelLoadError on failure)."""
        import transformers as tf

        def _load(source: str):
            config = tf.AutoConfig.from_pretrained(source, cache_dir=cache_dir)
            model_type = getattr(config, "model_type", "?")
            classes = {"owlvit": tf.OwlViTForObjectDetection, "owlv2": tf.Owlv2ForObjectDetection}
            if model_type not in classes:
                raise ModelLoadError(
                    f"{source!r} is a {model_type!r} model, not OWL-ViT or OWLv2 "
                    "(expected model_type 'owlvit' or 'owlv2' in config.json)"
                )
            model = classes[model_type].from_pretrained(source, cache_dir=cache_dir)
            processor = tf.AutoProcessor.from_pretrained(source, cache_dir=cache_dir)
            return model_type, model, processor

        model_type, model, processor = load_pretrained("OWL detection", model_id, _load)
        try:
            model = model.to(device).eval()
        except (RuntimeError, AssertionError) as error:
            raise ModelLoadError(
                f"cannot move {model_id!r} to device {device!r}: {error}"
            ) from error
        image_processor = processor.image_processor
        size = int(model.config.vision_config.image_size)
        mean = tuple(float(v) for v in image_processor.image_mean)
        std = tuple(float(v) for v in image_processor.image_std)
        mode = "pad" if model_type == "owlv2" else "stretch"
        info = OwlInfo(
            model_id=str(model_id),
            kind=model_type,
            image_size=size,
            embed_dim=int(model.config.text_config.hidden_size),
            random_weights=is_random_weights(model_id),
        )
        return cls(model, processor.tokenizer, info, Preprocessor(size, mode, mean, std, 0.0))

    # ------------------------------------------------------------------ text

    @torch.inference_mode()
    def _run_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts, padding="max_length", max_length=OWL_TEXT_TOKENS, return_tensors="pt"
        ).to(self.device)
        base = self.model.owlv2 if self.info.kind == "owlv2" else self.model.owlvit
        pooled = base.text_model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).pooler_output
        embeds = base.text_projection(pooled).float()
        return embeds / torch.linalg.norm(embeds, dim=-1, keepdim=True)
