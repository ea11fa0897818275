"""The demo's weights policy: real weights when this machine has them, else loudly announced
random-weight stand-ins (used by `ros2-owl demo` and tools/demo_ros.py)."""

from __future__ import annotations

import socket
from pathlib import Path

from ..models import hub_offline, is_random_weights, looks_like_path

BANNER = "!" * 78


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def weights_available(model_id: str) -> tuple[bool, str]:
    """Whether real weights for `model_id` can be loaded here, and why not."""
    if looks_like_path(model_id):
        if not Path(model_id).expanduser().is_dir():
            return False, f"directory {model_id} does not exist"
        if is_random_weights(model_id):
            return False, f"{model_id} holds random weights"
        return True, ""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return True, ""
    if hub_offline():
        return False, "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    if not _hub_reachable():
        return False, "not in the local Hugging Face cache and huggingface.co is unreachable"
    return True, ""


def _random_stand_in(model_id: str, kind: str, full_size: bool, cache_dir) -> str:
    from .random_models import HUB_EQUIVALENTS, ensure_random_model

    if full_size:
        name = HUB_EQUIVALENTS.get(model_id)
        name = name or ("clip-vit-base-patch32" if kind == "clip" else "owlvit-base-patch32")
    else:
        name = "tiny-clip" if kind == "clip" else "tiny-owlvit"
    root = Path(cache_dir) / "random-models" if cache_dir else None
    return str(ensure_random_model(name, root))


def random_models(model, clip_model, full_size: bool, cache_dir, reasons: list[str]):
    """Random stand-ins for (model, clip_model), announced so nobody mistakes them for real."""
    owl = _random_stand_in(model, "owl", full_size, cache_dir)
    clip = (
        None if clip_model is None else _random_stand_in(clip_model, "clip", full_size, cache_dir)
    )
    size = "full-size" if full_size else "tiny"
    print(BANNER)
    print("!!! RANDOM WEIGHTS: real weights are not available here:")
    for reason in reasons:
        print(f"!!!   {reason}")
    print(f"!!! Running a {size} random-weight model built from the architecture config")
    print(f"!!! ({owl}). Every stage runs, but the detections are MEANINGLESS.")
    print(BANNER)
    return owl, clip


def demo_models(
    model: str, clip_model: str | None, *, full_size: bool = False, cache_dir=None
) -> tuple[str, str | None, bool]:
    """(model, clip_model, is_random): the real ids where their weights are available here,
    else loudly announced random-weight stand-ins."""
    reasons = []
    for model_id in (model, clip_model):
        if model_id is not None:
            ok, why = weights_available(model_id)
            if not ok:
                reasons.append(f"{model_id}: {why}")
    if not reasons:
        return model, clip_model, False
    return (*random_models(model, clip_model, full_size, cache_dir, reasons), True)
