"""`ros2-owl` command: detect on image files and recordings, an offline-safe demo, engines.

ros2-owl detect samples/astronaut.jpg --prompt "[a person [a face]]" --json
ros2-owl bag recording/ --topic /camera/image_raw --prompt "[a person]" --out results/
ros2-owl video clip.mp4 --prompt "[a person]" --out annotated.mp4 --jsonl results.jsonl
ros2-owl demo                        # real weights when available, else random (says so)
ros2-owl build-engine --backend onnxruntime
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "google/owlvit-base-patch32"
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEMO_PROMPT = "[a person [a face], a cat (sleeping, awake), a cup]"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
BANNER = "!" * 78


def _label_threshold(text: str) -> tuple[str, float]:
    label, sep, value = text.rpartition("=")
    try:
        if not sep or not label.strip():
            raise ValueError
        return label.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LABEL=VALUE, got {text!r}") from None


def _add_model_args(p: argparse.ArgumentParser, *, model_default: str | None) -> None:
    p.add_argument("--prompt", help="tree prompt, e.g. '[a person [a face] (standing, sitting)]'")
    p.add_argument("--model", default=model_default, help="OWL-ViT/OWLv2 hub id or directory")
    p.add_argument("--clip-model", default=DEFAULT_CLIP, help="CLIP hub id or directory")
    p.add_argument("--no-clip", action="store_true", help="no CLIP (prompts without classify)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--dtype", default="auto", help="float32, float16, bfloat16 or auto (float16 for tensorrt)"
    )
    p.add_argument("--backend", default="torch", help="torch, onnxruntime or tensorrt")
    p.add_argument("--cache-dir", default=None, help="model/engine cache directory")
    p.add_argument("--threshold", type=float, default=0.1, help="default detection threshold")
    p.add_argument(
        "--label-threshold",
        action="append",
        type=_label_threshold,
        default=[],
        metavar="LABEL=VALUE",
        help="threshold for one label (repeatable)",
    )
    p.add_argument("--scoring", choices=("independent", "exclusive"), default="independent")
    p.add_argument("--nms-iou", type=float, default=0.5, help="NMS IoU threshold")
    p.add_argument("--no-nms", action="store_true", help="turn NMS off")
    p.add_argument("--max-detections", type=int, default=100)
    p.add_argument("--max-regions", type=int, default=8, help="regions per nested level")
    p.add_argument("--queries", help="load reference queries ($name labels) from this file")


def _add_image_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--annotate", metavar="DIR", help="write annotated images into DIR")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: detect, demo and build-engine subcommands."""
    parser = argparse.ArgumentParser(prog="ros2-owl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    detect = sub.add_parser("detect", help="run a tree prompt on image files")
    detect.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    _add_model_args(detect, model_default=DEFAULT_MODEL)
    _add_image_output_args(detect)
    detect.set_defaults(func=cmd_detect)
    demo = sub.add_parser("demo", help="detect on samples, with a random model when offline")
    demo.add_argument("images", nargs="*", help="images (default: the bundled samples)")
    _add_model_args(demo, model_default=DEFAULT_MODEL)
    _add_image_output_args(demo)
    demo.add_argument(
        "--full-size",
        action="store_true",
        help="random fallback at the real architecture size (slow)",
    )
    demo.set_defaults(func=cmd_demo, prompt=None)
    # Engine building lives in backends/build_engine.py (engineer D's module); wired here.
    from .backends import build_engine

    engine = sub.add_parser("build-engine", help="export ONNX / build TensorRT engines")
    build_engine.add_arguments(engine)
    engine.set_defaults(func=build_engine.run)
    from . import cli_recordings  # bag and video subcommands

    cli_recordings.add_subcommands(sub)
    return parser


def read_image(path: str) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (ValueError with the path when unreadable)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"cannot read image {path!r}: {error}") from None


def _config(args):
    from .predictor import PredictorConfig

    return PredictorConfig(
        threshold=args.threshold,
        scoring=args.scoring,
        nms_iou=None if args.no_nms else args.nms_iou,
        max_detections=args.max_detections,
        max_regions=args.max_regions,
    )


def _load(args, model: str, clip: str | None):
    from .predictor import TreePredictor

    return TreePredictor.from_pretrained(
        model,
        None if args.no_clip else clip,
        device=args.device,
        dtype=args.dtype,
        backend=args.backend,
        config=_config(args),
        cache_dir=args.cache_dir,
    )


def format_result(name: str, result) -> str:
    """Human-readable tree of one result."""
    lines = [
        f"{name} ({result.image_size[0]}x{result.image_size[1]}): {len(result.detections)} "
        f"detections, {result.timings_ms.get('total', 0.0):.1f} ms"
        + (f", {result.dropped_regions} regions dropped" if result.dropped_regions else "")
    ]
    for c in result.image_classifications:
        lines.append("  image: " + ", ".join(f"{s.label} {s.score:.3f}" for s in c.scores))

    def walk(parent: int, depth: int) -> None:
        for d in result.children_of(parent):
            box = ", ".join(f"{v:.1f}" for v in d.box)
            lines.append(f"{'  ' * depth}#{d.id} {d.label} {d.score:.3f} [{box}]")
            for c in d.classifications:
                scores = ", ".join(f"{s.label} {s.score:.3f}" for s in c.scores)
                lines.append(f"{'  ' * (depth + 1)}-> {scores}")
            walk(d.id, depth + 1)

    walk(0, 1)
    return "\n".join(lines)


def _run(args, predictor, images: Sequence[str]) -> int:
    from .image_ops import ImageError

    if args.queries:
        predictor.load_queries(args.queries)
    state = predictor.prepare(args.prompt, label_thresholds=dict(args.label_threshold))
    outputs = []
    for path in images:
        try:
            image = read_image(path)
            result = predictor.predict(image, state)
        except (ValueError, ImageError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        if args.annotate:
            _annotate(args.annotate, path, image, result)
        if args.json:
            outputs.append({"image": str(path), **result.to_dict()})
        else:
            print(format_result(str(path), result))
    if args.json:
        print(json.dumps(outputs, indent=2))
    return 0


def _annotate(directory: str, path: str, image: np.ndarray, result) -> None:
    from PIL import Image

    from .draw import draw_result

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    target = out / (Path(path).stem + "_owl.png")
    Image.fromarray(draw_result(image, result)).save(target)
    print(f"wrote {target}", file=sys.stderr)


def cmd_detect(args) -> int:
    """`detect`: load the models and run the prompt on every image."""
    if not args.prompt:
        print("error: --prompt is required", file=sys.stderr)
        return 2
    return _run(args, _load(args, args.model, args.clip_model), args.images)


# ---------------------------------------------------------------------- demo


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def weights_available(model_id: str) -> tuple[bool, str]:
    """Whether real weights for `model_id` can be loaded here, and why not."""
    from .models import looks_like_path
    from .models.random_init import is_random_weights

    if looks_like_path(model_id):
        if not Path(model_id).expanduser().is_dir():
            return False, f"directory {model_id} does not exist"
        if is_random_weights(model_id):
            return False, f"{model_id} holds random weights"
        return True, ""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return True, ""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False, "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    if not _hub_reachable():
        return False, "not in the local Hugging Face cache and huggingface.co is unreachable"
    return True, ""


def _random_stand_in(model_id: str, kind: str, full_size: bool, cache_dir) -> str:
    from .models.random_init import HUB_EQUIVALENTS, ensure_random_model

    if full_size:
        name = HUB_EQUIVALENTS.get(model_id)
        name = name or ("clip-vit-base-patch32" if kind == "clip" else "owlvit-base-patch32")
    else:
        name = "tiny-clip" if kind == "clip" else "tiny-owlvit"
    root = Path(cache_dir) / "random-models" if cache_dir else None
    return str(ensure_random_model(name, root))


def _random_models(model, clip_model, full_size: bool, cache_dir, reasons: list[str]):
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
    else loudly announced random-weight stand-ins (used by `ros2-owl demo` and the ROS demo)."""
    reasons = []
    for model_id in (model, clip_model):
        if model_id is not None:
            ok, why = weights_available(model_id)
            if not ok:
                reasons.append(f"{model_id}: {why}")
    if not reasons:
        return model, clip_model, False
    return (*_random_models(model, clip_model, full_size, cache_dir, reasons), True)


def cmd_demo(args) -> int:
    """`demo`: real weights when available, else a loudly labelled random model; then detect."""
    from .models import ModelLoadError

    args.prompt = args.prompt or DEMO_PROMPT
    images = list(args.images) or sorted(str(p) for p in SAMPLES.glob("*.jpg"))
    if not images:
        print("error: no images given and no bundled samples found", file=sys.stderr)
        return 2
    clip_model = None if args.no_clip else args.clip_model
    owl, clip, is_random = demo_models(
        args.model, clip_model, full_size=args.full_size, cache_dir=args.cache_dir
    )
    try:
        predictor = _load(args, owl, clip)
    except ModelLoadError as error:
        if is_random:
            raise
        reasons = [str(error)]
        owl, clip = _random_models(args.model, clip_model, args.full_size, args.cache_dir, reasons)
        predictor = _load(args, owl, clip)
    else:
        if not is_random:
            print(f"using real weights: {', '.join(m for m in (owl, clip) if m)}")
    print(f"prompt: {args.prompt}")
    return _run(args, predictor, images)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ros2-owl` console script."""
    from .models import ModelLoadError
    from .prompt import PromptError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PromptError as error:
        print(f"error: {error}\n  {args.prompt}\n  {' ' * error.column}^", file=sys.stderr)
    except (ModelLoadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
