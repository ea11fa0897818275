"""Annotated images of tree results: boxes, labels, scores and nesting, with Pillow only."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["draw_result", "label_colour"]


def label_colour(label_index: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per label index (golden-ratio hue steps)."""
    hue = (label_index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _text_colour(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones, for readable labels."""
    return (0, 0, 0) if 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2] > 140 else (255, 255, 255)


def _caption(det) -> str:
    track = f"#{det.track_id} " if det.track_id else ""  # tracking on: the track id first
    parts = [f"{track}{det.label} {det.score:.2f}"]
    for cls in det.track_classifications or det.classifications:  # smoothed when present
        if cls.scores:
            best = cls.best
            parts.append(f"{best.label} {best.score:.2f}")
    return " | ".join(parts)


def _depths(detections: Sequence) -> dict[int, int]:
    """Nesting depth of every detection (0 = found on the whole image)."""
    parent = {d.id: d.parent_id for d in detections}
    depth: dict[int, int] = {}
    for det in detections:
        d, node, seen = 0, det.parent_id, set()
        while node in parent and node not in seen:  # guard against malformed cycles
            seen.add(node)
            node = parent[node]
            d += 1
        depth[det.id] = d
    return depth


def _label_box(draw: ImageDraw.ImageDraw, size, xy: tuple[float, float], text: str, font, colour):
    """Draw `text` on a filled box whose bottom-left corner is `xy`, kept inside the image."""
    width, height = size
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left + 4, bottom - top + 4
    x = min(max(0.0, xy[0]), max(0.0, width - tw))
    y = xy[1] - th if xy[1] - th >= 0 else xy[1]  # above the box, or inside it at the top
    y = min(max(0.0, y), max(0.0, height - th))
    draw.rectangle((x, y, x + tw, y + th), fill=colour)
    draw.text((x + 2 - left, y + 2 - top), text, fill=_text_colour(colour), font=font)


MASK_ALPHA = 0.45  # how strongly a mask tints its pixels with the label's colour


def _tint_masks(image: np.ndarray, detections: Sequence) -> np.ndarray:
    """A copy of the image with every instance mask tinted in its label's colour (lowest score
    first, so where masks overlap the best detection shows)."""
    out = np.ascontiguousarray(image).copy()
    for det in sorted((d for d in detections if d.mask is not None), key=lambda d: d.score):
        mask = np.asarray(det.mask.mask, dtype=bool)
        if mask.shape != out.shape[:2]:
            continue  # a mask of another frame size never lands on this image
        colour = np.array(label_colour(det.label_index), dtype=np.float32)
        pixels = out[mask].astype(np.float32)
        out[mask] = np.round(pixels * (1 - MASK_ALPHA) + colour * MASK_ALPHA).astype(np.uint8)
    return out


def draw_result(image: np.ndarray, result, *, line_width: int | None = None) -> np.ndarray:
    """Return a copy of the HxWx3 uint8 RGB `image` with the result drawn on it.

    Instance masks tint their pixels first; outer boxes are drawn next and thicker; nested
    boxes on top, thinner. Each caption shows
    the label, its score and the best label of every classify group run on the region; the
    whole-image classifications are listed in the top-left corner.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    canvas = Image.fromarray(_tint_masks(image, result.detections), mode="RGB")
    draw = ImageDraw.Draw(canvas)
    h, w = image.shape[:2]
    base = line_width or max(2, round(min(h, w) / 200))
    font = _font(max(10, min(24, round(min(h, w) / 40))))
    depth = _depths(result.detections)
    ordered = sorted(result.detections, key=lambda d: (depth[d.id], d.id))
    for det in ordered:
        x0, y0, x1, y1 = (float(v) for v in det.box)
        x0, x1 = sorted((min(max(x0, 0.0), w - 1.0), min(max(x1, 0.0), w - 1.0)))
        y0, y1 = sorted((min(max(y0, 0.0), h - 1.0), min(max(y1, 0.0), h - 1.0)))
        colour = label_colour(det.label_index)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=max(1, base - depth[det.id]))
    for det in ordered:  # captions after all boxes so no box line crosses a caption
        x0, y0 = max(float(det.box[0]), 0.0), max(float(det.box[1]), 0.0)
        _label_box(draw, canvas.size, (x0, y0), _caption(det), font, label_colour(det.label_index))
    y = 0.0
    for cls in result.image_classifications:
        if not cls.scores:
            continue
        best = cls.best
        text = f"image: {best.label} {best.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        _label_box(
            draw,
            canvas.size,
            (0.0, y + bottom - top + 4),
            text,
            font,
            label_colour(best.label_index),
        )
        y += bottom - top + 6
    return np.asarray(canvas)
