"""Every setting of ros2_owl, defined once: name, type, default, range or choices, description.

Each concern is a typed frozen dataclass whose fields carry their Setting as metadata:
PromptSettings and PredictorConfig (detection.py: what to look for; the per-frame predictor
settings), ModelSettings and TritonSettings (deployment.py), and the node's NodeSettings,
InputSettings, OutputSettings, WebSettings, TrackingSettings, DepthSettings (node.py).
`Settings` (catalogue.py) is all of them in one snapshot (import a concern's class from its
module); SETTINGS lists their Setting entries,
from which the ROS parameter descriptors (ros/params.py) and the `ros2-owl` options
(cli/options.py) follow; test_settings.py checks that config/owl.yaml and README's parameter
table list exactly these settings with these defaults.

To add a setting, add one field to its concern's class, `name: type = setting(default, "what",
...)`, with Setting's options (schema.py):
  - `live=False` makes it a configure setting: owl_node takes a change only while it is
    unconfigured (ros2 lifecycle set ... cleanup; it is read at configure);
  - `range=(lo, hi)` or `choices=(...)` bound it; `check` adds a rule that returns the reason
    a value is refused (or None);
  - `cli="--flag"` (or `cli=True` for `--name-with-dashes`) makes it a `ros2-owl` option;
a field of PredictorConfig is a per-frame predictor setting. Then add its line to
config/owl.yaml and README's parameter table (test_settings.py says what is missing) and read
it where it is used: `settings.<name>` / `config.<name>`.
"""

from .catalogue import SCHEMA, SETTINGS, Settings, require_setting, setting_problem, settings_from
from .detection import PredictorConfig
from .schema import (
    BACKEND_UPGRADES,
    BACKENDS,
    DEFAULT_CLIP,
    DEFAULT_MODEL,
    DEFAULT_PROMPT,
    DTYPES,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    PRECISIONS,
    REGION_RESOLUTIONS,
    SCORING_MODES,
    TRITON_CLIP_MODEL,
    TRITON_FALLBACKS,
    TRITON_OWL_MODEL,
    Setting,
    check_fraction,
    format_label_thresholds,
    parse_label_threshold,
    parse_label_thresholds,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_CLIP",
    "DEFAULT_MODEL",
    "DEFAULT_PROMPT",
    "DTYPES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "PRECISIONS",
    "BACKEND_UPGRADES",
    "REGION_RESOLUTIONS",
    "SCHEMA",
    "SCORING_MODES",
    "SETTINGS",
    "TRITON_CLIP_MODEL",
    "TRITON_FALLBACKS",
    "TRITON_OWL_MODEL",
    "PredictorConfig",
    "Setting",
    "Settings",
    "check_fraction",
    "format_label_thresholds",
    "parse_label_threshold",
    "parse_label_thresholds",
    "require_setting",
    "setting_problem",
    "settings_from",
]
