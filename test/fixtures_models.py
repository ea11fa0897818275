"""Session-scoped tiny random models (OWL-ViT, OWLv2, CLIP) and the offline CLIP tokenizer.

Built once per cache dir (env ROS2_OWL_TEST_CACHE, default ~/.cache/ros2_owl/test-models, outside
the checkout so `git status` never sees it) from
transformers configs with fixed seeds, saved with save_pretrained and returned as directories
so tests load them through the real from_pretrained path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def _cache_dir() -> Path:
    if os.environ.get("ROS2_OWL_TEST_CACHE"):
        return Path(os.environ["ROS2_OWL_TEST_CACHE"])
    root = os.environ.get("ROS2_OWL_CACHE") or Path.home() / ".cache" / "ros2_owl"
    return Path(root) / "test-models"


@pytest.fixture(scope="session")
def model_cache_dir() -> Path:
    """Directory holding the cached random test models."""
    path = _cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_owlvit_dir(model_cache_dir: Path) -> Path:
    """Tiny random OWL-ViT (hidden 32/48, 2 layers, 96 px, patch 16) saved with save_pretrained."""
    from ros2_owl.demo.random_models import ensure_random_model

    return ensure_random_model("tiny-owlvit", model_cache_dir)


@pytest.fixture(scope="session")
def tiny_owlv2_dir(model_cache_dir: Path) -> Path:
    """Tiny random OWLv2 (hidden 32/48, 2 layers, 96 px, patch 16) saved with save_pretrained."""
    from ros2_owl.demo.random_models import ensure_random_model

    return ensure_random_model("tiny-owlv2", model_cache_dir)


@pytest.fixture(scope="session")
def tiny_clip_dir(model_cache_dir: Path) -> Path:
    """Tiny random CLIP (hidden 32/48, 2 layers, 64 px, patch 16) saved with save_pretrained."""
    from ros2_owl.demo.random_models import ensure_random_model

    return ensure_random_model("tiny-clip", model_cache_dir)


@pytest.fixture(scope="session")
def tiny_sam_dir(model_cache_dir: Path) -> Path:
    """Tiny random SAM (vision 32 wide, 2 layers, 128 px, patch 16) saved with save_pretrained."""
    from ros2_owl.demo.random_models import ensure_random_model

    return ensure_random_model("tiny-sam", model_cache_dir)


@pytest.fixture(scope="session")
def clip_tokenizer(model_cache_dir: Path):
    """The real CLIP BPE tokenizer rebuilt offline, reloaded through from_pretrained."""
    from transformers import CLIPTokenizer

    from ros2_owl.demo.random_models import ensure_clip_tokenizer_dir

    return CLIPTokenizer.from_pretrained(ensure_clip_tokenizer_dir(model_cache_dir))


def synthetic_scene(h: int = 120, w: int = 160) -> np.ndarray:
    """Coloured rectangles on a gradient: deterministic, with structure for the encoder."""
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = np.linspace(30, 200, w, dtype=np.uint8)[None, :, None]
    img[20:100, 20:70] = (200, 40, 40)
    img[40:90, 90:150] = (40, 200, 60)
    img[30:45, 30:45] = (250, 220, 180)
    return img


def noise_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Uniform random RGB noise: no structure, but every pixel differs between seeds."""
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
