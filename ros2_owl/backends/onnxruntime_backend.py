"""ONNX Runtime image encoder: a cached, verified ONNX export run with torch tensors in and out.

Providers: the CUDA execution provider (then CPU) when the device is CUDA and the installed
onnxruntime has it, else the CPU provider. ORT's own TensorRT provider is not used: it builds
engines at session start with its own cache; backend='tensorrt' builds ours, keyed and verified.
Session: all graph optimisations, one intra-op thread per physical core (hyper-threads share
FMA units; $ROS2_OWL_ORT_THREADS overrides), sequential execution. Inputs and outputs are bound
with IOBinding to torch tensors, so no numpy copy happens per frame.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ros2_owl.backends.base import BackendError

LOG = logging.getLogger(__name__)

FALLBACK = "use backend='torch' (always available) instead"
THREADS_ENV = "ROS2_OWL_ORT_THREADS"

_ORT_TYPES = {
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(bfloat16)": torch.bfloat16,
    "tensor(double)": torch.float64,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
}


def import_onnxruntime():
    """Import onnxruntime or raise BackendError that names the fallback."""
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendError(
            f"backend 'onnxruntime' needs the onnxruntime package, which is not importable "
            f"({err}); pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA), or {FALLBACK}"
        ) from err
    return onnxruntime


def physical_cores() -> int:
    """Physical cores this process may run on (affinity-aware; hyper-thread siblings count once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            cores.add(("cpu", str(cpu)))
            continue
        cores.add((package, core))
    return max(1, len(cores))


def choose_providers(device: str | torch.device, available: Sequence[str]) -> list[str]:
    """Execution providers for a device, best first; BackendError when CUDA is asked but absent."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return ["CPUExecutionProvider"]
    if dev.type != "cuda":
        raise BackendError(f"backend 'onnxruntime' supports device cpu or cuda, not {dev.type!r}")
    if "CUDAExecutionProvider" not in available:
        raise BackendError(
            f"backend 'onnxruntime' on {dev} needs onnxruntime-gpu with the CUDA execution "
            f"provider; this onnxruntime has only {list(available)}. Use device='cpu' with "
            f"onnxruntime, or {FALLBACK}"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def default_threads() -> int:
    """Intra-op threads: $ROS2_OWL_ORT_THREADS when set (a CPU shared with other nodes), else
    one per physical core."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            raise BackendError(f"{THREADS_ENV} must be a positive integer, got {env!r}")
        return value
    return physical_cores()


def session_options(ort, threads: int | None = None):
    """Session options used everywhere: full graph optimisation, threads = physical cores, and
    no spin-waiting between calls: idle ORT threads would otherwise burn the cores the node's
    executor needs to take in camera frames (measured: a 720p burst lost most of its frames)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class OnnxRuntimeImageEncoder:
    """Runs an exported encoder graph; outputs are float32 torch tensors on the input's device."""

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        output_names: Sequence[str] | None = None,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        image_size: int | None = None,
        max_batch: int = 0,
    ) -> None:
        ort = import_onnxruntime()
        self.max_batch = max_batch  # the export's batch profile (0 = not bounded)
        self.onnx_path = Path(onnx_path)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", 0)
        self.providers = list(
            providers or choose_providers(self.device, ort.get_available_providers())
        )
        options = [
            {"device_id": str(self.device.index or 0)} if p != "CPUExecutionProvider" else {}
            for p in self.providers
        ]
        self.threads = threads or default_threads()
        try:
            self.session = ort.InferenceSession(
                str(onnx_path),
                session_options(ort, self.threads),
                providers=self.providers,
                provider_options=options,
            )
        except Exception as err:
            raise BackendError(
                f"onnxruntime could not load {onnx_path}: {type(err).__name__}: {err}; "
                f"rebuild it with `ros2-owl build-engine --force`, or {FALLBACK}"
            ) from err
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{onnx_path} has {len(inputs)} inputs; an image encoder has one")
        self.input_name = inputs[0].name
        self.input_dtype = _ORT_TYPES.get(inputs[0].type, torch.float32)
        shape = inputs[0].shape
        self.image_size = image_size or (shape[-1] if isinstance(shape[-1], int) else 0)
        graph_outputs = {o.name: o for o in self.session.get_outputs()}
        self.output_names = tuple(output_names or graph_outputs)
        missing = [n for n in self.output_names if n not in graph_outputs]
        if missing:
            raise BackendError(f"{onnx_path} lacks outputs {missing}; has {list(graph_outputs)}")
        self._out_meta = [
            (n, graph_outputs[n].shape, _ORT_TYPES.get(graph_outputs[n].type, torch.float32))
            for n in self.output_names
        ]
        self._ort_device = "cuda" if self.device.type == "cuda" else "cpu"
        self.session_providers = self.session.get_providers()

    def _output_shape(self, shape: Sequence[int | str | None], batch: int) -> list[int] | None:
        """Concrete output shape when only the batch axis is symbolic, else None (ORT allocates)."""
        dims = []
        for i, d in enumerate(shape):
            if isinstance(d, int):
                dims.append(d)
            elif i == 0:
                dims.append(batch)
            else:
                return None
        return dims

    def __call__(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode a batch [B,3,S,S]; the input is cast/moved to what the graph expects."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be [B,3,S,S], got {tuple(pixel_values.shape)}")
        if self.image_size and tuple(pixel_values.shape[2:]) != (self.image_size,) * 2:
            raise ValueError(
                f"pixel_values must be {self.image_size}x{self.image_size}, got "
                f"{tuple(pixel_values.shape[2:])}"
            )
        x = pixel_values.to(device=self.device, dtype=self.input_dtype).contiguous()
        batch = x.shape[0]
        binding = self.session.io_binding()
        binding.bind_input(
            self.input_name,
            self._ort_device,
            self.device.index or 0,
            _numpy_dtype(self.input_dtype),
            list(x.shape),
            x.data_ptr(),
        )
        outputs: dict[str, torch.Tensor] = {}
        for name, shape, dtype in self._out_meta:
            dims = self._output_shape(shape, batch)
            if dims is None:
                binding.bind_output(name, self._ort_device, self.device.index or 0)
                continue
            t = torch.empty(dims, dtype=dtype, device=self.device)
            outputs[name] = t
            binding.bind_output(
                name,
                self._ort_device,
                self.device.index or 0,
                _numpy_dtype(dtype),
                dims,
                t.data_ptr(),
            )
        if self.device.type == "cuda":
            # ORT runs on its own CUDA stream: torch's pending writes to x must land first.
            torch.cuda.current_stream(self.device).synchronize()
            binding.synchronize_inputs()
        self.session.run_with_iobinding(binding)
        if self.device.type == "cuda":
            binding.synchronize_outputs()
        if len(outputs) < len(self._out_meta):
            values = binding.copy_outputs_to_cpu()
            for (name, _, _), value in zip(self._out_meta, values, strict=True):
                if name not in outputs:
                    outputs[name] = torch.from_numpy(value).to(self.device)
        return {n: outputs[n].float() for n, _, _ in self._out_meta}


def _numpy_dtype(dtype: torch.dtype):
    """numpy dtype ORT's binding API expects for a torch dtype."""
    import numpy as np

    if dtype == torch.bfloat16:
        import ml_dtypes

        return ml_dtypes.bfloat16
    return {
        torch.float32: np.float32,
        torch.float16: np.float16,
        torch.float64: np.float64,
        torch.int64: np.int64,
        torch.int32: np.int32,
    }[dtype]
