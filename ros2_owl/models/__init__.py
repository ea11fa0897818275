"""Model wrappers (OWL-ViT / OWLv2 detection, CLIP classification) and their shared loading."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("ros2_owl.models")
T = TypeVar("T")
MARKER_FILE = "RANDOM_WEIGHTS.md"  # written next to random weights (ros2_owl.demo.random_models)
INFO_FILE = "ros2_owl_random_init.json"


class ModelLoadError(RuntimeError):
    """A model or processor could not be loaded; the message names what was tried and why."""


class LabelTooLongError(ValueError):
    """A label has more tokens than the text encoder's fixed context (16 for OWL, 77 for CLIP)."""

    def __init__(self, label: str, tokens: int, limit: int, model: str):
        self.label, self.tokens, self.limit = label, tokens, limit
        super().__init__(
            f"label {label!r} is {tokens} tokens long but the {model} text encoder takes at most "
            f"{limit} (including start/end tokens); shorten it"
        )


def looks_like_path(model_id: str) -> bool:
    """True when `model_id` is meant as a local directory rather than a hub id (org/name)."""
    return (
        os.path.isabs(model_id)
        or model_id.startswith((".", "~"))
        or model_id.count("/") > 1
        or "\\" in model_id
        or os.path.exists(model_id)
    )


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Hide transformers' load/save progress bars (noise in node logs and CLI output)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE asks for no network (the values huggingface_hub accepts)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def is_random_weights(path: str | os.PathLike) -> bool:
    """True when a model directory carries the random-weight marker (its results are noise)."""
    info = Path(path) / INFO_FILE
    if not info.is_file():
        return False
    try:
        return bool(json.loads(info.read_text()).get("random_weights", False))
    except (OSError, ValueError):
        return True  # a damaged marker still means "not a trained model"


def _local_model_dir(what: str, model_id: str, required) -> str:
    """The expanded directory of a local model, or a ModelLoadError saying what is wrong."""
    path = Path(model_id).expanduser()
    if path.exists() and not path.is_dir():
        raise ModelLoadError(
            f"cannot load {what} model: {str(path)!r} is a file, not a model directory; give "
            "the directory that holds it: a model directory (written by save_pretrained) "
            "holds config.json, the weights (model.safetensors or pytorch_model.bin) and the "
            "processor files (preprocessor_config.json, tokenizer files)"
        )
    if not path.is_dir():
        raise ModelLoadError(
            f"cannot load {what} model: local directory {str(path)!r} does not exist "
            "(give a hub id like 'google/owlvit-base-patch32' or a directory written by "
            "save_pretrained)"
        )
    missing = [name for name in required if not (path / name).is_file()]
    if missing:
        present = sorted(p.name for p in path.iterdir())[:12]
        raise ModelLoadError(
            f"cannot load {what} model from {str(path)!r}: missing {', '.join(missing)} "
            f"(the directory holds: {', '.join(present) or 'nothing'})"
        )
    return str(path)


def load_pretrained(
    what: str, model_id: str, load: Callable[[str], T], *, required=("config.json",)
) -> T:
    """Run `load(path_or_id)` and turn any failure into a ModelLoadError naming what was tried."""
    if not isinstance(model_id, str | os.PathLike) or not str(model_id):
        raise ModelLoadError(f"{what} model must be a hub id or a directory, got {model_id!r}")
    model_id = str(model_id)
    if looks_like_path(model_id):
        model_id = _local_model_dir(what, model_id, required)
        where = f"local directory {model_id!r}"
    else:
        where = f"hub id {model_id!r}" + (
            " (offline mode: HF_HUB_OFFLINE=1)" if hub_offline() else ""
        )
    try:
        with quiet_progress():
            result = load(model_id)
    except ModelLoadError:
        raise
    except Exception as error:  # transformers raises OSError/ValueError/KeyError/... here
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = ""
        if not looks_like_path(model_id):
            hint = (
                "; the weights are neither in the local Hugging Face cache nor downloadable "
                "(no network or offline mode): download them once or pass a local directory"
                if "connect" in str(error).lower() or hub_offline()
                else "; check the hub id spelling"
            )
        raise ModelLoadError(
            f"cannot load {what} model from {where}: {type(error).__name__}: {text}{hint}"
        ) from error
    if looks_like_path(model_id) and is_random_weights(model_id):
        log.warning(
            "!!! %s model %s has RANDOM WEIGHTS (see %s): its detections/classifications are "
            "meaningless; use trained weights for real results !!!",
            what,
            model_id,
            MARKER_FILE,
        )
    return result


@dataclass(frozen=True)
class LoadedModel:
    """What a transformers checkpoint gives a wrapper: the model on its device and the rest."""

    model_type: str
    model: Any
    tokenizer: Any
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    random_weights: bool


def load_transformers_model(
    what: str,
    family: str,
    model_id: str,
    classes: Mapping[str, str],
    *,
    device: str,
    cache_dir: str | None,
) -> LoadedModel:
    """Load a checkpoint whose model_type is a key of `classes` (model_type -> transformers
    class name) with its processor, and move it to `device`; ModelLoadError otherwise."""
    import transformers as tf

    def load(source: str):
        config = tf.AutoConfig.from_pretrained(source, cache_dir=cache_dir)
        model_type = getattr(config, "model_type", "?")
        if model_type not in classes:
            raise ModelLoadError(
                f"{source!r} is a {model_type!r} model, not {family} "
                f"(expected model_type {' or '.join(repr(k) for k in classes)} in config.json)"
            )
        model = getattr(tf, classes[model_type]).from_pretrained(source, cache_dir=cache_dir)
        processor = tf.AutoProcessor.from_pretrained(source, cache_dir=cache_dir)
        return model_type, model, processor

    model_type, model, processor = load_pretrained(what, model_id, load)
    try:
        model = model.to(device).eval()
    except (RuntimeError, AssertionError) as error:
        raise ModelLoadError(f"cannot move {model_id!r} to device {device!r}: {error}") from error
    images = processor.image_processor
    return LoadedModel(
        model_type=model_type,
        model=model,
        tokenizer=processor.tokenizer,
        mean=tuple(float(v) for v in images.image_mean),
        std=tuple(float(v) for v in images.image_std),
        random_weights=is_random_weights(model_id),
    )


__all__ = [
    "LabelTooLongError",
    "LoadedModel",
    "ModelLoadError",
    "hub_offline",
    "is_random_weights",
    "load_pretrained",
    "load_transformers_model",
    "looks_like_path",
]
