"""int8 image encoders for the CPU: ONNX Runtime dynamic quantisation of the verified fp32 graph.

``onnxruntime.quantization.quantize_dynamic`` stores the weights of every MatMul/Gemm as int8
(per output channel) and quantises activations to uint8 per call, so no calibration images are
needed and the graph keeps the fp32 interface. It is reduced precision: auto considers it only
with ``precision='allow-reduced'``, and the drift against fp32 is measured by
benchmarks/bench_backends.py. The quantised graph is cached beside the fp32 one, keyed by the
fp32 key plus the ORT version and the quantisation settings.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from .base import BackendError
from .cache import CacheEntry
from .export import compare, onnx_key, sample_input, torch_outputs

LOG = logging.getLogger(__name__)

QUANT_SETTINGS = "dynamic-qint8-perchannel-matmul"
# Looser than fp32 on purpose: the graph is checked to run and stay near fp32, not to match it.
INT8_CHECK = {"atol": 0.5, "rtol": 0.25}


def quantize_graph(src: Path, dst: Path) -> None:
    """Write an int8 (weights) / uint8 (activations, dynamic) copy of an fp32 ONNX graph."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as err:
        raise BackendError(
            f"int8 needs onnxruntime.quantization ({err}); pip install onnxruntime onnx"
        ) from err
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul", "Gemm"],
        per_channel=True,
        weight_type=QuantType.QInt8,
    )


def int8_check(path: Path, module: torch.nn.Module) -> dict[str, float]:
    """Run the int8 graph next to torch fp32 on one sample; BackendError when it is unusable."""
    import onnxruntime as ort

    from .export import Tolerance

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = sample_input(module, 1, seed=7)
    ref = torch_outputs(module, x)
    raw = session.run(list(ref), {session.get_inputs()[0].name: x.numpy()})
    got = {n: torch.from_numpy(v) for n, v in zip(ref, raw, strict=True)}
    report = compare(got, ref, Tolerance(**INT8_CHECK))
    if not report.ok:
        raise BackendError(f"the int8 graph drifts too far from fp32: {report.summary()}")
    return report.max_abs


def quantized_cached(module: torch.nn.Module, options) -> CacheEntry:
    """Cached int8 graph of an fp32 CPU encoder (exports the fp32 graph first when needed);
    `options` is the backend's ExportOptions (model id, cache, batch profile, rebuild rule)."""
    import onnxruntime as ort

    say = options.progress or (lambda msg: LOG.info("%s", msg))
    fp32 = options.export(module)
    cache = options.cache
    base = onnx_key(module, model_id=options.model_id, max_batch=options.max_batch)
    key = dataclasses.replace(
        base,
        precision="int8",
        runtime_version=f"{base.runtime_version}-onnxruntime-{ort.__version__}",
        extra=(("quantization", QUANT_SETTINGS),),
    )
    with cache.lock(key, "onnx"):
        if options.force:
            cache.remove(cache.path_for(key, "onnx"))
        entry = cache.load(key, "onnx", on_invalid=options.on_invalid)
        if entry is not None:
            say(f"cached int8 ONNX {entry.path}")
            return entry
        info: dict[str, object] = {}

        def write(tmp: Path) -> None:
            say(f"quantising {fp32.path.name} to int8 ({QUANT_SETTINGS})")
            quantize_graph(fp32.path, tmp)
            info["max_abs_vs_fp32"] = int8_check(tmp, module)

        entry = cache.store(key, "onnx", write, info=info)
        say(f"stored int8 ONNX {entry.path}")
        return entry
