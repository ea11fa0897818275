"""`build_engine`: export ONNX graphs / build TensorRT engines ahead of time, into the cache.

    ros2-owl build-engine --model google/owlvit-base-patch32 --backend tensorrt --device cuda
    ros2 run ros2_owl build_engine --backend onnxruntime
    python -m ros2_owl.cli.build_engine --list

Artefacts land in the cache (``$ROS2_OWL_CACHE`` or ``~/.cache/ros2_owl``, see backends/cache.py), where
the predictor finds them when it starts with the same model, backend, precision and
max_regions. A long TensorRT build shows its phases; errors print one clear line, no traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from ros2_owl.backends import resolve_dtype
from ros2_owl.backends.cache import ArtefactCache, CacheError, default_cache_dir
from ros2_owl.backends.triton_repo import WIRE_DTYPES
from ros2_owl.core.settings import DEFAULT_CLIP, DEFAULT_MODEL


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of the build_engine command (shared by the ros2-owl CLI and the ROS executable)."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help="OWL-ViT/OWLv2 hub id or directory")
    parser.add_argument(
        "--clip-model", default=DEFAULT_CLIP, help="CLIP hub id or directory for classify nodes"
    )
    parser.add_argument(
        "--no-clip", action="store_true", help="skip the CLIP encoder (prompts without classify)"
    )
    parser.add_argument(
        "--backend",
        choices=("onnxruntime", "tensorrt", "auto"),
        default="onnxruntime",
        help="auto: measure the candidates now and cache the decision (as a first start would)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "allow-reduced"),
        default="fp32",
        help="allow-reduced lets --backend auto consider bfloat16/int8 on CPU",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda for tensorrt)")
    parser.add_argument(
        "--dtype", default="auto", help="float32, float16 or auto (float16 for tensorrt)"
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=8,
        help="largest region batch (the predictor's max_regions); the profile covers 1..N",
    )
    parser.add_argument("--cache-dir", default=None, help=f"default {default_cache_dir()}")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument(
        "--on-invalid",
        choices=("rebuild", "error"),
        default="rebuild",
        help="a stale/corrupt cached artefact is rebuilt (default) or reported as an error",
    )
    _add_triton_repo_arguments(parser)
    parser.add_argument("--list", action="store_true", help="list cached artefacts and exit")
    parser.add_argument(
        "--clear", action="store_true", help="delete every cached artefact (and manifest) and exit"
    )
    return parser


def _add_triton_repo_arguments(parser: argparse.ArgumentParser) -> None:
    """--triton-*: the model repository for a shared Triton server (backends/triton_repo.py)."""
    parser.add_argument(
        "--triton-repo",
        metavar="DIR",
        default=None,
        help="also write a Triton model repository (DIR/<name>/config.pbtxt + 1/model.onnx) "
        "from the verified ONNX exports, for a shared inference server",
    )
    parser.add_argument(
        "--triton-wire-dtype",
        choices=WIRE_DTYPES,
        default="auto",
        help="pixel dtype robots send (auto: uint8 for OWL-ViT, float16 for OWLv2 and CLIP)",
    )
    parser.add_argument(
        "--triton-preferred-batch",
        type=int,
        nargs="*",
        default=None,
        help="dynamic batcher's preferred batch sizes (default: none, it batches what is queued)",
    )
    parser.add_argument(
        "--triton-max-queue-delay-us",
        type=int,
        default=2000,
        help="how long the dynamic batcher waits to fill a batch (microseconds)",
    )
    parser.add_argument(
        "--triton-instance-kind",
        choices=("gpu", "cpu"),
        default="gpu",
        help="where the server runs each model instance",
    )


class LineProgress:
    """Progress display: a tqdm bar over the encoders (its current step beside it, milestones
    above it) when the stream is a terminal, timestamped lines otherwise."""

    def __init__(self, stream=None, use_bar: bool | None = None, total: int = 1) -> None:
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self._bar = None
        if use_bar is None:
            use_bar = self.stream.isatty()
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="encoder", file=self.stream, desc="build-engine")

    def __call__(self, message: str) -> None:
        stamp = f"[{time.monotonic() - self.start:7.1f}s]"
        if self._bar is None:
            print(f"{stamp} {message}", file=self.stream, flush=True)
            return
        self._bar.set_postfix_str(message[:60], refresh=True)
        if not message.startswith("TensorRT:"):  # its phases only move the step text
            self._bar.write(f"{stamp} {message}", file=self.stream)
        if message.startswith("ready:"):
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def list_cache(cache: ArtefactCache, out=None) -> int:
    """Print one line per cached artefact (key, size, path); returns how many."""
    from ros2_owl.backends.cache import ArtefactKey

    out = out or sys.stdout
    entries = list(cache.entries())
    if not entries:
        print(f"no artefacts in {cache.root}", file=out)
    for entry in entries:
        try:
            key = ArtefactKey.from_dict(entry.manifest["key"])
            desc = key.describe()
        except (KeyError, TypeError):
            key, desc = None, "(unreadable manifest)"
        if key is not None and key.backend == "auto":
            info = entry.manifest.get("info", {})
            desc += f" -> chose {info.get('backend')} {info.get('dtype')}: {info.get('reason')}"
        size = entry.path.stat().st_size / 1e6 if entry.path.exists() else float("nan")
        print(f"{desc}  {size:.1f} MB  {entry.path}", file=out)
    return len(entries)


def _encoders(args, say: Callable[[str], None]):
    """(Triton model name, model id, encoder module, preprocessor) for OWL and, unless
    --no-clip, CLIP (the preprocessor's normalisation goes into a served model)."""
    from ros2_owl.backends.triton_repo import CLIP_MODEL_NAME, OWL_MODEL_NAME
    from ros2_owl.models.clip import ClipModel
    from ros2_owl.models.owl import OwlModel

    say(f"loading {args.model}")
    owl = OwlModel.load(args.model, device=args.device)
    yield OWL_MODEL_NAME, args.model, owl.encoder, owl.preprocessor
    if not args.no_clip:
        say(f"loading {args.clip_model}")
        clip = ClipModel.load(args.clip_model, device=args.device)
        yield CLIP_MODEL_NAME, args.clip_model, clip.encoder, clip.preprocess_region


def preflight(backend: str, device: str) -> None:
    """Fail on a missing runtime or GPU before spending minutes loading models."""
    if backend == "auto":
        return
    if backend == "tensorrt":
        from ros2_owl.backends.tensorrt_backend import import_tensorrt, require_cuda

        import_tensorrt()
        require_cuda(device)
    else:
        import torch

        from ros2_owl.backends.onnxruntime_backend import choose_providers, import_onnxruntime

        choose_providers(torch.device(device), import_onnxruntime().get_available_providers())


def _served(args, cache, name, model_id, module, preprocessor):
    """The verified float32 ONNX export of one encoder (from the cache) as a ServedEncoder."""
    import torch

    from ros2_owl.backends.export import export_cached, on_device
    from ros2_owl.backends.triton_repo import ServedEncoder, auto_wire_dtype

    cpu = on_device(module, torch.device("cpu"), torch.float32)
    entry = export_cached(cpu, model_id=model_id, cache=cache, max_batch=args.max_batch)
    wire = args.triton_wire_dtype
    return ServedEncoder(
        name=name,
        onnx_path=entry.path,
        image_size=module.image_size,
        output_names=tuple(module.output_names),
        mean=tuple(preprocessor.mean),
        std=tuple(preprocessor.std),
        wire_dtype=auto_wire_dtype(preprocessor.mode) if wire == "auto" else wire,
        model_id=model_id,
    )


def _write_triton_repo(args, served, progress) -> None:
    """Write the model repository for every served encoder and say where it is."""
    from ros2_owl.backends.triton_repo import BatchingOptions, write_repository

    opts = BatchingOptions(
        max_batch_size=args.max_batch,
        preferred_batch_sizes=tuple(args.triton_preferred_batch or ()),
        max_queue_delay_us=args.triton_max_queue_delay_us,
        instance_kind=f"KIND_{args.triton_instance_kind.upper()}",
    )
    for folder in write_repository(args.triton_repo, served, opts, progress):
        progress(f"Triton model {folder.name}: {folder}")


def run(args: argparse.Namespace) -> int:
    """Build every artefact asked for; 0 on success, 1 with a one-line error otherwise."""
    from ros2_owl.backends import BackendError, make_image_encoder
    from ros2_owl.backends.export import ExportError
    from ros2_owl.models import ModelLoadError

    cache = ArtefactCache(args.cache_dir)
    if args.list:
        list_cache(cache)
        return 0
    if args.clear:
        entries = list(cache.entries())
        for entry in entries:
            cache.remove(entry.path)
        print(f"removed {len(entries)} artefacts from {cache.root}")
        return 0
    if args.device is None:
        args.device = "cuda" if args.backend == "tensorrt" else "cpu"
    args.dtype = resolve_dtype(args.backend, args.dtype)
    if args.max_batch < 1:
        print("error: --max-batch must be >= 1", file=sys.stderr)
        return 1
    progress = LineProgress(total=1 if args.no_clip else 2)
    try:
        preflight(args.backend, args.device)
        served = []
        for name, model_id, module, preprocessor in _encoders(args, progress):
            start = time.monotonic()
            encoder = make_image_encoder(
                args.backend,
                module,
                model_id=model_id,
                device=args.device,
                dtype=args.dtype,
                cache_dir=str(cache.root),
                max_batch=args.max_batch,
                precision=args.precision,
                force=args.force,
                on_invalid=args.on_invalid,
                progress=progress,
            )
            progress(
                f"ready: {type(module).__name__} of {model_id} on "
                f"{encoder.selection.describe()} ({', '.join(encoder.output_names)}) in "
                f"{time.monotonic() - start:.1f}s"
            )
            if args.triton_repo:
                served.append(_served(args, cache, name, model_id, module, preprocessor))
        if args.triton_repo:
            _write_triton_repo(args, served, progress)
    except (BackendError, ExportError, CacheError, ModelLoadError, ValueError) as err:
        progress.close()
        print(f"error: {err}", file=sys.stderr)
        return 1
    progress.close()
    print(f"artefacts in {cache.root}:")
    list_cache(cache)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `python -m ros2_owl.cli.build_engine` and the ROS executable."""
    parser = argparse.ArgumentParser(
        prog="build_engine",
        description="Export ONNX graphs / build TensorRT engines into the cache.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
