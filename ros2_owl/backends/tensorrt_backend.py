"""TensorRT image encoder: an engine built from our verified ONNX export with the TensorRT API.

Build: ``trt.Builder`` -> network from ``trt.OnnxParser`` -> builder config with the FP16 flag
and one optimisation profile covering batch 1..max_batch -> ``build_serialized_network``; the
serialized engine goes into the artefact cache keyed by TensorRT version and GPU. Run: the
engine's I/O tensors are bound to torch CUDA tensors and executed on torch's current stream.
``tensorrt`` is imported only here and only when this backend is asked for.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ros2_owl.backends.base import BackendError, refuse_bfloat16
from ros2_owl.backends.cache import ArtefactKey, CacheEntry
from ros2_owl.backends.export import (
    INPUT_NAME,
    TOLERANCES,
    ExportOptions,
    compare,
    encoder_attrs,
    on_device,
    sample_input,
    torch_outputs,
)

LOG = logging.getLogger(__name__)

FALLBACK = (
    "use backend='onnxruntime' (onnxruntime-gpu on CUDA, or the CPU provider) or "
    "backend='torch' (dtype float16 on cuda) instead"
)
Progress = Callable[[str], None]


def import_tensorrt():
    """Import tensorrt or raise BackendError naming the fallback backends."""
    try:
        import tensorrt
    except ImportError as err:
        raise BackendError(
            "backend 'tensorrt' needs NVIDIA TensorRT's Python package and a CUDA GPU; "
            f"`import tensorrt` failed ({err}). Install it (pip install tensorrt, or JetPack "
            f"on Jetson), or {FALLBACK}"
        ) from err
    return tensorrt


def require_cuda(device: str | torch.device = "cuda") -> torch.device:
    """The CUDA device to run on, or BackendError when torch sees no GPU."""
    dev = torch.device(device)
    if dev.type != "cuda":
        raise BackendError(f"backend 'tensorrt' runs on a CUDA device, not {dev}; {FALLBACK}")
    if not torch.cuda.is_available():
        raise BackendError(f"backend 'tensorrt' needs a CUDA GPU but torch sees none; {FALLBACK}")
    return torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())


def gpu_name(device: torch.device) -> str:
    """GPU identity for the cache key: engines are specific to the GPU model and its SM."""
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)} sm{major}{minor}"


def _major(version: str) -> int:
    return int(version.split(".")[0])


def _progress_monitor(trt, say: Progress):
    """A trt.IProgressMonitor forwarding build phases to say() (TensorRT >= 10 only)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.steps[phase_name] = num_steps
            say(f"TensorRT: {phase_name} (0/{num_steps})")

        def step_complete(self, phase_name, step):
            total = self.steps.get(phase_name, 0)
            if total:
                say(f"TensorRT: {phase_name} ({step + 1}/{total})")
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self.steps.pop(phase_name, None)

    return Monitor()


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    image_size: int,
    max_batch: int,
    opt_batch: int = 1,
    fp16: bool = True,
    workspace_bytes: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Build and serialize an engine for an ONNX image encoder with a 1..max_batch profile."""
    trt = import_tensorrt()
    require_cuda()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if _major(trt.__version__) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path}: {errors}; {FALLBACK}")
    input_name = network.get_input(0).name if network.num_inputs else INPUT_NAME
    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        if not builder.platform_has_fast_fp16:
            LOG.warning("this GPU has no fast fp16; the fp16 engine may be slow")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    shape = (3, image_size, image_size)
    opt = max(1, min(opt_batch, max_batch))
    profile.set_shape(input_name, (1, *shape), (opt, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    if progress is not None and hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _progress_monitor(trt, progress)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(
            f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log "
            f"above); {FALLBACK}"
        )
    with open(engine_path, "wb") as f:
        f.write(serialized)


def _torch_dtype(trt, dtype) -> torch.dtype:
    """torch dtype for a TensorRT tensor data type."""
    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT32: torch.int32,
        trt.DataType.BOOL: torch.bool,
    }
    for name, tdtype in (("BF16", torch.bfloat16), ("INT64", torch.int64)):
        if hasattr(trt.DataType, name):
            table[getattr(trt.DataType, name)] = tdtype
    return table[dtype]


class TensorRTImageEncoder:
    """Runs a serialized engine; batches above the profile's max are split into chunks."""

    name = "tensorrt"

    def __init__(
        self,
        engine_path: str | Path,
        *,
        device: str | torch.device = "cuda",
        output_names: Sequence[str] | None = None,
        image_size: int | None = None,
        max_batch: int = 8,
    ) -> None:
        trt = import_tensorrt()
        self.device = require_cuda(device)
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
            if self.engine is None:
                raise BackendError(
                    f"TensorRT could not deserialize {engine_path} (built by another TensorRT "
                    f"version or GPU?); rebuild it with `ros2-owl build-engine --force`, or "
                    f"{FALLBACK}"
                )
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        if len(inputs) != 1:
            raise BackendError(f"{engine_path} has inputs {inputs}; an image encoder has one")
        self.input_name = inputs[0]
        self.input_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.input_name))
        graph_outputs = [n for n in names if n not in inputs]
        self.output_names = tuple(output_names or graph_outputs)
        missing = [n for n in self.output_names if n not in graph_outputs]
        if missing:
            raise BackendError(f"{engine_path} lacks outputs {missing}; has {graph_outputs}")
        self._out_dtypes = {
            n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in graph_outputs
        }
        self.image_size = image_size or int(self.engine.get_tensor_shape(self.input_name)[-1])
        self.max_batch = max_batch
        self._lock = threading.Lock()  # one execution context: one inference at a time

    def _run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        ctx = self.context
        ctx.set_input_shape(self.input_name, tuple(x.shape))
        ctx.set_tensor_address(self.input_name, x.data_ptr())
        outputs = {}
        for name, dtype in self._out_dtypes.items():
            shape = tuple(ctx.get_tensor_shape(name))
            t = torch.empty(shape, dtype=dtype, device=self.device)
            ctx.set_tensor_address(name, t.data_ptr())
            outputs[name] = t
        stream = torch.cuda.current_stream(self.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        return {n: outputs[n].float() for n in self.output_names}

    def __call__(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode [B,3,S,S] on the GPU; outputs are float32 CUDA tensors on torch's stream."""
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, *(self.image_size,) * 2):
            raise ValueError(
                f"pixel_values must be [B,3,{self.image_size},{self.image_size}], got "
                f"{tuple(pixel_values.shape)}"
            )
        x = pixel_values.to(device=self.device, dtype=self.input_dtype).contiguous()
        chunks = []
        with self._lock, torch.cuda.device(self.device):
            for start in range(0, x.shape[0], self.max_batch):
                chunks.append(self._run(x[start : start + self.max_batch]))
        if len(chunks) == 1:
            return chunks[0]
        return {n: torch.cat([c[n] for c in chunks]) for n in self.output_names}


def engine_key(
    onnx_entry: CacheEntry, *, device: torch.device, fp16: bool, opt_batch: int
) -> ArtefactKey:
    """Engine key: the ONNX key with TensorRT's version, the GPU and the precision."""
    trt = import_tensorrt()
    base = ArtefactKey.from_dict(onnx_entry.manifest["key"])
    return dataclasses.replace(  # the model, weights, shapes and outputs stay the ONNX key's
        base,
        precision="float16" if fp16 else "float32",
        min_batch=1,
        backend="tensorrt",
        runtime_version=f"tensorrt-{trt.__version__}",
        device=gpu_name(device),
        extra=(("onnx_sha256", onnx_entry.manifest["sha256"]), ("opt_batch", str(opt_batch))),
        format_version=ArtefactKey.format_version,
    )


def make_tensorrt_encoder(
    module: torch.nn.Module,
    options: ExportOptions,
    *,
    device: str | torch.device = "cuda",
    dtype: torch.dtype = torch.float16,
    opt_batch: int = 1,
) -> TensorRTImageEncoder:
    """Cached engine for an encoder (export ONNX -> build -> verify vs torch -> cache)."""
    if dtype not in (torch.float16, torch.float32):
        raise refuse_bfloat16("tensorrt", "builds float16 or float32 engines")
    import_tensorrt()
    dev = require_cuda(device)
    names, size = encoder_attrs(module)
    cache = options.cache
    module = on_device(module, dev, torch.float32)
    # The engine itself is verified against torch below; ORT may be absent on a Jetson.
    onnx_entry = options.export(module, verify=importlib.util.find_spec("onnxruntime") is not None)
    fp16 = dtype == torch.float16
    key = engine_key(onnx_entry, device=dev, fp16=fp16, opt_batch=opt_batch)
    entry, _ = cache.load_or_build(
        key,
        "engine",
        lambda: _build_and_store(
            cache, key, module, onnx_entry.path, dev, opt_batch, options.progress
        ),
        force=options.force,
        on_invalid=options.on_invalid,
    )
    return TensorRTImageEncoder(
        entry.path, device=dev, output_names=names, image_size=size, max_batch=options.max_batch
    )


def _build_and_store(cache, key, module, onnx_path, dev, opt_batch, progress) -> CacheEntry:
    """Build an engine, verify it against the torch module, and store it (only if it agrees)."""
    say = progress or (lambda msg: LOG.info("%s", msg))
    names, size = encoder_attrs(module)
    report: dict[str, object] = {}

    def write(tmp: Path) -> None:
        say(f"building TensorRT engine ({key.precision}, batch 1..{key.max_batch}); minutes")
        build_engine(
            onnx_path,
            tmp,
            image_size=size,
            max_batch=key.max_batch,
            opt_batch=opt_batch,
            fp16=key.precision == "float16",
            progress=progress,
        )
        say("verifying the engine against torch")
        encoder = TensorRTImageEncoder(
            tmp, device=dev, output_names=names, image_size=size, max_batch=key.max_batch
        )
        x = sample_input(module, min(2, key.max_batch), seed=7)
        parity = compare(encoder(x), torch_outputs(module, x), TOLERANCES[key.precision])
        report["parity"] = parity.max_abs
        if not parity.ok:
            raise BackendError(
                f"TensorRT engine disagrees with torch ({parity.summary()}); not caching "
                f"it. Try dtype float32, or {FALLBACK}"
            )

    entry = cache.store(key, "engine", write, info=report)
    say(f"stored engine {entry.path}")
    return entry
