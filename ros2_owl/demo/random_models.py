"""Random-weight OWL-ViT / OWLv2 / CLIP models built from configs, for tests, benchmarks, demos.

No weights can be downloaded on an offline machine, so these models are built from transformers
configs with fixed seeds and saved with ``save_pretrained``; they then load through exactly the
same ``from_pretrained`` path a user takes with a hub id. Every saved directory carries a
``RANDOM_WEIGHTS.md`` marker and a ``ros2_owl_random_init.json`` file whose ``random_weights``
key is ``true``, so loaders can warn loudly that detections are meaningless. The model loading
path never needs this module: it only reads the markers (ros2_owl.models.is_random_weights).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models import INFO_FILE, MARKER_FILE

_BUILDER_VERSION = 2
_VOCAB_SIZE = 49408
_MERGE_COUNT = 49152 - 256 - 2

OWL_MEAN_STD = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


@dataclass(frozen=True)
class RandomModelSpec:
    """Everything that determines a random model; its hash keys the on-disk cache."""

    kind: str  # "owlvit" | "owlv2" | "clip"
    name: str
    text: dict[str, Any] = field(default_factory=dict)
    vision: dict[str, Any] = field(default_factory=dict)
    projection_dim: int = 512
    seed: int = 0

    def key(self) -> str:
        """Stable hash of the spec (and builder version) used as the cache key."""
        blob = json.dumps(
            {
                "v": _BUILDER_VERSION,
                "kind": self.kind,
                "text": self.text,
                "vision": self.vision,
                "projection_dim": self.projection_dim,
                "seed": self.seed,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


_TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}
_TINY_VISION = {
    "hidden_size": 48,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 16,
}

# SAM: `vision` is the vision encoder's config, `text` the mask decoder's (SAM has no text).
_TINY_SAM_VISION = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 128,
    "patch_size": 16,
    "output_channels": 32,
    "window_size": 4,
    "global_attn_indexes": [1],
    "num_pos_feats": 16,
    "mlp_dim": 64,
}
_TINY_SAM_DECODER = {
    "hidden_size": 32,
    "mlp_dim": 64,
    "num_attention_heads": 2,
    "iou_head_hidden_dim": 32,
}

SPECS: dict[str, RandomModelSpec] = {
    "tiny-owlvit": RandomModelSpec(
        "owlvit", "tiny-owlvit", _TINY_TEXT, {**_TINY_VISION, "image_size": 96}, 32, seed=1
    ),
    "tiny-owlv2": RandomModelSpec(
        "owlv2", "tiny-owlv2", _TINY_TEXT, {**_TINY_VISION, "image_size": 96}, 32, seed=2
    ),
    "tiny-clip": RandomModelSpec(
        "clip", "tiny-clip", _TINY_TEXT, {**_TINY_VISION, "image_size": 64}, 32, seed=3
    ),
    # Architecture-identical to the published checkpoints (config defaults are the B sizes).
    "owlvit-base-patch32": RandomModelSpec(
        "owlvit", "owlvit-base-patch32", {}, {"image_size": 768, "patch_size": 32}, 512, seed=11
    ),
    "owlv2-base-patch16": RandomModelSpec(
        "owlv2", "owlv2-base-patch16", {}, {"image_size": 960, "patch_size": 16}, 512, seed=12
    ),
    "clip-vit-base-patch32": RandomModelSpec(
        "clip", "clip-vit-base-patch32", {}, {"image_size": 224, "patch_size": 32}, 512, seed=13
    ),
    "tiny-sam": RandomModelSpec("sam", "tiny-sam", _TINY_SAM_DECODER, _TINY_SAM_VISION, seed=4),
    # SamConfig's defaults are SAM ViT-B (facebook/sam-vit-base): 768 wide, 12 layers, 1024 px
    "sam-vit-base": RandomModelSpec("sam", "sam-vit-base", {}, {}, seed=14),
}

# Hub ids whose architecture the full-size random specs reproduce (used by the demo fallback).
HUB_EQUIVALENTS = {
    "google/owlvit-base-patch32": "owlvit-base-patch32",
    "google/owlv2-base-patch16": "owlv2-base-patch16",
    "google/owlv2-base-patch16-ensemble": "owlv2-base-patch16",
    "openai/clip-vit-base-patch32": "clip-vit-base-patch32",
    "facebook/sam-vit-base": "sam-vit-base",
}


def default_cache_dir() -> Path:
    """Where random models live unless told otherwise (ROS2_OWL_CACHE or ~/.cache/ros2_owl)."""
    root = os.environ.get("ROS2_OWL_CACHE") or Path.home() / ".cache" / "ros2_owl"
    return Path(root) / "random-models"


# --------------------------------------------------------------------------- tokenizer


def clip_bpe_path() -> Path:
    """Path of openai-clip's BPE merges file, found without importing `clip` (needs torchvision)."""
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the CLIP BPE vocabulary is missing: install the PyPI package 'openai-clip' "
            "(it ships clip/bpe_simple_vocab_16e6.txt.gz)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "bpe_simple_vocab_16e6.txt.gz"
        if path.is_file():
            return path
    raise FileNotFoundError("openai-clip is installed but bpe_simple_vocab_16e6.txt.gz is missing")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable unicode table, in the canonical order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's 49408-id vocab and its BPE merges, rebuilt from openai-clip's merges file."""
    with gzip.open(clip_bpe_path(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1 : _MERGE_COUNT + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    if len(tokens) != _VOCAB_SIZE:
        raise RuntimeError(f"rebuilt CLIP vocab has {len(tokens)} entries, expected {_VOCAB_SIZE}")
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_vocab(directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write vocab.json + merges.txt ("#version: 0.2" header) for tools that want files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges()
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    text = "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n"
    merges_path.write_text(text, encoding="utf-8")
    return vocab_path, merges_path


def build_clip_tokenizer(kind: str = "clip"):
    """The real CLIP BPE tokenizer, offline; OWL variants pad with "!" to 16 tokens like the hub."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    if kind == "clip":
        return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token="!", model_max_length=16)


# --------------------------------------------------------------------------- models


def _build(spec: RandomModelSpec):
    """Instantiate (model, processor) with fixed-seed random weights."""
    import torch
    import transformers as tf

    if spec.kind == "sam":
        return _build_sam(spec)
    tokenizer = build_clip_tokenizer("clip" if spec.kind == "clip" else "owl")
    size = spec.vision.get("image_size", 224)
    mean, std = OWL_MEAN_STD
    torch.manual_seed(spec.seed)
    if spec.kind == "owlvit":
        config = tf.OwlViTConfig(
            text_config=spec.text, vision_config=spec.vision, projection_dim=spec.projection_dim
        )
        model = tf.OwlViTForObjectDetection(config)
        image_processor = tf.OwlViTImageProcessorPil(
            size={"height": size, "width": size},
            crop_size={"height": size, "width": size},
            image_mean=list(mean),
            image_std=list(std),
        )
        processor = tf.OwlViTProcessor(image_processor=image_processor, tokenizer=tokenizer)
    elif spec.kind == "owlv2":
        config = tf.Owlv2Config(
            text_config=spec.text, vision_config=spec.vision, projection_dim=spec.projection_dim
        )
        model = tf.Owlv2ForObjectDetection(config)
        image_processor = tf.Owlv2ImageProcessorPil(
            size={"height": size, "width": size}, image_mean=list(mean), image_std=list(std)
        )
        processor = tf.Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)
    elif spec.kind == "clip":
        config = tf.CLIPConfig(
            text_config={**spec.text, "projection_dim": spec.projection_dim},
            vision_config={**spec.vision, "projection_dim": spec.projection_dim},
            projection_dim=spec.projection_dim,
        )
        model = tf.CLIPModel(config)
        image_processor = tf.CLIPImageProcessorPil(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        )
        processor = tf.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    else:
        raise ValueError(f"unknown random model kind {spec.kind!r} (owlvit, owlv2, clip, sam)")
    _reinit(model, std=0.02)
    model.eval()
    return model, processor


def _build_sam(spec: RandomModelSpec):
    """SAM (model, processor): the prompt encoder and decoder sized from the vision encoder."""
    import torch
    import transformers as tf

    vision = tf.SamVisionConfig(**spec.vision)
    prompt = tf.SamPromptEncoderConfig(
        hidden_size=vision.output_channels,
        image_size=vision.image_size,
        patch_size=vision.patch_size,
    )
    decoder = tf.SamMaskDecoderConfig(**{"hidden_size": vision.output_channels, **spec.text})
    torch.manual_seed(spec.seed)
    model = tf.SamModel(
        tf.SamConfig(
            vision_config=vision.to_dict(),
            prompt_encoder_config=prompt.to_dict(),
            mask_decoder_config=decoder.to_dict(),
        )
    )
    _reinit(model, std=0.02)
    side, low = vision.image_size, 4 * vision.image_size // vision.patch_size
    image_processor = tf.SamImageProcessorPil(
        size={"longest_edge": side},
        pad_size={"height": side, "width": side},
        mask_size={"longest_edge": low},
        mask_pad_size={"height": low, "width": low},
    )
    return model.eval(), tf.SamProcessor(image_processor=image_processor)


def _reinit(model, std: float) -> None:
    """Re-draw weights like a freshly initialised ViT (N(0, std), zero bias, unit LayerNorm).

    transformers leaves some OWL heads at torch's default init, which saturates logits and
    boxes (every sigmoid is exactly 0 or 1, every score ties); small weights keep outputs
    varied so tests can compare values meaningfully.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Embedding | nn.Conv2d):
                module.weight.normal_(0.0, std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        for name, param in model.named_parameters():
            if name.endswith("class_embedding"):
                param.normal_(0.0, std)


def _marker_text(spec: RandomModelSpec) -> str:
    return (
        f"# RANDOM WEIGHTS — {spec.name}\n\n"
        "This model was built by ros2_owl.demo.random_models from a transformers config with a\n"
        f"fixed seed ({spec.seed}). Its weights are random: detections and classifications are\n"
        "meaningless. It exists for tests, benchmarks and offline demos only. Use a hub id such as\n"
        "google/owlvit-base-patch32 or a local directory with trained weights for real results.\n"
    )


def save_random_model(spec: RandomModelSpec, directory: str | os.PathLike) -> Path:
    """Build `spec` and save model + processor + random-weight markers into `directory`."""
    from ..models import quiet_progress

    directory = Path(directory)
    model, processor = _build(spec)
    directory.mkdir(parents=True, exist_ok=True)
    with quiet_progress():
        model.save_pretrained(directory)
        processor.save_pretrained(directory)
    (directory / MARKER_FILE).write_text(_marker_text(spec))
    info = {"random_weights": True, "name": spec.name, "kind": spec.kind, "seed": spec.seed}
    info["spec_hash"] = spec.key()
    (directory / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return directory


def ensure_random_model(
    spec: RandomModelSpec | str, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Return the cached directory of `spec`, building it once (atomic rename, safe to race)."""
    if isinstance(spec, str):
        if spec not in SPECS:
            raise ValueError(f"unknown random model {spec!r}; known: {', '.join(SPECS)}")
        spec = SPECS[spec]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"{spec.name}-{spec.key()}"
    if (target / INFO_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=root))
    try:
        save_random_model(spec, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / INFO_FILE).is_file():  # lost a race against a broken dir
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_clip_tokenizer_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """A saved CLIP tokenizer directory (reloadable with CLIPTokenizer.from_pretrained)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"clip-tokenizer-v{_BUILDER_VERSION}"
    if (target / "tokenizer_config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".clip-tokenizer-", dir=root))
    try:
        build_clip_tokenizer("clip").save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "tokenizer_config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
