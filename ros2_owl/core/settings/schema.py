"""What a setting is (name, type, default, bounds, description, who offers it), the field helper
the per-concern settings classes declare their fields with, and the checks and constants the
settings share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any

from ..limits import is_fraction
from ..prompt_parser import is_blank

DEFAULT_MODEL = "google/owlvit-base-patch32"
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEFAULT_PROMPT = "[a person [a face, a hand] (standing, sitting)]"
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt", "triton")
PRECISIONS = ("fp32", "allow-reduced")
BACKEND_UPGRADES = ("background", "wait")
DTYPES = ("auto", "float32", "float16", "bfloat16")
SCORING_MODES = ("independent", "exclusive")
REGION_RESOLUTIONS = ("native", "adaptive")
SAM_BACKENDS = ("torch", "onnxruntime")
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
    if not is_fraction(value):
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
    if not is_fraction(number):
        raise ValueError(f"label_thresholds item {item!r}: threshold must be in [0, 1]")
    return label, number


def parse_label_thresholds(items: Iterable[str]) -> dict[str, float]:
    """['a person=0.3', ...] -> {label: threshold}; blank items are skipped."""
    return dict(parse_label_threshold(item) for item in items if item.strip())


def format_label_thresholds(thresholds: Mapping[str, float]) -> list[str]:
    """The inverse of parse_label_thresholds, for writing the setting back."""
    return [f"{label}={value:g}" for label, value in thresholds.items()]


def check_prompt(value: str) -> str | None:
    return None if not is_blank(value) else "the prompt must not be empty"


def check_label_thresholds(value: tuple[str, ...]) -> str | None:
    try:
        parse_label_thresholds(value)
    except ValueError as error:
        return str(error)
    return None


def check_headers(value: tuple[str, ...]) -> str | None:
    bad = [v for v in value if "=" not in v or not v.split("=", 1)[0].strip()]
    return f"entries must look like key=value: {bad}" if bad else None


def check_optional_topics(value: tuple[str, ...]) -> str | None:
    return "topic names must not be empty" if any(not t.strip() for t in value) else None


def check_topics(value: tuple[str, ...]) -> str | None:
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


def setting(default: Any, description: str, **options: Any) -> Any:
    """A settings-class field whose metadata makes it a Setting (its name is the field's):
    options are Setting's (live, range, choices, check, constraints, cli)."""
    return field(default=default, metadata={"setting": {"description": description, **options}})


def settings_of(cls: type, frame: bool = False) -> tuple[Setting, ...]:
    """The Settings a settings class declares itself (`frame`: PredictorConfig's fields)."""
    own = [f for f in fields(cls) if f.name in cls.__dict__.get("__annotations__", {})]
    return tuple(_setting(f, frame) for f in own)


def _setting(f: Field, frame: bool) -> Setting:
    return Setting(f.name, f.default, frame=frame, **f.metadata["setting"])
