"""Every setting of ros2_owl, defined once: name, type, default, range or choices, description.

Everything else follows from SETTINGS: `PredictorConfig` (the per-frame settings, validated
here), `Settings` (all of them: the node's typed snapshot), the ROS parameter descriptors
(ros/params.py), the `ros2-owl` options (cli.py); test_settings.py checks that config/owl.yaml
and README's parameter table list exactly these settings with these defaults.

To add a setting, append one `Setting(...)` to SETTINGS:
  - its type is the type of `default` (bool, int, float, str, or a tuple of str for a list);
  - `live=False` makes it a configure setting: owl_node takes a change only while it is
    unconfigured (ros2 lifecycle set ... cleanup; it is read at configure);
  - `range=(lo, hi)` or `choices=(...)` bound it; `check` adds a rule that returns the reason
    a value is refused (or None);
  - `frame=True` puts it into PredictorConfig (a per-frame predictor setting);
  - `cli="--flag"` (or `cli=True` for `--name-with-dashes`) makes it a `ros2-owl` option;
then add its line to config/owl.yaml and README's parameter table (test_settings.py says
what is missing) and read it where it is used: `settings.<name>` / `config.<name>`.
The module is about 600 lines because SETTINGS is the table itself, one entry per setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, make_dataclass, replace
from numbers import Real
from typing import Any

from .prompt_parser import is_blank

DEFAULT_MODEL = "google/owlvit-base-patch32"
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEFAULT_PROMPT = "[a person [a face, a hand] (standing, sitting)]"
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt", "triton")
PRECISIONS = ("fp32", "allow-reduced")
BACKEND_UPGRADES = ("background", "wait")
DTYPES = ("auto", "float32", "float16", "bfloat16")
SCORING_MODES = ("independent", "exclusive")
REGION_RESOLUTIONS = ("native", "adaptive")
# backend "triton": the served model names `build-engine --triton-repo` writes
TRITON_OWL_MODEL = "owl_image_encoder"
TRITON_CLIP_MODEL = "clip_image_encoder"
TRITON_FALLBACKS = ("none", "local")

# Input image limits (one definition for the predictor's input check): the model sees at most
# ~1000 px, so anything larger is a mistake or an attack on the robot's memory.
MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = 40_000_000  # 8K UHD (7680x4320 = 33.2 MP) fits


def check_fraction(value: Any, what: str) -> float:
    """Thresholds and IoUs are fractions: a real number in [0, 1] (ValueError naming `what`)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or math.isnan(value)
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value) + 0.0


def parse_label_threshold(item: str) -> tuple[str, float]:
    """'a person=0.3' -> ('a person', 0.3); the last '=' splits (ValueError with the item)."""
    label, sep, value = item.rpartition("=")
    label = label.strip()
    if not sep or is_blank(label):  # invisible characters only: no label anyone can write
        raise ValueError(f"label_thresholds item {item!r} is not 'label=value'")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(
            f"label_thresholds item {item!r}: {value.strip()!r} is not a number"
        ) from None
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise ValueError(f"label_thresholds item {item!r}: threshold must be in [0, 1]")
    return label, number


def parse_label_thresholds(items: Iterable[str]) -> dict[str, float]:
    """['a person=0.3', ...] -> {label: threshold}; blank items are skipped."""
    return dict(parse_label_threshold(item) for item in items if item.strip())


def format_label_thresholds(thresholds: Mapping[str, float]) -> list[str]:
    """The inverse of parse_label_thresholds, for writing the setting back."""
    return [f"{label}={value:g}" for label, value in thresholds.items()]


def _check_prompt(value: str) -> str | None:
    return None if not is_blank(value) else "the prompt must not be empty"


def _check_label_thresholds(value: tuple[str, ...]) -> str | None:
    try:
        parse_label_thresholds(value)
    except ValueError as error:
        return str(error)
    return None


def _check_headers(value: tuple[str, ...]) -> str | None:
    bad = [v for v in value if "=" not in v or not v.split("=", 1)[0].strip()]
    return f"entries must look like key=value: {bad}" if bad else None


def _check_optional_topics(value: tuple[str, ...]) -> str | None:
    return "topic names must not be empty" if any(not t.strip() for t in value) else None


def _check_topics(value: tuple[str, ...]) -> str | None:
    if not value:
        return "at least one image topic is needed"
    if any(not t.strip() for t in value):
        return "image topic names must not be empty"
    if len(set(value)) != len(value):
        return "image topics must be distinct"
    return None


@dataclass(frozen=True)
class Setting:
    """One setting; see the module docstring for what each field drives."""

    name: str
    default: Any
    description: str
    live: bool = True
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None
    constraints: str = ""  # extra words for people (ROS additional_constraints, README)
    frame: bool = False
    cli: str | bool = False

    @property
    def type(self) -> type:
        """bool, int, float, str or tuple (a list of strings)."""
        return type(self.default)

    @property
    def flag(self) -> str | None:
        """The `ros2-owl` option, or None when the CLI does not offer this setting."""
        if self.cli is True:
            return "--" + self.name.replace("_", "-")
        return self.cli or None

    def problem(self, value: Any) -> str | None:
        """Why `value` is refused (type, range, choices, rule), or None when it is fine."""
        expected = self.type
        ok_type = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok_type = True
        if expected is tuple and isinstance(value, list):
            ok_type = True
        if not ok_type:
            return f"{self.name} must be a {expected.__name__}, got {value!r}"
        if self.range is not None:
            lo, hi = self.range
            if not lo <= value <= hi:
                return f"{self.name} must be in [{lo:g}, {hi:g}]; got {value!r}"
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}"
        if self.check is not None:
            reason = self.check(tuple(value) if isinstance(value, list) else value)
            if reason:
                return f"{self.name}: {reason}"
        return None


SETTINGS: tuple[Setting, ...] = (
    # --- what to look for (live) -------------------------------------------------------------
    Setting(
        "prompt",
        DEFAULT_PROMPT,
        "Tree prompt, e.g. '[a person [a face] (standing, sitting)]'.",
        check=_check_prompt,
        constraints="tree prompt syntax; `label@0.3` sets a per-label threshold",
    ),
    Setting(
        "threshold",
        0.1,
        "Default detection score threshold for labels without their own.",
        range=(0.0, 1.0),
        frame=True,
        cli=True,
    ),
    Setting(
        "label_thresholds",
        (),
        "Per-label detection thresholds as 'label=value' items, e.g. ['a face=0.3'].",
        check=_check_label_thresholds,
        constraints="items 'label=value' with value in [0, 1]; `label@v` in the prompt wins",
        cli="--label-threshold",
    ),
    Setting(
        "scoring",
        "independent",
        "Detection scoring: 'independent' judges every (box, label) pair on its own; "
        "'exclusive' keeps only each box's best label of its group (NanoOWL's behaviour).",
        choices=SCORING_MODES,
        frame=True,
        cli=True,
    ),
    Setting(
        "nms_iou",
        0.5,
        "IoU of per-label non-maximum suppression; 0 turns it off.",
        range=(0.0, 1.0),
        frame=True,
        cli=True,
    ),
    Setting(
        "max_detections",
        100,
        "Most detections per frame, all levels together.",
        range=(1, 10000),
        frame=True,
        cli=True,
    ),
    Setting(
        "max_regions",
        8,
        "Most regions a nested level runs on per frame.",
        range=(0, 1024),
        frame=True,
        cli=True,
    ),
    Setting(
        "region_resolution",
        "native",
        "Input size of nested regions: 'native' (the model's size) or 'adaptive' (the smallest "
        "bucket covering the region's longer side; see README).",
        choices=REGION_RESOLUTIONS,
        frame=True,
        cli=True,
    ),
    # --- the managed node ----------------------------------------------------------------------
    Setting(
        "autostart",
        True,
        "Configure and activate at start (as a plain node); false: wait, unconfigured, for a "
        "lifecycle manager or `ros2 lifecycle set`. Read at process start only.",
        live=False,
    ),
    # --- models (configure) --------------------------------------------------------------------
    Setting(
        "model",
        DEFAULT_MODEL,
        "OWL-ViT / OWLv2 hub id or local directory (loaded at configure).",
        live=False,
        cli=True,
    ),
    Setting(
        "clip_model",
        DEFAULT_CLIP,
        "CLIP hub id or local directory for classify groups ('' = none; loaded at configure).",
        live=False,
        cli=True,
    ),
    Setting("device", "cpu", "Torch device, e.g. 'cpu' or 'cuda:0'.", live=False, cli=True),
    Setting(
        "dtype",
        "auto",
        "Image-encoder precision; 'auto' = float16 for tensorrt (the engine build_engine makes), "
        "else float32.",
        live=False,
        choices=DTYPES,
        cli=True,
    ),
    Setting(
        "backend",
        "auto",
        "Image encoder backend; 'auto' = the fastest local one for this machine (measured once, "
        "cached); 'triton' = a shared inference server (explicit only, auto never picks it).",
        live=False,
        choices=BACKENDS,
        cli=True,
    ),
    Setting(
        "precision",
        "fp32",
        "'allow-reduced' lets backend auto choose bfloat16 or int8 on CPU (never otherwise).",
        live=False,
        choices=PRECISIONS,
        cli=True,
    ),
    Setting(
        "backend_upgrade",
        "background",
        "backend auto on a CPU with no cached decision: 'background' = serve with torch at "
        "once, measure and swap in the winner between frames; 'wait' = measure before serving.",
        live=False,
        choices=BACKEND_UPGRADES,
        cli=True,
    ),
    # --- backend triton: a shared inference server (configure) ---------------------------------
    Setting(
        "triton_url",
        "localhost:8001",
        "backend triton: host:port of the Triton server's gRPC endpoint.",
        live=False,
        cli=True,
    ),
    Setting(
        "triton_owl_model",
        TRITON_OWL_MODEL,
        "backend triton: served model name of the OWL image encoder.",
        live=False,
        cli=True,
    ),
    Setting(
        "triton_clip_model",
        TRITON_CLIP_MODEL,
        "backend triton: served model name of the CLIP image encoder.",
        live=False,
        cli=True,
    ),
    Setting(
        "triton_timeout",
        10.0,
        "backend triton: deadline of each request and of the start-up checks, seconds.",
        live=False,
        range=(0.1, 600.0),
        cli=True,
    ),
    Setting("triton_ssl", False, "backend triton: TLS to the server.", live=False, cli=True),
    Setting(
        "triton_root_certificates",
        "",
        "backend triton: PEM file of root certificates ('' = gRPC's default roots).",
        live=False,
        cli=True,
    ),
    Setting(
        "triton_private_key",
        "",
        "backend triton: PEM private key for client-certificate (mutual) TLS.",
        live=False,
        cli=True,
    ),
    Setting(
        "triton_certificate_chain",
        "",
        "backend triton: PEM certificate chain for client-certificate (mutual) TLS.",
        live=False,
        cli=True,
    ),
    Setting(
        "triton_headers",
        (),
        "backend triton: request headers as key=value, e.g. 'authorization=Bearer TOKEN'.",
        live=False,
        check=_check_headers,
        cli="--triton-header",
    ),
    Setting(
        "triton_fallback",
        "none",
        "backend triton: 'local' = if the server is down at start, warn and run the encoders "
        "locally with onnxruntime; 'none' = refuse to start.",
        live=False,
        choices=TRITON_FALLBACKS,
        cli=True,
    ),
    Setting(
        "cache_dir",
        "",
        "Directory for exported ONNX models / TensorRT engines ('' = default cache).",
        live=False,
        cli=True,
    ),
    Setting(
        "queries_file",
        "",
        "File of reference-image queries ($name labels): loaded at start, saved on register.",
        live=False,
        cli="--queries",
    ),
    # --- inputs (configure) --------------------------------------------------------------------
    Setting(
        "image_topics",
        ("image",),
        "Input topics, relative to the node namespace. A name ending in '/compressed' is "
        "subscribed as sensor_msgs/CompressedImage, any other as sensor_msgs/Image.",
        live=False,
        check=_check_topics,
    ),
    Setting(
        "camera_names",
        (),
        "Output namespace per image topic (same length). Default: none for one camera; the "
        "topic's namespace for several (e.g. 'front/image_raw' -> 'front').",
        live=False,
    ),
    Setting(
        "input_reliability",
        "best_effort",
        "Input QoS reliability; best_effort (SensorDataQoS) also receives from reliable publishers.",
        live=False,
        choices=("best_effort", "reliable"),
    ),
    Setting("input_depth", 5, "Input QoS history depth.", live=False, range=(1, 100)),
    # --- outputs --------------------------------------------------------------------------------
    Setting(
        "publish_annotated",
        True,
        "Publish annotated_image (drawn only while it has subscribers).",
    ),
    Setting(
        "max_rate",
        0.0,
        "Most frames per second processed per camera; 0 = as fast as the model runs.",
        range=(0.0, 1000.0),
    ),
    Setting(
        "no_frame_warning",
        5.0,
        "Seconds without any frame before a warning naming topic and QoS; 0 = never.",
        live=False,
        range=(0.0, 3600.0),
    ),
    Setting(
        "diagnostics_period",
        1.0,
        "Seconds between /diagnostics messages.",
        live=False,
        range=(0.05, 60.0),
    ),
    # --- the live page (configure; `ros2-owl serve` has its own --port/--host/--max-viewers) ----
    Setting(
        "web_port",
        0,
        "Port of the live page (stream, tree, prompt box) served by the node; 0 = off.",
        live=False,
        range=(0, 65535),
    ),
    Setting(
        "web_host",
        "127.0.0.1",
        "Address the live page binds; 0.0.0.0 makes it reachable from the network (then set "
        "ROS2_OWL_WEB_TOKEN in the node's environment to require a token).",
        live=False,
    ),
    Setting(
        "web_camera",
        "",
        "Camera a live page starts on (with several, each page can switch): '' = the first, "
        "else its index, name or topic.",
        live=False,
    ),
    Setting("web_max_viewers", 4, "Most pages open at once.", live=False, range=(1, 100)),
    # --- track ids across frames (ros2_owl/tracking.py) -----------------------------------------
    Setting(
        "tracking",
        False,
        "Track ids across frames for every detection, root and nested (Detection2D.id, the "
        "tree's track_id, '#id' on the annotated image).",
        live=False,
        cli="--track",
    ),
    Setting(
        "track_max_missed_frames",
        30,
        "Frames a lost track waits for its object before its id ends.",
        live=False,
        range=(0, 10000),
        cli="--track-max-missed",
    ),
    Setting(
        "classification_smoothing",
        0.0,
        "Running-mean weight of a track's past classify scores (s = a*s_prev + (1-a)*score), "
        "shown on the annotated image; 0 = off. Messages keep the raw scores.",
        live=False,
        range=(0.0, 0.99),
        cli=True,
    ),
    # --- 3D from depth (ros2_owl/depth.py) ------------------------------------------------------
    Setting(
        "depth_topics",
        (),
        "Depth images registered to the colour cameras (16UC1 mm or 32FC1 m), one per image "
        "topic; 3D boxes go to detections_3d. [] = no 3D.",
        live=False,
        check=_check_optional_topics,
    ),
    Setting(
        "camera_info_topics",
        (),
        "CameraInfo of each colour camera, one per image topic; [] = 'camera_info' beside each "
        "image topic (cam/image_raw -> cam/camera_info).",
        live=False,
        check=_check_optional_topics,
    ),
    Setting(
        "depth_tolerance",
        0.05,
        "Seconds a depth frame may be older than the colour frame it is paired with.",
        live=False,
        range=(0.0, 10.0),
    ),
)
SCHEMA: dict[str, Setting] = {s.name: s for s in SETTINGS}


def setting_problem(name: str, value: Any) -> str | None:
    """Why `value` is refused for setting `name` (None when fine or when `name` is unknown)."""
    setting = SCHEMA.get(name)
    return None if setting is None else setting.problem(value)


def _plain(value: Any) -> Any:
    """Lists become tuples without blank items (YAML cannot spell an empty string list)."""
    if isinstance(value, list | tuple):
        return tuple(v for v in value if not (isinstance(v, str) and not v.strip()))
    return value


def _validate_frame(self) -> None:
    """PredictorConfig's check: every field against its Setting (nms_iou None means 0 = off)."""
    if self.nms_iou is None:
        object.__setattr__(self, "nms_iou", 0.0)
    for f in fields(self):
        reason = SCHEMA[f.name].problem(getattr(self, f.name))
        if reason:
            raise ValueError(reason)


def _field(setting: Setting) -> tuple[str, type, Any]:
    from dataclasses import field

    return (setting.name, setting.type, field(default=setting.default))


PredictorConfig = make_dataclass(
    "PredictorConfig",
    [_field(s) for s in SETTINGS if s.frame],
    frozen=True,
    namespace={
        "__doc__": "Per-frame predictor settings (the SETTINGS with frame=True), validated.",
        "__post_init__": _validate_frame,
        "__module__": __name__,
    },
)


def _updated(self, changes: Iterable[Any]) -> Any:
    """A copy with (name, value) pairs, or objects with .name/.value, applied (unknown skipped)."""
    pairs = ((c.name, c.value) if hasattr(c, "name") else c for c in changes)
    return replace(self, **{name: _plain(value) for name, value in pairs if name in SCHEMA})


def _validate_all(self) -> list[str]:
    """Every reason the current values are not usable (empty when all is well)."""
    reasons = [r for s in SETTINGS if (r := s.problem(getattr(self, s.name)))]
    for name in ("camera_names", "depth_topics", "camera_info_topics"):  # one per image topic
        value = getattr(self, name)
        if value and len(value) != len(self.image_topics):
            reasons.append(
                f"{name} has {len(value)} entries but image_topics has {len(self.image_topics)}"
            )
    if self.camera_info_topics and not self.depth_topics:
        reasons.append("camera_info_topics is only used with depth_topics")
    return reasons


def _predictor_config(self) -> Any:
    """The PredictorConfig these settings give."""
    return PredictorConfig(**{s.name: getattr(self, s.name) for s in SETTINGS if s.frame})


def _label_threshold_map(self) -> dict[str, float]:
    return parse_label_thresholds(self.label_thresholds)


Settings = make_dataclass(
    "Settings",
    [_field(s) for s in SETTINGS],
    frozen=True,
    namespace={
        "__doc__": "A typed snapshot of every setting (fields = SETTINGS, in order).",
        "__module__": __name__,
        "updated": _updated,
        "validate": _validate_all,
        "predictor_config": _predictor_config,
        "label_threshold_map": _label_threshold_map,
    },
)


def settings_from(values: Mapping[str, Any]) -> Any:
    """Settings from a name -> value mapping (lists become tuples; missing names keep defaults)."""
    return Settings(**{k: _plain(v) for k, v in values.items() if k in SCHEMA})


__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "DTYPES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "SCHEMA",
    "SCORING_MODES",
    "TRITON_CLIP_MODEL",
    "TRITON_FALLBACKS",
    "TRITON_OWL_MODEL",
    "SETTINGS",
    "PredictorConfig",
    "Setting",
    "Settings",
    "check_fraction",
    "format_label_thresholds",
    "parse_label_thresholds",
    "setting_problem",
    "settings_from",
]
