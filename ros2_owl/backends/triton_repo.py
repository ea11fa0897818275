"""Triton model repository for the image encoders, written from the verified ONNX exports.

Layout (one folder per encoder)::

    DIR/owl_image_encoder/config.pbtxt      platform onnxruntime_onnx, dynamic batching
    DIR/owl_image_encoder/1/model.onnx      the cached, verified export + a wire input stage

The served graph is the artefact cache's verified export with a small stage in front of it that
turns the wire input into normalised pixels, so the robot sends as few bytes as is faithful:

* ``uint8``: grey levels; the stage computes ``(x / 255 - mean) / std`` exactly as the local
  preprocessor does. Lossless where preprocessing yields whole grey levels (OWL-ViT's stretch
  resize of a uint8 camera image): 1 byte per value.
* ``float16``: normalised pixels rounded to half precision (|error| <= 2^-11 relative): 2 bytes.
* ``float32``: the export unchanged: 4 bytes.

``auto`` picks uint8 for OWL-ViT (stretch) and float16 for OWLv2 (float resize) and CLIP (region
crops padded with the mean, which is not a whole grey level). Every served graph is run with ONNX
Runtime against the cached export before it is written; a disagreement raises ExportError.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros2_owl.backends.export import INPUT_NAME, TOLERANCES, ExportError, compare
from ros2_owl.core.settings import TRITON_CLIP_MODEL, TRITON_OWL_MODEL

OWL_MODEL_NAME = TRITON_OWL_MODEL
CLIP_MODEL_NAME = TRITON_CLIP_MODEL
WIRE_DTYPES = ("auto", "uint8", "float16", "float32")
# Triton's model-config enum names and the KServe-v2 wire names for each wire dtype.
TRITON_TYPES = {"uint8": "TYPE_UINT8", "float16": "TYPE_FP16", "float32": "TYPE_FP32"}
V2_TYPES = {"uint8": "UINT8", "float16": "FP16", "float32": "FP32"}
_ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 2: "TYPE_UINT8", 7: "TYPE_INT64"}


@dataclass(frozen=True)
class ServedEncoder:
    """One encoder to serve: Triton model name, verified ONNX path and its wire input stage."""

    name: str
    onnx_path: Path
    image_size: int
    output_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    wire_dtype: str  # uint8 | float16 | float32 (auto already resolved)
    model_id: str = ""


@dataclass(frozen=True)
class BatchingOptions:
    """Triton's dynamic batcher: the largest batch, batch sizes it prefers, how long it waits."""

    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 2000
    instance_kind: str = "KIND_GPU"
    instance_count: int = 1

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(f"preferred batch sizes {bad} are outside 1..{self.max_batch_size}")
        if self.max_queue_delay_us < 0:
            raise ValueError("max_queue_delay_us must be >= 0")
        if self.instance_kind not in ("KIND_GPU", "KIND_CPU"):
            raise ValueError(
                f"instance kind must be KIND_GPU or KIND_CPU, not {self.instance_kind}"
            )


def auto_wire_dtype(preprocess_mode: str) -> str:
    """uint8 only where preprocessing yields whole grey levels (stretch), else float16."""
    return "uint8" if preprocess_mode == "stretch" else "float16"


def add_wire_stage(model, wire_dtype: str, mean: Sequence[float], std: Sequence[float]):
    """The ONNX model with its image input taking ``wire_dtype`` (see module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if wire_dtype == "float32":
        return model
    graph = model.graph
    image = graph.input[0]
    inner = f"{image.name}__normalised"
    for node in graph.node:
        node.input[:] = [inner if n == image.name else n for n in node.input]
    stage = []
    if wire_dtype == "uint8":
        consts = {
            "wire__255": np.array(255.0, dtype=np.float32),
            "wire__mean": np.array(mean, dtype=np.float32).reshape(1, 3, 1, 1),
            "wire__std": np.array(std, dtype=np.float32).reshape(1, 3, 1, 1),
        }
        graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
        stage = [
            helper.make_node("Cast", [image.name], ["wire__f"], to=TensorProto.FLOAT),
            helper.make_node("Div", ["wire__f", "wire__255"], ["wire__unit"]),
            helper.make_node("Sub", ["wire__unit", "wire__mean"], ["wire__centred"]),
            helper.make_node("Div", ["wire__centred", "wire__std"], [inner]),
        ]
        image.type.tensor_type.elem_type = TensorProto.UINT8
    elif wire_dtype == "float16":
        stage = [helper.make_node("Cast", [image.name], [inner], to=TensorProto.FLOAT)]
        image.type.tensor_type.elem_type = TensorProto.FLOAT16
    else:
        raise ValueError(f"wire dtype must be one of {WIRE_DTYPES[1:]}, not {wire_dtype!r}")
    nodes = stage + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def wire_sample(wire_dtype: str, batch: int, size: int, mean, std, seed: int = 0):
    """(wire input, the normalised float32 pixels it stands for) for a parity check."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 256, size=(batch, 3, size, size), dtype=np.uint8)
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    normalised = (levels.astype(np.float32) / np.float32(255.0) - m) / s
    if wire_dtype == "uint8":
        return levels, normalised
    if wire_dtype == "float16":
        half = normalised.astype(np.float16)
        return half, half.astype(np.float32)
    return normalised, normalised


def verify_served(served_path: Path, encoder: ServedEncoder, batch_sizes=(1, 2)) -> dict:
    """Run the served graph next to the verified export on the same pixels; ExportError if not equal."""
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    served = ort.InferenceSession(str(served_path), opts, providers=["CPUExecutionProvider"])
    cached = ort.InferenceSession(str(encoder.onnx_path), opts, providers=["CPUExecutionProvider"])
    names = list(encoder.output_names)
    shapes: dict[str, list[int]] = {}
    for i, bs in enumerate(batch_sizes):
        wire, pixels = wire_sample(
            encoder.wire_dtype, bs, encoder.image_size, encoder.mean, encoder.std, seed=i
        )
        ref = cached.run(names, {cached.get_inputs()[0].name: pixels})
        got = served.run(names, {served.get_inputs()[0].name: wire})
        report = compare(
            {n: torch.from_numpy(v) for n, v in zip(names, got, strict=True)},
            {n: torch.from_numpy(v) for n, v in zip(names, ref, strict=True)},
            TOLERANCES["float32"],
        )
        if not report.ok:
            raise ExportError(
                f"served graph {served_path} disagrees with the verified export at batch {bs}: "
                f"{report.summary()}"
            )
        shapes = {n: list(v.shape[1:]) for n, v in zip(names, got, strict=True)}
    return shapes


def _dims(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


def config_text(encoder: ServedEncoder, out_shapes: dict, out_types: dict, opts) -> str:
    """config.pbtxt in Triton's model-config text format (parsed back by a test)."""
    size = encoder.image_size
    lines = [
        f'name: "{encoder.name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {opts.max_batch_size}",
        "input [",
        "  {",
        f'    name: "{INPUT_NAME}"',
        f"    data_type: {TRITON_TYPES[encoder.wire_dtype]}",
        f"    dims: {_dims((3, size, size))}",
        "  }",
        "]",
        "output [",
    ]
    outs = []
    for name in encoder.output_names:
        outs.append(
            f'  {{\n    name: "{name}"\n    data_type: {out_types[name]}\n'
            f"    dims: {_dims(out_shapes[name])}\n  }}"
        )
    lines += [",\n".join(outs), "]", "dynamic_batching {"]
    if opts.preferred_batch_sizes:
        lines.append(f"  preferred_batch_size: {_dims(opts.preferred_batch_sizes)}")
    lines += [f"  max_queue_delay_microseconds: {opts.max_queue_delay_us}", "}"]
    lines += [
        "instance_group [",
        f"  {{\n    count: {opts.instance_count}\n    kind: {opts.instance_kind}\n  }}",
        "]",
    ]
    params = {
        "ros2_owl.model_id": encoder.model_id,
        "ros2_owl.wire_dtype": encoder.wire_dtype,
        "ros2_owl.mean": ",".join(f"{v:.8g}" for v in encoder.mean),
        "ros2_owl.std": ",".join(f"{v:.8g}" for v in encoder.std),
    }
    for key, value in params.items():
        lines.append(f'parameters {{\n  key: "{key}"\n  value {{ string_value: "{value}" }}\n}}')
    return "\n".join(lines) + "\n"


def write_model(root: Path, encoder: ServedEncoder, opts: BatchingOptions) -> Path:
    """Write DIR/<name>/{config.pbtxt,1/model.onnx}; the old folder is replaced only on success."""
    import onnx

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{encoder.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "1").mkdir(parents=True)
    try:
        model = add_wire_stage(
            onnx.load(str(encoder.onnx_path)), encoder.wire_dtype, encoder.mean, encoder.std
        )
        served = staging / "1" / "model.onnx"
        onnx.save(model, str(served))
        shapes = verify_served(served, encoder)
        graph_out = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
        types = {n: _ONNX_TO_TRITON.get(graph_out.get(n, 1), "TYPE_FP32") for n in shapes}
        (staging / "config.pbtxt").write_text(config_text(encoder, shapes, types, opts))
        final = root / encoder.name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def write_repository(
    root: str | os.PathLike[str],
    encoders: Sequence[ServedEncoder],
    opts: BatchingOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write every encoder's model folder under root; returns the folders."""
    say = progress or (lambda _msg: None)
    opts = opts or BatchingOptions()
    written = []
    for encoder in encoders:
        say(f"writing Triton model {encoder.name} ({encoder.wire_dtype} input)")
        written.append(write_model(Path(root), encoder, opts))
    return written
