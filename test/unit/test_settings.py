"""settings: one schema drives PredictorConfig, the node's Settings, config/owl.yaml and README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ros2_owl.core.settings import (
    SCHEMA,
    SETTINGS,
    PredictorConfig,
    Settings,
    check_fraction,
    parse_label_thresholds,
    setting_problem,
)

REPO = Path(__file__).resolve().parents[2]
TYPE_NAMES = {bool: "bool", int: "int", float: "double", str: "string", tuple: "string[]"}


def readme_value(value) -> str:
    """How README's parameter table writes a default."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, str):
        return f"`{value}`" if value else "''"
    return repr(value)


def readme_rows() -> dict[str, list[str]]:
    text = (REPO / "README.md").read_text()
    table = text.split("### Parameters", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    cells = [[c.strip() for c in row.strip("|").split(" | ")] for row in rows]
    return {c[0].strip("`"): c for c in cells}


def test_owl_yaml_lists_exactly_the_settings_with_their_defaults():
    doc = yaml.safe_load((REPO / "config" / "owl.yaml").read_text())
    values = doc["/**"]["ros__parameters"]
    assert sorted(values) == sorted(s.name for s in SETTINGS)
    for setting in SETTINGS:
        value = values[setting.name]
        expected = list(setting.default) if setting.type is tuple else setting.default
        assert value == expected and type(value) is type(expected), setting.name


def test_readme_table_lists_exactly_the_settings_with_their_defaults():
    rows = readme_rows()
    assert list(rows) == [s.name for s in SETTINGS]
    for setting in SETTINGS:
        name, kind, default, change, option = rows[setting.name][:5]
        assert kind == TYPE_NAMES[setting.type], setting.name
        assert default == readme_value(setting.default), setting.name
        assert change == ("live" if setting.live else "configure"), setting.name
        assert option == (f"`{setting.flag}`" if setting.flag else ""), setting.name


def test_predictor_config_is_the_frame_settings_and_validates_by_the_schema():
    frame = [s.name for s in SETTINGS if s.frame]
    config = PredictorConfig()
    assert [f for f in config.__dataclass_fields__] == frame
    assert all(getattr(config, n) == SCHEMA[n].default for n in frame)
    assert PredictorConfig(nms_iou=None).nms_iou == 0.0  # None and 0 both mean NMS off
    for name, bad in [("threshold", 1.5), ("max_detections", 0), ("scoring", "best")]:
        with pytest.raises(ValueError, match=name):
            PredictorConfig(**{name: bad})
    assert Settings().predictor_config() == config


def test_one_fraction_check_and_one_label_threshold_parser():
    assert check_fraction(1, "t") == 1.0
    for bad in (1.5, -0.1, float("nan"), True, "0.3"):
        with pytest.raises(ValueError, match=r"t must be a number in \[0, 1\]"):
            check_fraction(bad, "t")
    assert parse_label_thresholds(["a=b=0.25", " ", "x = 1"]) == {"a=b": 0.25, "x": 1.0}
    assert "threshold must be in [0, 1]" in setting_problem("label_thresholds", ("a=2",))
    assert setting_problem("unknown", 1) is None


def test_settings_updates_and_cross_checks():
    s = Settings().updated([("threshold", 0.3), ("image_topics", ["x", ""])])
    assert s.threshold == 0.3 and s.image_topics == ("x",)
    assert Settings(camera_names=("a",)).validate() == []
    assert Settings(camera_names=("a", "b")).validate() == [
        "camera_names has 2 entries but image_topics has 1"
    ]
    assert Settings(scoring="best", input_depth=0).validate() == [
        "scoring must be one of independent, exclusive; got 'best'",
        "input_depth must be in [1, 100]; got 0",
    ]


def test_every_cli_flag_is_unique_and_well_formed():
    flags = [s.flag for s in SETTINGS if s.flag]
    assert len(flags) == len(set(flags))
    assert all(re.fullmatch(r"--[a-z][a-z-]*", f) for f in flags)
