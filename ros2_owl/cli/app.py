"""`ros2-owl` command: detect on image files and recordings, an offline-safe demo, engines.

ros2-owl detect samples/astronaut.jpg --prompt "[a person [a face]]" --json
ros2-owl bag recording/ --topic /camera/image_raw --prompt "[a person]" --out results/
ros2-owl video clip.mp4 --prompt "[a person]" --out annotated.mp4 --jsonl results.jsonl
ros2-owl demo                        # real weights when available, else random (says so)
ros2-owl build-engine --backend onnxruntime
ros2-owl serve --video clip.mp4      # the live page on http://127.0.0.1:7860/

User errors (bad options, unreadable files, missing runtimes, bad prompts) print one `error:`
line and exit 1 (2 for usage errors); a traceback only with --debug or ROS2_OWL_DEBUG=1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .options import DEMO_PROMPT, add_model_args, settings_of

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
DEBUG_ENV = "ROS2_OWL_DEBUG"
# `detect` with backend auto and no cached decision measures only for this many images or more:
# the first B/32 start took 746 s against 19.5 s with the cache ready (export, int8, measuring),
# and ONNX Runtime saves at most ~0.5 s per image against torch on the CPUs measured (README
# Performance): ~726 s / 0.5 s = ~1500 images before the export pays for itself.
AMORTISE_IMAGES = 1500


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: detect, demo, serve and build-engine subcommands."""
    parser = argparse.ArgumentParser(prog="ros2-owl", description=__doc__.splitlines()[0])
    parser.add_argument(  # main() takes it out of argv, so it works anywhere on the line
        "--debug", action="store_true", help=f"show tracebacks of errors (also: {DEBUG_ENV}=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    detect = sub.add_parser("detect", help="run a tree prompt on image files")
    detect.add_argument("images", nargs="+", help="image files (any format Pillow reads)")
    add_model_args(detect)
    detect.set_defaults(func=cmd_detect)
    demo = sub.add_parser("demo", help="detect on samples, with a random model when offline")
    demo.add_argument("images", nargs="*", help="images (default: the bundled samples)")
    add_model_args(demo)
    demo.add_argument(
        "--full-size",
        action="store_true",
        help="random fallback at the real architecture size (slow)",
    )
    demo.set_defaults(func=cmd_demo, prompt=None)
    from .serve import add_serve_arguments, cmd_serve  # imports no web library until it runs

    serve = sub.add_parser("serve", help="the live page: stream, boxes, tree, prompt box")
    add_model_args(serve, outputs=False)
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    from .build_engine import add_arguments, run

    engine = sub.add_parser("build-engine", help="export ONNX / build TensorRT engines")
    add_arguments(engine)
    engine.set_defaults(func=run)
    from .recordings import add_subcommands  # bag and video, with detect's options

    add_subcommands(sub)
    return parser


def read_image(path: str) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB, upright as viewers show it (EXIF orientation applied).

    The size is checked from the header before any pixel is decoded (preprocess' one limit);
    ValueError with the path when the file is unreadable or too large.
    """
    from PIL import ImageOps, UnidentifiedImageError

    from ..core.preprocess import ImageError, open_encoded_image

    try:
        with open_encoded_image(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except ImageError as error:
        raise ValueError(f"cannot use image {path!r}: {error}") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"cannot read image {path!r}: {error}") from None


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
            track = f" track {d.track_id}" if d.track_id else ""
            lines.append(f"{'  ' * depth}#{d.id}{track} {d.label} {d.score:.3f} [{box}]")
            for c in d.classifications:
                scores = ", ".join(f"{s.label} {s.score:.3f}" for s in c.scores)
                lines.append(f"{'  ' * (depth + 1)}-> {scores}")
            walk(d.id, depth + 1)

    walk(0, 1)
    return "\n".join(lines)


def load_for(settings, images: int, model: str | None = None, clip: str | None = None):
    """(predictor, notice) for `images` images: torch when backend auto has no cached decision
    and fewer than AMORTISE_IMAGES would not pay for the export; the notice says so ('' when
    not), printed once the prompt and outputs are known to be fine."""
    from ..runtime.session import load_predictor

    few = images < AMORTISE_IMAGES and settings.backend_upgrade == "background"
    predictor = load_predictor(settings, model, clip, "background" if few else "wait")
    if predictor.upgrade is None:
        return predictor, ""
    predictor.upgrade = None  # never started: this run ends before it would pay off
    return predictor, (
        f"backend auto: no measured choice cached for this CPU and {images} image(s) < "
        f"{AMORTISE_IMAGES}, so torch runs them (exporting would not pay off); "
        "`ros2-owl build-engine --backend auto` prepares it once"
    )


def _run(args, session, images: Sequence[str], notice: str = "") -> int:
    """The images, in order, through the FrameSession: they are one camera's frames (--track)."""
    from ..runtime.session import SessionFrame

    outputs = []
    if args.annotate:
        _writable_dir(args.annotate)  # before any inference, not after the first image
    if notice:
        print(notice, file=sys.stderr)
    for path in images:
        try:
            image = read_image(path)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        (done,) = session.process([SessionFrame("images", image)])
        if done.result is None:
            print(f"error: {done.error}", file=sys.stderr)
            return 1
        result = done.result
        if args.annotate:
            _annotate(args.annotate, path, image, result)
        if args.json:
            outputs.append({"image": str(path), **result.to_dict()})
        else:
            print(format_result(str(path), result))
    if args.json:
        print(json.dumps(outputs, indent=2))
    return 0


def _writable_dir(directory: str) -> None:
    """Create DIR (and parents) or raise a ValueError saying why it cannot be written."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"cannot write annotated images into {directory!r}: {error.strerror or error}"
        ) from None
    if not os.access(directory, os.W_OK):
        raise ValueError(f"cannot write annotated images into {directory!r}: not writable")


def _annotate(directory: str, path: str, image: np.ndarray, result) -> None:
    from PIL import Image

    from ..core.draw import draw_result

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
    from ..runtime.session import FrameSession

    settings = settings_of(args)
    predictor, notice = load_for(settings, len(args.images))
    session = FrameSession.from_settings(settings, args.prompt, predictor=predictor)
    return _run(args, session, args.images, notice)


# ---------------------------------------------------------------------- demo


def cmd_demo(args) -> int:
    """`demo`: real weights when available, else a loudly labelled random model; then detect."""
    from ..demo.fallback import demo_models, random_models
    from ..models import ModelLoadError
    from ..runtime.session import FrameSession

    args.prompt = args.prompt or DEMO_PROMPT
    images = list(args.images) or sorted(str(p) for p in SAMPLES.glob("*.jpg"))
    if not images:
        print("error: no images given and no bundled samples found", file=sys.stderr)
        return 2
    settings = settings_of(args)
    clip_model = settings.clip_model or None
    cache_dir = settings.cache_dir or None
    owl, clip, is_random = demo_models(
        settings.model, clip_model, full_size=args.full_size, cache_dir=cache_dir
    )
    try:
        predictor, notice = load_for(settings, len(images), owl, clip or "")
    except ModelLoadError as error:
        if is_random:
            raise
        reasons = [str(error)]
        owl, clip = random_models(settings.model, clip_model, args.full_size, cache_dir, reasons)
        predictor, notice = load_for(settings, len(images), owl, clip or "")
    else:
        if not is_random:
            print(f"using real weights: {', '.join(m for m in (owl, clip) if m)}")
    print(f"prompt: {args.prompt}")
    session = FrameSession.from_settings(settings, args.prompt, predictor=predictor)
    return _run(args, session, images, notice)


def error_text(error: BaseException, prompt: str | None = None) -> str:
    """What `ros2-owl` prints for an error: one line (a prompt error adds its caret window)."""
    from ..core.prompt import PromptError, caret_message

    if isinstance(error, PromptError) and prompt is not None:
        return f"error: {caret_message(prompt, error)}"
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if isinstance(error, OSError) and error.filename is not None and not text:
        text = f"{error.strerror}: {error.filename}"
    known = (ValueError, OSError, RuntimeError, ImportError)  # what user input can cause
    if not isinstance(error, known) or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
        text += f" (unexpected: rerun with --debug or {DEBUG_ENV}=1 and report the traceback)"
    return f"error: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ros2-owl` console script: user errors are one line, exit 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            raise
        print(error_text(error, getattr(args, "prompt", None)), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
