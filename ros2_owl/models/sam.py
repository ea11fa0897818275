"""SAM box-prompted instance masks: one image embedding per frame, every box in one decoder call.

Mirrors transformers 5.24's ``SamProcessor`` + ``SamModel`` for box prompts:

* image: longest side to the model's size (new side = int(side * scale + 0.5)), bilinear with
  antialiasing on uint8 (the PIL rule), rescale to [0, 1], normalise, pad bottom/right with 0;
* boxes: (x0, y0, x1, y1) in image pixels scaled per axis by (new / old), as the processor's
  ``_normalize_coordinates`` does;
* masks: ``multimask_output=False`` (one mask per box), low-resolution logits upscaled to the
  padded square (bilinear), cropped to the resized image, upscaled to the image and thresholded
  at ``mask_threshold`` (``post_process_masks``).

The image encoder is an ``nn.Module`` of its own (``SamImageEncoder``), run through the same
backend factory as OWL's (torch, or ONNX Runtime: exported, checked against torch and cached
the same way); the prompt encoder and mask decoder stay in torch (small per box).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.results import InstanceMask
from . import ModelLoadError, load_pretrained

SAM_CLASSES = {"sam": "SamModel"}
MASK_THRESHOLD = 0.0  # logits above this are inside (post_process_masks' default)


class SamImageEncoder(nn.Module):
    """SAM's vision encoder: normalised pixels [B, 3, S, S] -> image embeddings [B, C, S/16, S/16]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision_encoder = model.vision_encoder
        self.image_size = int(model.config.vision_config.image_size)
        self.output_names: tuple[str, ...] = ("image_embeddings",)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.vision_encoder(pixel_values)[0],)


def resized_shape(height: int, width: int, longest: int) -> tuple[int, int]:
    """(h, w) after scaling the longest side to `longest` (the processor's rounding)."""
    scale = longest / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def mask_box(mask: torch.Tensor) -> tuple[float, float, float, float] | None:
    """Tight pixel box (x0, y0, x1, y1) around a bool [H, W] mask, x1/y1 exclusive."""
    rows, cols = mask.any(dim=1), mask.any(dim=0)
    if not bool(rows.any()):
        return None
    y = torch.nonzero(rows).squeeze(1)
    x = torch.nonzero(cols).squeeze(1)
    return float(x[0]), float(y[0]), float(x[-1] + 1), float(y[-1] + 1)


class SamSegmenter:
    """A loaded SAM checkpoint: image rule, image encoder, and box-prompted mask decoding."""

    def __init__(self, model: nn.Module, mean, std, encoder=None, device: str = "cpu") -> None:
        from ..backends import TorchImageEncoder

        self.model = model
        self.device = torch.device(device)
        self.image_encoder = SamImageEncoder(model)
        self.encoder = encoder or TorchImageEncoder(self.image_encoder, device)  # a backend
        self.size = self.image_encoder.image_size
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    @classmethod
    def load(
        cls,
        model_id: str,
        device: str = "cpu",
        cache_dir: str | None = None,
        backend: str = "torch",
        artefact_dir: str | None = None,
    ):
        """Load a SAM checkpoint (hub id or directory) with its image encoder on `backend`
        (torch, onnxruntime); ModelLoadError naming what was tried."""
        import transformers as tf

        from ..backends import make_image_encoder

        def load(source: str):
            config = tf.AutoConfig.from_pretrained(source, cache_dir=cache_dir)
            if getattr(config, "model_type", "?") not in SAM_CLASSES:
                raise ModelLoadError(
                    f"{source!r} is a {getattr(config, 'model_type', '?')!r} model, not SAM "
                    "(expected model_type 'sam' in config.json)"
                )
            model = tf.SamModel.from_pretrained(source, cache_dir=cache_dir)
            images = tf.AutoImageProcessor.from_pretrained(source, cache_dir=cache_dir)
            return model, images

        model, images = load_pretrained("SAM segmentation", model_id, load)
        model = model.to(device).eval()
        encoder = make_image_encoder(
            backend,
            SamImageEncoder(model),
            model_id=str(model_id),
            device=device,
            dtype="float32",
            cache_dir=artefact_dir,
            max_batch=1,
        )
        return cls(model, images.image_mean, images.image_std, encoder, device)

    def pixels(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """[3, H, W] uint8 image -> (normalised padded pixels [1, 3, S, S], resized (h, w))."""
        height, width = int(image.shape[-2]), int(image.shape[-1])
        h, w = resized_shape(height, width, self.size)
        x = image[None].cpu()
        if x.dtype == torch.uint8:
            x = F.interpolate(x, (h, w), mode="bilinear", antialias=True, align_corners=False)
            x = x.float() / 255.0
        else:
            x = F.interpolate(x.float(), (h, w), mode="bilinear", antialias=True)
        x = (x - self.mean) / self.std
        x = F.pad(x, (0, self.size - w, 0, self.size - h), value=0.0)
        return x.to(self.device), (h, w)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image embeddings of one frame (computed once, shared by all its boxes)."""
        return self.encoder(pixels)["image_embeddings"].to(self.device)

    def mask_logits(
        self,
        embeddings: torch.Tensor,
        boxes: torch.Tensor,
        image_hw: tuple[int, int],
        resized_hw: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All boxes [N, 4] (image px) in one decoder call -> (logits [N, H, W], iou [N])."""
        (height, width), (h, w) = image_hw, resized_hw
        scale = torch.tensor([w / width, h / height, w / width, h / height])
        prompt = (boxes.float().cpu() * scale)[None].to(self.device)  # [1, N, 4]
        with torch.inference_mode():
            out = self.model(
                image_embeddings=embeddings, input_boxes=prompt, multimask_output=False
            )
        low = out.pred_masks[0, :, 0].float()  # [N, s, s]
        up = F.interpolate(low[:, None], (self.size, self.size), mode="bilinear")
        up = F.interpolate(up[:, :, :h, :w], (height, width), mode="bilinear")
        return up[:, 0], out.iou_scores[0, :, 0].float()

    def segment(self, image: torch.Tensor, boxes: torch.Tensor) -> list[InstanceMask]:
        """One mask per box of a [3, H, W] image, in box order (empty list for no boxes)."""
        if boxes.numel() == 0:
            return []
        pixels, resized = self.pixels(image)
        image_hw = (int(image.shape[-2]), int(image.shape[-1]))
        logits, iou = self.mask_logits(self.embed(pixels), boxes, image_hw, resized)
        masks = (logits > MASK_THRESHOLD).cpu()
        return [
            InstanceMask(m, float(s), mask_box(m)) for m, s in zip(masks, iou.tolist(), strict=True)
        ]
