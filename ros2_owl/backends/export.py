"""ONNX export of the image encoders, checked against torch before anything is cached.

Any module with ``output_names`` and ``image_size`` attributes (OwlImageEncoder,
ClipImageEncoder) exports with torch.onnx.export(dynamo=True) and a dynamic batch axis. The
graph is run with ONNX Runtime on a sample input at export time and compared with the torch
module; a graph that disagrees beyond tolerance raises ExportError and is never cached.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ros2_owl.backends.cache import (
    ArtefactCache,
    ArtefactKey,
    CacheEntry,
    OnInvalid,
    model_fingerprint,
    module_fingerprint,
)

LOG = logging.getLogger(__name__)
# torch's exporter trips over its own pytree deprecation: not the user's concern. One filter
# for the process (warnings.catch_warnings around an export on a background thread is not
# thread-safe: it resets the filters of every thread on exit).
warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)

OPSET = 18
INPUT_NAME = "pixel_values"
ONNX_LIMIT_BYTES = 2_000_000_000
Progress = Callable[[str], None]


class ExportError(RuntimeError):
    """Export failed, or the exported graph does not reproduce the torch module."""


@dataclass(frozen=True)
class Tolerance:
    """Allowed error per output: max|onnx - torch| <= atol + rtol * max|torch|."""

    atol: float
    rtol: float

    def limit(self, reference: torch.Tensor) -> float:
        """Absolute error bound for one reference output."""
        scale = float(reference.abs().max()) if reference.numel() else 0.0
        return self.atol + self.rtol * scale


# fp32: observed max error ~2e-4 on full-size OWL-ViT B/32 (scores/boxes scale ~1-10).
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(atol=1e-3, rtol=1e-3),
    "float16": Tolerance(atol=2e-2, rtol=2e-2),
}


@dataclass(frozen=True)
class ParityReport:
    """Per-output max absolute error of a runtime against torch, and the bound it had to meet."""

    batch_size: int
    max_abs: dict[str, float]
    limits: dict[str, float]

    @property
    def ok(self) -> bool:
        """True when every output is within its bound (NaN counts as failure)."""
        return all(self.max_abs[k] <= self.limits[k] for k in self.max_abs)

    def summary(self) -> str:
        """One line per output for error messages and logs."""
        return ", ".join(
            f"{k}: {self.max_abs[k]:.2e} (limit {self.limits[k]:.2e})" for k in self.max_abs
        )


def encoder_attrs(module: torch.nn.Module) -> tuple[tuple[str, ...], int]:
    """The output names and input size every exportable encoder must declare."""
    names = getattr(module, "output_names", None)
    size = getattr(module, "image_size", None)
    if not names or not isinstance(size, int):
        raise ExportError(
            f"{type(module).__name__} cannot be exported: it needs `output_names` (tuple of "
            f"str) and `image_size` (int) attributes"
        )
    return tuple(names), size


def module_device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a module's first floating parameter."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def on_device(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The module itself when already there, else a copy: the caller's module is never moved."""
    cur_dev, cur_dt = module_device_dtype(module)
    if cur_dev.type == device.type and cur_dt == dtype:
        return module.eval()
    return copy.deepcopy(module).to(device=device, dtype=dtype).eval()


def sample_input(module: torch.nn.Module, batch_size: int, seed: int = 0) -> torch.Tensor:
    """Deterministic normalised-image-like input on the module's device and dtype."""
    _, size = encoder_attrs(module)
    device, dtype = module_device_dtype(module)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, size, size, generator=gen)
    return x.to(device=device, dtype=dtype)


def torch_outputs(module: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reference outputs of the torch module as float32 CPU tensors keyed by name."""
    names, _ = encoder_attrs(module)
    with torch.inference_mode():
        out = module(x)
    if isinstance(out, torch.Tensor):
        out = (out,)
    if len(out) != len(names):
        raise ExportError(
            f"{type(module).__name__} returned {len(out)} outputs but declares {len(names)} "
            f"output_names {names}"
        )
    return {n: t.detach().float().cpu() for n, t in zip(names, out, strict=True)}


def compare(
    outputs: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], tol: Tolerance
) -> ParityReport:
    """Max abs error per output against the reference (shape mismatch counts as infinite)."""
    errs: dict[str, float] = {}
    limits: dict[str, float] = {}
    for name, ref in reference.items():
        got = outputs.get(name)
        limits[name] = tol.limit(ref)
        if got is None or tuple(got.shape) != tuple(ref.shape):
            errs[name] = float("inf")
            continue
        diff = (got.float().cpu() - ref).abs()
        if not diff.numel():
            errs[name] = 0.0
        elif diff.isnan().any():
            errs[name] = float("inf")
        else:
            errs[name] = float(diff.max())
    batch = next(iter(reference.values())).shape[0] if reference else 0
    return ParityReport(batch, errs, limits)


def export_onnx(
    module: torch.nn.Module,
    path: str | os.PathLike[str],
    *,
    max_batch: int = 8,
    opset: int = OPSET,
) -> None:
    """Write module as a single-file ONNX graph with named outputs and a dynamic batch axis."""
    names, _ = encoder_attrs(module)
    n_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    if n_bytes > ONNX_LIMIT_BYTES:
        raise ExportError(
            f"{type(module).__name__} has {n_bytes / 1e9:.1f} GB of weights, over the 2 GB "
            "single-file ONNX limit"
        )
    module = module.eval()
    # Trace with batch 2: torch.export specialises a size-1 dimension to a constant.
    example = sample_input(module, 2 if max_batch >= 2 else 1)
    arg = _forward_arg_name(module)
    dynamic = None
    if max_batch >= 2:
        dynamic = {arg: {0: torch.export.Dim("batch", min=1, max=max_batch)}}
    try:
        # verbose=False, not redirect_stdout: sys.stdout is the whole process's, and an export
        # on the background upgrade's thread swallowed what other threads printed (serve's
        # "serving <url>" line)
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=list(names),
                dynamic_shapes=dynamic,
                opset_version=opset,
                external_data=False,
                optimize=True,
                verbose=False,
            )
    except Exception as err:
        raise ExportError(
            f"torch.onnx.export(dynamo=True) failed for {type(module).__name__}: "
            f"{type(err).__name__}: {err}"
        ) from err
    if not Path(path).is_file():
        raise ExportError(f"torch.onnx.export wrote no file at {path}")


def _forward_arg_name(module: torch.nn.Module) -> str:
    """Name of forward's first argument (dynamic_shapes is keyed by it)."""
    import inspect

    params = list(inspect.signature(module.forward).parameters)
    return params[0] if params else "pixel_values"


def verify_onnx(
    path: str | os.PathLike[str],
    module: torch.nn.Module,
    *,
    batch_sizes: Sequence[int] = (1, 2),
    tolerance: Tolerance | None = None,
) -> list[ParityReport]:
    """Run the graph with ONNX Runtime (CPU) next to torch; ExportError when they disagree."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ExportError(
            "onnxruntime is needed to verify an exported graph (pip install onnxruntime)"
        ) from err
    _, dtype = module_device_dtype(module)
    precision = {torch.float16: "float16"}.get(dtype, "float32")
    tol = tolerance or TOLERANCES[precision]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if dtype == torch.float16 and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(str(path), opts, providers=providers)
    reports = []
    for i, bs in enumerate(batch_sizes):
        x = sample_input(module, bs, seed=100 + i)
        ref = torch_outputs(module, x)
        raw = session.run(list(ref), {session.get_inputs()[0].name: x.cpu().numpy()})
        got = {n: torch.from_numpy(v) for n, v in zip(ref, raw, strict=True)}
        report = compare(got, ref, tol)
        reports.append(report)
        if not report.ok:
            raise ExportError(
                f"exported ONNX graph for {type(module).__name__} disagrees with torch at "
                f"batch {bs}: {report.summary()}; not caching it"
            )
    return reports


def module_key(
    module: torch.nn.Module, model_id: str, *, revision: str | None = None, **fields
) -> ArtefactKey:
    """The artefact key of anything built from `module` (an export, an engine, a backend choice):
    the model (a local folder by its absolute path), its weights and outputs, plus `fields`."""
    names, size = encoder_attrs(module)
    local = Path(model_id).expanduser()
    if local.is_dir():  # "./m" and "/abs/m" are the same model
        model_id = str(local.resolve())
    return ArtefactKey(
        model_id=str(model_id),
        revision=model_fingerprint(str(model_id), revision),
        encoder=type(module).__name__,
        input_size=size,
        min_batch=1,
        weights=module_fingerprint(module),
        output_names=names,
        **fields,
    )


def onnx_key(
    module: torch.nn.Module,
    *,
    model_id: str,
    revision: str | None = None,
    max_batch: int = 8,
    opset: int = OPSET,
) -> ArtefactKey:
    """Cache key of an ONNX export: the graph depends on torch, opset, weights and shapes."""
    device, dtype = module_device_dtype(module)
    return module_key(
        module,
        model_id,
        revision=revision,
        precision=str(dtype).removeprefix("torch."),
        max_batch=max_batch,
        backend="onnx",
        runtime_version=f"torch-{torch.__version__.split('+')[0]}-opset{opset}",
        device=device.type,
    )


@dataclass(frozen=True)
class ExportOptions:
    """How a runtime backend gets its verified ONNX graph (shared by ONNX Runtime and TensorRT):
    the model id that keys the cache, the batch profile, and what a stale artefact does."""

    model_id: str
    cache: ArtefactCache
    max_batch: int = 8
    force: bool = False
    on_invalid: OnInvalid = "rebuild"
    progress: Progress | None = None

    def export(self, module: torch.nn.Module, *, verify: bool = True) -> CacheEntry:
        """export_cached with these options."""
        return export_cached(
            module,
            model_id=self.model_id,
            cache=self.cache,
            max_batch=self.max_batch,
            force=self.force,
            on_invalid=self.on_invalid,
            verify=verify,
            progress=self.progress,
        )


def export_cached(
    module: torch.nn.Module,
    *,
    model_id: str,
    cache: ArtefactCache | None = None,
    revision: str | None = None,
    max_batch: int = 8,
    opset: int = OPSET,
    force: bool = False,
    on_invalid: OnInvalid = "rebuild",
    verify: bool = True,
    progress: Progress | None = None,
) -> CacheEntry:
    """Cached, verified ONNX export of an encoder: reuse a valid artefact or build a new one."""
    cache = cache or ArtefactCache()
    key = onnx_key(module, model_id=model_id, revision=revision, max_batch=max_batch, opset=opset)
    say = progress or (lambda msg: LOG.info("%s", msg))
    entry, built = cache.load_or_build(
        key,
        "onnx",
        lambda: _export_and_store(module, key, cache, max_batch, opset, verify, say),
        force=force,
        on_invalid=on_invalid,
    )
    if not built:
        say(f"cached ONNX {entry.path}")
    return entry


def _export_and_store(module, key, cache, max_batch, opset, verify, say) -> CacheEntry:
    """Export, verify (optionally) and store one graph; nothing is stored when a step fails."""
    info: dict[str, object] = {}

    def write(tmp: Path) -> None:
        say(f"exporting {type(module).__name__} ({key.input_size}px, batch 1..{max_batch})")
        export_onnx(module, tmp, max_batch=max_batch, opset=opset)
        if verify:
            say("verifying the ONNX graph against torch")
            sizes = sorted({1, min(2, max_batch), max_batch})
            reports = verify_onnx(tmp, module, batch_sizes=sizes)
            info["parity"] = {str(r.batch_size): r.max_abs for r in reports}

    entry = cache.store(key, "onnx", write, info=info)
    say(f"stored ONNX {entry.path}")
    return entry
