"""Pieces both benchmark scripts measure against, so their ratios share one baseline."""

from __future__ import annotations

import numpy as np
import torch


def camera_scene(height: int = 480, width: int = 640) -> np.ndarray:
    """Deterministic camera-sized image: gradient, noise and a few solid rectangles."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([(xx * 0.3) % 255, (yy * 0.4) % 255, ((xx + yy) * 0.2) % 255], axis=-1)
    img = img + rng.normal(0, 8, img.shape)
    img[100:400, 150:300] = (180, 60, 50)
    img[250:420, 380:600] = (40, 60, 170)
    return np.clip(img, 0, 255).astype(np.uint8)


def naive_hf_path(owl_id: str, labels: list[str], image: np.ndarray, device: str = "cpu"):
    """What a thin ROS wrapper around transformers runs per frame: text re-encoded, the full
    forward, transformers' post-processing. Returns a callable that runs one frame."""
    import transformers as tf

    processor = tf.AutoProcessor.from_pretrained(owl_id)
    model = tf.OwlViTForObjectDetection.from_pretrained(owl_id).eval().to(device)
    target = torch.tensor([image.shape[:2]])

    def run():
        inputs = processor(text=[labels], images=image, return_tensors="pt").to(device)
        with torch.inference_mode():
            outputs = model(**inputs)
        return processor.image_processor.post_process_object_detection(
            outputs, threshold=0.1, target_sizes=target
        )

    return run
