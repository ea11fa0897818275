"""OwlNode parameters: one table of specs -> descriptors, validation and typed settings."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

__all__ = [
    "PARAMS",
    "ParamSpec",
    "Settings",
    "declare_parameters",
    "format_label_thresholds",
    "parse_label_thresholds",
    "read_settings",
    "validate_parameter",
]

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_STRING_ARRAY,  # every list parameter here holds strings
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its default, documentation, bounds and extra checks."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    constraints: str = ""
    check: Callable[[Any], str | None] | None = None

    @property
    def type_(self) -> int:
        return _TYPES[type(self.default)]

    def descriptor(self) -> ParameterDescriptor:
        """The ROS descriptor; rclpy itself then enforces type, range and read-only."""
        text = self.constraints
        if self.choices:
            text = (text + "; " if text else "") + "one of: " + ", ".join(self.choices)
        d = ParameterDescriptor(
            name=self.name,
            type=self.type_,
            description=self.description,
            additional_constraints=text,
            read_only=self.read_only,
        )
        if self.range is not None and isinstance(self.default, float):
            lo, hi = self.range
            d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
        elif self.range is not None and isinstance(self.default, int):
            lo, hi = self.range
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        return d


def parse_label_thresholds(items: Iterable[str]) -> dict[str, float]:
    """Parse ["a person=0.3", ...] into {label: threshold}; raise ValueError with the item."""
    out: dict[str, float] = {}
    for item in items:
        if not item.strip():
            continue
        label, sep, value = item.rpartition("=")
        label = label.strip()
        if not sep or not label:
            raise ValueError(f"label_thresholds item {item!r} is not 'label=value'")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(
                f"label_thresholds item {item!r}: {value.strip()!r} is not a number"
            ) from None
        if not (0.0 <= number <= 1.0) or math.isnan(number):
            raise ValueError(f"label_thresholds item {item!r}: threshold must be in [0, 1]")
        out[label] = number
    return out


def format_label_thresholds(thresholds: Mapping[str, float]) -> list[str]:
    """The inverse of parse_label_thresholds, for writing the parameter back."""
    return [f"{label}={value:g}" for label, value in thresholds.items()]


def _check_thresholds(value: list[str]) -> str | None:
    try:
        parse_label_thresholds(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_topics(value: list[str]) -> str | None:
    if not value:
        return "at least one image topic is needed"
    if any(not t.strip() for t in value):
        return "image topic names must not be empty"
    if len(set(value)) != len(value):
        return "image topics must be distinct"
    return None


def _check_headers(value: list[str]) -> str | None:
    bad = [v for v in value if "=" not in v or not v.split("=", 1)[0].strip()]
    return f"entries must look like key=value: {bad}" if bad else None


def _check_prompt(value: str) -> str | None:
    return None if value.strip() else "the prompt must not be empty"


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "prompt",
        "[a person]",
        "Tree prompt, e.g. '[a person [a face] (standing, sitting)]'. Takes effect next frame.",
        constraints="tree prompt syntax; `label@0.3` sets a per-label threshold",
        check=_check_prompt,
    ),
    ParamSpec(
        "threshold",
        0.1,
        "Default detection score threshold for labels without their own.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "label_thresholds",
        [],
        "Per-label detection thresholds as 'label=value' items, e.g. ['a face=0.3'].",
        constraints="items 'label=value' with value in [0, 1]; `label@v` in the prompt wins",
        check=_check_thresholds,
    ),
    ParamSpec(
        "scoring",
        "independent",
        "Detection scoring: 'independent' judges every (box, label) pair on its own; "
        "'exclusive' keeps only each box's best label of its group (NanoOWL's behaviour).",
        choices=("independent", "exclusive"),
    ),
    ParamSpec(
        "nms_iou",
        0.5,
        "IoU of per-label non-maximum suppression; 0 turns it off.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "max_detections", 100, "Most detections per frame, all levels together.", range=(1, 10000)
    ),
    ParamSpec("max_regions", 8, "Most regions a nested level runs on per frame.", range=(0, 1024)),
    ParamSpec(
        "model",
        "google/owlvit-base-patch32",
        "OWL-ViT / OWLv2 hub id or local directory (loaded once at start).",
        read_only=True,
    ),
    ParamSpec(
        "clip_model",
        "openai/clip-vit-base-patch32",
        "CLIP hub id or local directory for classify groups ('' = none; loaded once at start).",
        read_only=True,
    ),
    ParamSpec("device", "cpu", "Torch device, e.g. 'cpu' or 'cuda:0'.", read_only=True),
    ParamSpec(
        "dtype",
        "auto",
        "Image-encoder precision; 'auto' = float16 for tensorrt (the engine build_engine makes), "
        "else float32.",
        read_only=True,
        choices=("auto", "float32", "float16", "bfloat16"),
    ),
    ParamSpec(
        "backend",
        "torch",
        "Image encoder backend.",
        read_only=True,
        choices=("torch", "onnxruntime", "tensorrt", "triton"),
    ),
    ParamSpec(
        "triton_url",
        "localhost:8001",
        "backend triton: host:port of the Triton server's gRPC endpoint.",
        read_only=True,
    ),
    ParamSpec(
        "triton_owl_model",
        "owl_image_encoder",
        "backend triton: served model name of the OWL image encoder.",
        read_only=True,
    ),
    ParamSpec(
        "triton_clip_model",
        "clip_image_encoder",
        "backend triton: served model name of the CLIP image encoder.",
        read_only=True,
    ),
    ParamSpec(
        "triton_timeout",
        10.0,
        "backend triton: deadline of each request and start-up check, seconds.",
        read_only=True,
        range=(0.1, 600.0),
    ),
    ParamSpec("triton_ssl", False, "backend triton: TLS to the server.", read_only=True),
    ParamSpec(
        "triton_root_certificates",
        "",
        "backend triton: PEM file of root certificates ('' = gRPC's default roots).",
        read_only=True,
    ),
    ParamSpec(
        "triton_private_key",
        "",
        "backend triton: PEM private key for client-certificate (mutual) TLS.",
        read_only=True,
    ),
    ParamSpec(
        "triton_certificate_chain",
        "",
        "backend triton: PEM certificate chain for client-certificate (mutual) TLS.",
        read_only=True,
    ),
    ParamSpec(
        "triton_headers",
        [],
        "backend triton: request headers as key=value, e.g. 'authorization=Bearer TOKEN'.",
        read_only=True,
        check=_check_headers,
    ),
    ParamSpec(
        "triton_fallback",
        "none",
        "backend triton: 'local' = if the server is down at start, warn and run the encoders "
        "locally with onnxruntime; 'none' = refuse to start.",
        read_only=True,
        choices=("none", "local"),
    ),
    ParamSpec(
        "cache_dir",
        "",
        "Directory for exported ONNX models / TensorRT engines ('' = default cache).",
        read_only=True,
    ),
    ParamSpec(
        "queries_file",
        "",
        "File of reference-image queries ($name labels): loaded at start, saved on register.",
        read_only=True,
    ),
    ParamSpec(
        "image_topics",
        ["image"],
        "Input topics, relative to the node namespace. A name ending in '/compressed' is "
        "subscribed as sensor_msgs/CompressedImage, any other as sensor_msgs/Image.",
        read_only=True,
        check=_check_topics,
    ),
    ParamSpec(
        "camera_names",
        [],
        "Output namespace per image topic (same length). Default: none for one camera; the "
        "topic's namespace for several (e.g. 'front/image_raw' -> 'front').",
        read_only=True,
    ),
    ParamSpec(
        "input_reliability",
        "best_effort",
        "Input QoS reliability; best_effort (SensorDataQoS) also receives from reliable publishers.",
        read_only=True,
        choices=("best_effort", "reliable"),
    ),
    ParamSpec("input_depth", 5, "Input QoS history depth.", read_only=True, range=(1, 100)),
    ParamSpec(
        "publish_annotated",
        True,
        "Publish annotated_image (drawn only while it has subscribers).",
    ),
    ParamSpec(
        "max_rate",
        0.0,
        "Most frames per second processed per camera; 0 = as fast as the model runs.",
        range=(0.0, 1000.0),
    ),
    ParamSpec(
        "no_frame_warning",
        5.0,
        "Seconds without any frame before a warning naming topic and QoS; 0 = never.",
        read_only=True,
        range=(0.0, 3600.0),
    ),
    ParamSpec(
        "diagnostics_period",
        1.0,
        "Seconds between /diagnostics messages.",
        read_only=True,
        range=(0.05, 60.0),
    ),
)
SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMS}


def validate_parameter(name: str, value: Any) -> str | None:
    """The reason a value is rejected, or None; rclpy has already checked type and range."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}; got {value!r}"
    if spec.check is not None:
        reason = spec.check(list(value) if isinstance(value, list | tuple) else value)
        if reason:
            return f"{name}: {reason}"
    return None


def declare_parameters(node) -> None:
    """Declare every parameter with its descriptor (values from --params-file win)."""
    for spec in PARAMS:
        if spec.default == []:
            # rclpy infers BYTE_ARRAY from an empty list: declare the type, then the value.
            node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, spec.descriptor())
            if not spec.read_only and not _is_set(node, spec.name):
                node.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY, [])])
        else:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())


def _is_set(node, name: str) -> bool:
    try:
        node.get_parameter(name).value  # noqa: B018  (raises when uninitialised)
    except ParameterUninitializedException:
        return False
    return True


@dataclass(frozen=True)
class Settings:
    """Typed snapshot of all parameters; fields mirror PARAMS one to one."""

    prompt: str = SPECS["prompt"].default
    threshold: float = 0.1
    label_thresholds: tuple[str, ...] = ()
    scoring: str = "independent"
    nms_iou: float = 0.5
    max_detections: int = 100
    max_regions: int = 8
    model: str = SPECS["model"].default
    clip_model: str = SPECS["clip_model"].default
    device: str = "cpu"
    dtype: str = "auto"
    backend: str = "torch"
    triton_url: str = "localhost:8001"
    triton_owl_model: str = "owl_image_encoder"
    triton_clip_model: str = "clip_image_encoder"
    triton_timeout: float = 10.0
    triton_ssl: bool = False
    triton_root_certificates: str = ""
    triton_private_key: str = ""
    triton_certificate_chain: str = ""
    triton_headers: tuple[str, ...] = ()
    triton_fallback: str = "none"
    cache_dir: str = ""
    queries_file: str = ""
    image_topics: tuple[str, ...] = ("image",)
    camera_names: tuple[str, ...] = ()
    input_reliability: str = "best_effort"
    input_depth: int = 5
    publish_annotated: bool = True
    max_rate: float = 0.0
    no_frame_warning: float = 5.0
    diagnostics_period: float = 1.0

    def updated(self, params: Iterable[Parameter]) -> Settings:
        """A copy with the given (already validated) parameters applied."""
        names = {f.name for f in fields(self)}
        changes = {p.name: _plain(p.value) for p in params if p.name in names}
        return replace(self, **changes)

    def label_threshold_map(self) -> dict[str, float]:
        return parse_label_thresholds(self.label_thresholds)

    def validate(self) -> list[str]:
        """Every reason the current values are not usable (empty when all is well)."""
        reasons = []
        for spec in PARAMS:
            reason = validate_parameter(spec.name, getattr(self, spec.name))
            if reason:
                reasons.append(reason)
        if self.camera_names and len(self.camera_names) != len(self.image_topics):
            reasons.append(
                f"camera_names has {len(self.camera_names)} entries but image_topics has "
                f"{len(self.image_topics)}"
            )
        return reasons


def read_settings(node) -> Settings:
    """Read all declared parameters (an unset string array reads as empty)."""
    values = {}
    for spec in PARAMS:
        value = node.get_parameter(spec.name).value if _is_set(node, spec.name) else []
        values[spec.name] = _plain(value)
    return Settings(**values)


def _plain(value: Any) -> Any:
    """Arrays become tuples without blank items (YAML cannot spell an empty string list)."""
    if isinstance(value, list | tuple):
        return tuple(v for v in value if not (isinstance(v, str) and not v.strip()))
    return value
