"""Every setting at once: `Settings` (one typed snapshot of all the concerns), SETTINGS (their
Setting entries, in the order README's table and the parameters list them) and SCHEMA."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .deployment import ModelSettings, TritonSettings
from .detection import PredictorConfig, PromptSettings
from .node import (
    DepthSettings,
    InputSettings,
    NodeSettings,
    OutputSettings,
    RobotSettings,
    TrackingSettings,
    WebSettings,
)
from .schema import Setting, parse_label_thresholds, settings_of

__all__ = ["SCHEMA", "SETTINGS", "Settings", "require_setting", "setting_problem", "settings_from"]

SETTINGS: tuple[Setting, ...] = (
    settings_of(PromptSettings)
    + settings_of(PredictorConfig, frame=True)
    + settings_of(NodeSettings)
    + settings_of(ModelSettings)
    + settings_of(TritonSettings)
    + settings_of(InputSettings)
    + settings_of(OutputSettings)
    + settings_of(WebSettings)
    + settings_of(TrackingSettings)
    + settings_of(DepthSettings)
    + settings_of(RobotSettings)
)
SCHEMA: dict[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings(
    RobotSettings,
    DepthSettings,
    TrackingSettings,
    WebSettings,
    OutputSettings,
    InputSettings,
    TritonSettings,
    ModelSettings,
    NodeSettings,
    PredictorConfig,
    PromptSettings,
):
    """A typed snapshot of every setting (the node's parameters, the `ros2-owl` options)."""

    def __post_init__(self) -> None:
        """Unchecked on purpose: `validate` names every refused value at once."""

    def updated(self, changes: Iterable[Any]) -> Settings:
        """A copy with (name, value) pairs, or objects with .name/.value, applied (unknown skipped)."""
        pairs = ((c.name, c.value) if hasattr(c, "name") else c for c in changes)
        return replace(self, **{name: _plain(value) for name, value in pairs if name in SCHEMA})

    def validate(self) -> list[str]:
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

    def predictor_config(self) -> PredictorConfig:
        """The PredictorConfig these settings give."""
        return PredictorConfig(**{s.name: getattr(self, s.name) for s in SETTINGS if s.frame})

    def label_threshold_map(self) -> dict[str, float]:
        return parse_label_thresholds(self.label_thresholds)


def setting_problem(name: str, value: Any) -> str | None:
    """Why `value` is refused for setting `name` (None when fine or when `name` is unknown)."""
    setting = SCHEMA.get(name)
    return None if setting is None else setting.problem(value)


def require_setting(name: str, value: Any) -> None:
    """ValueError with the reason when `value` is refused for setting `name` (its one bound)."""
    reason = SCHEMA[name].problem(value)
    if reason:
        raise ValueError(reason)


def _plain(value: Any) -> Any:
    """Lists become tuples without blank items (YAML cannot spell an empty string list)."""
    if isinstance(value, list | tuple):
        return tuple(v for v in value if not (isinstance(v, str) and not v.strip()))
    return value


def settings_from(values: Mapping[str, Any]) -> Settings:
    """Settings from a name -> value mapping (lists become tuples; missing names keep defaults)."""
    return Settings(**{k: _plain(v) for k, v in values.items() if k in SCHEMA})
