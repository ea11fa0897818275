"""OWL-ViT / OWLv2 split into encode-text, encode-image (vision tower + heads) and decode.

The split reproduces ``OwlViTForObjectDetection.forward`` / ``Owlv2ForObjectDetection.forward``
(same submodules, same maths), so text is encoded once per prompt and an image once per region.
Decoding is the model's: ``OwlModel.decode`` scores patches against a prompt's queries and
returns typed ``Candidates`` in input-image pixels (the inverse of the model's square rule,
clipped to the encoded region); ``reference_patch`` picks a reference query's patch the way
transformers' ``image_guided_detection`` does (rules in ros2_owl/core/queries.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from ..core.boxes import box_iou, cxcywh_to_xyxy, generalized_box_iou, has_area
from ..core.preprocess import Preprocessor, crop_regions, image_size
from . import load_transformers_model
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
        self.patch_size: int = int(vision.patch_size)
        self.grid = self.image_size // self.patch_size
        self.register_buffer("box_bias", model.box_bias.detach().clone(), persistent=False)
        self._model_class = type(model)  # its compute_box_bias, for other input sizes
        self._box_biases: dict[int, torch.Tensor] = {}
        names = ("class_embeds", "logit_shift", "logit_scale", "pred_boxes")
        self.output_names: tuple[str, ...] = names + (("objectness",) if self.is_v2 else ())

    def box_bias_for(self, size: int) -> torch.Tensor:
        """Box bias of a size x size input: transformers' compute_box_bias on that patch grid
        (what its forward does with interpolate_pos_encoding=True)."""
        if size == self.image_size:
            return self.box_bias
        if size not in self._box_biases:
            grid = size // self.patch_size
            cls = self._model_class  # compute_box_bias only calls a staticmethod of its class
            self._box_biases[size] = cls.compute_box_bias(cls, grid, grid)
        return self._box_biases[size]

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Any square input whose side is a multiple of the patch size: other sizes than the
        native one interpolate the position embeddings (interpolate_pos_encoding=True)."""
        size = int(pixel_values.shape[-1])
        hidden = self.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=size != self.image_size
        )[0]
        hidden = self.vision_model.post_layernorm(hidden)
        feats = self.layer_norm(hidden[:, 1:, :] * hidden[:, :1, :])  # patches x class token
        head = self.class_head
        class_embeds = head.dense0(feats)
        logit_shift = head.logit_shift(feats)
        logit_scale = head.elu(head.logit_scale(feats)) + 1
        bias = self.box_bias_for(size).to(device=feats.device, dtype=feats.dtype)
        boxes = torch.sigmoid(self.box_head(feats) + bias)
        out = (class_embeds, logit_shift, logit_scale, boxes)
        if self.is_v2:
            out = out + (self.objectness_head(feats)[..., 0],)
        return out


class FixedSizeEncoder(nn.Module):
    """An OWL image encoder pinned to one input size (adaptive regions): what ONNX Runtime and
    TensorRT export, one artefact per bucket size."""

    def __init__(self, encoder: OwlImageEncoder, size: int):
        super().__init__()
        self.encoder = encoder
        self.image_size = size
        self.output_names = encoder.output_names
        encoder.box_bias_for(size)  # computed now, not while an exporter traces forward

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.encoder(pixel_values)


@dataclass(frozen=True)
class FreedImageEncoder:
    """What stays of an image encoder whose torch weights were freed: its shape, no module."""

    image_size: int
    patch_size: int
    output_names: tuple[str, ...]
    freed = True

    @classmethod
    def of(cls, encoder) -> FreedImageEncoder:
        patch = int(getattr(encoder, "patch_size", 0))
        return cls(int(encoder.image_size), patch, tuple(encoder.output_names))


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


def select_query_patch(outputs: dict[str, torch.Tensor], query_box: torch.Tensor | None) -> int:
    """Index of the patch whose class embedding becomes a reference query (see queries.py).

    `outputs` are one image's encoder outputs (batch of 1); `query_box` is (x0, y0, x1, y1)
    normalised to the square model input, or None for the whole image.
    """
    embeds = outputs["class_embeds"][0].float()
    corners = decode_boxes(outputs)[0]
    objectness = outputs.get("objectness")
    if objectness is not None and query_box is None:
        return int(objectness[0].argmax())
    target = torch.tensor([[0.0, 0.0, 1.0, 1.0]]) if query_box is None else query_box.view(1, 4)
    target = target.to(corners.device, corners.dtype)
    ious = box_iou(target, corners)[0]
    if torch.all(ious == 0):
        ious = generalized_box_iou(target, corners)[0]
    ious = torch.nan_to_num(ious, nan=-2.0)  # a NaN box (broken weights) is never the best
    best = ious.max()
    # within 20% of the best: 0.8 x best for a positive IoU (transformers' rule); a negative
    # generalised IoU (no overlap at all) needs 1.2 x best, else nothing would qualify
    selected = (ious >= best - 0.2 * best.abs()).nonzero().squeeze(1)
    if objectness is not None:
        return int(selected[objectness[0].float()[selected].argmax()])
    mean_sim = embeds[selected] @ embeds.mean(dim=0)
    return int(selected[mean_sim.argmin()])


def box_scale(preprocessor: Preprocessor, width: int, height: int) -> tuple[float, float]:
    """Multipliers from normalised model boxes to pixels of a (width x height) input: the
    inverse of the model's square rule (OWL-ViT stretches, OWLv2 pads to the longer side)."""
    if preprocessor.mode == "pad":
        side = float(max(width, height))
        return side, side
    if preprocessor.mode == "stretch":
        return float(width), float(height)
    raise ValueError(f"boxes are not defined for preprocessing mode {preprocessor.mode!r}")


Frame = tuple[int, int, int, int]  # (x0, y0, x1, y1) of an encoded region in input pixels


@dataclass(frozen=True)
class DetectJob:
    """One detect group on one encoded region: what decode scores and where its boxes go."""

    row: int  # the region's row in the encoder outputs
    region_id: int  # 0 = the whole image, else the parent detection's id
    frame: Frame
    queries: torch.Tensor  # [K, D] the group's query embeddings
    labels: tuple[int, ...]  # label index of each query
    thresholds: tuple[float, ...]  # score threshold of each query


class Candidates(NamedTuple):
    """Scored boxes before NMS, one per row; boxes in input-image pixels."""

    scores: torch.Tensor  # [N]
    labels: torch.Tensor  # [N] label index
    boxes: torch.Tensor  # [N, 4] (x0, y0, x1, y1)
    parents: torch.Tensor  # [N] region id

    @staticmethod
    def cat(parts: Sequence[Candidates]) -> Candidates:
        return Candidates(*(torch.cat(column) for column in zip(*parts, strict=True)))


@dataclass(frozen=True)
class OwlInfo:
    """What the predictor needs to know about a loaded OWL model."""

    model_id: str
    kind: str  # "owlvit" | "owlv2"
    image_size: int
    embed_dim: int
    random_weights: bool


class OwlModel(CachedTextEncoder):
    """A loaded OWL-ViT/OWLv2: cached text encoder, image encoder module, preprocess, decode."""

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
        loaded = load_transformers_model(
            "OWL detection",
            "OWL-ViT or OWLv2",
            model_id,
            {"owlvit": "OwlViTForObjectDetection", "owlv2": "Owlv2ForObjectDetection"},
            device=device,
            cache_dir=cache_dir,
        )
        config = loaded.model.config
        size = int(config.vision_config.image_size)
        mode = "pad" if loaded.model_type == "owlv2" else "stretch"
        info = OwlInfo(
            model_id=str(model_id),
            kind=loaded.model_type,
            image_size=size,
            embed_dim=int(config.text_config.hidden_size),
            random_weights=loaded.random_weights,
        )
        preprocessor = Preprocessor(size, mode, loaded.mean, loaded.std, 0.0)
        return cls(loaded.model, loaded.tokenizer, info, preprocessor)

    # ------------------------------------------------------------------ image side

    def free_image_encoder(self) -> None:
        """Drop the torch vision tower and heads once a runtime backend encodes the images (the
        text tower stays); what is left says the sizes and why no module is there."""
        from .weight_pages import drop_weight_pages

        model = self.model
        base = model.owlv2 if self.info.kind == "owlv2" else model.owlvit
        weights = [*self.encoder.parameters(), *base.visual_projection.parameters()]
        base.vision_model = base.visual_projection = None
        for name in ("layer_norm", "class_head", "box_head", "objectness_head"):
            if hasattr(model, name):
                setattr(model, name, None)
        self.encoder = FreedImageEncoder.of(self.encoder)
        drop_weight_pages(weights)

    def pixels(self, image: torch.Tensor, boxes: Sequence[Sequence[float]] | None, size: int = 0):
        """Model input [R, 3, S, S] and each row's frame: the whole image (boxes None) or crops;
        `size` (a multiple of the patch size) replaces the native S for adaptive regions."""
        preprocessor = self.preprocessor
        if size and size != preprocessor.size:
            preprocessor = replace(preprocessor, size=size)
        if boxes is None:
            width, height = image_size(image)
            return preprocessor(image)[None], [(0, 0, width, height)]
        return crop_regions(image, boxes, preprocessor)

    def to_pixels(self, boxes: torch.Tensor, frame: Frame) -> torch.Tensor:
        """Normalised boxes of one encoded region -> input pixels, clipped to that region."""
        x0, y0, x1, y1 = frame
        sx, sy = box_scale(self.preprocessor, x1 - x0, y1 - y0)
        scale = torch.tensor([sx, sy, sx, sy], device=boxes.device)
        offset = torch.tensor([x0, y0, x0, y0], device=boxes.device, dtype=torch.float32)
        limit = torch.tensor([x1, y1, x1, y1], device=boxes.device, dtype=boxes.dtype)
        return torch.minimum(torch.maximum(boxes * scale + offset, offset), limit)

    def decode(
        self, outputs: dict[str, torch.Tensor], jobs: Sequence[DetectJob], exclusive: bool
    ) -> Candidates:
        """Score every job's patches against its queries, keep those over their thresholds.

        A box whose clipped width or height is under MIN_BOX_SIDE px (OWLv2 patches in the
        square's padding, a child box outside its parent) is never a candidate: it takes no NMS
        slot, no detection budget and no nested region.

        `exclusive` keeps only each patch's best label of its group (NanoOWL's rule).
        """
        boxes = decode_boxes(outputs)
        parts = []
        for job in jobs:
            one = {k: v[job.row : job.row + 1] for k, v in outputs.items()}
            scores = torch.sigmoid(decode_logits(one, job.queries)[0])
            pixel_boxes = self.to_pixels(boxes[job.row], job.frame)
            keep = scores > torch.tensor(job.thresholds, device=scores.device)
            keep &= has_area(pixel_boxes)[:, None]  # clipped to nothing: not a detection
            if exclusive:
                best = torch.zeros_like(keep).scatter_(1, scores.argmax(dim=1, keepdim=True), True)
                keep &= best
            patch, k = keep.nonzero(as_tuple=True)
            labels = torch.tensor(job.labels, device=scores.device)
            parts.append(
                Candidates(
                    scores[patch, k],
                    labels[k],
                    pixel_boxes[patch],
                    torch.full_like(k, job.region_id),
                )
            )
        return Candidates.cat(parts)

    def reference_patch(
        self, outputs: dict[str, torch.Tensor], box: Sequence[float] | None, frame: Frame
    ) -> int:
        """The patch a reference query takes (box in pixels of the `frame` image, None = all)."""
        norm = None
        if box is not None:
            sx, sy = box_scale(self.preprocessor, frame[2] - frame[0], frame[3] - frame[1])
            x0, y0, x1, y1 = (float(v) for v in box)
            norm = torch.tensor([x0 / sx, y0 / sy, x1 / sx, y1 / sy])
        return select_query_patch(outputs, norm)

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
