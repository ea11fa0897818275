"""OwlNode parameters: ROS descriptors, declaration and reading, all derived from SETTINGS.

Every parameter is a Setting of ros2_owl/core/settings/ (its one definition); this module only
translates: type -> ParameterType, range -> Floating/IntegerRange, live=False -> a constraint
text (the lifecycle node refuses those changes unless unconfigured, with the reason).
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from ros2_owl.core.settings import (
    SETTINGS,
    Setting,
    Settings,
    format_label_thresholds,
    parse_label_thresholds,
    setting_problem,
    settings_from,
)

__all__ = [
    "PARAMS",
    "Settings",
    "declare_parameters",
    "descriptor",
    "format_label_thresholds",
    "parameter_type",
    "parse_label_thresholds",
    "read_settings",
    "validate_parameter",
]

PARAMS: tuple[Setting, ...] = SETTINGS
_CONFIGURE_ONLY = "changes only while the node is unconfigured (read at configure)"

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    tuple: ParameterType.PARAMETER_STRING_ARRAY,  # every list setting holds strings
}


def parameter_type(setting: Setting) -> int:
    """The ROS ParameterType of a setting."""
    return _TYPES[setting.type]


def descriptor(setting: Setting) -> ParameterDescriptor:
    """The ROS descriptor; rclpy itself then enforces type and range (the node, the state)."""
    text = setting.constraints
    if not setting.live:
        text = (text + "; " if text else "") + _CONFIGURE_ONLY
    if setting.choices:
        text = (text + "; " if text else "") + "one of: " + ", ".join(setting.choices)
    d = ParameterDescriptor(
        name=setting.name,
        type=parameter_type(setting),
        description=setting.description,
        additional_constraints=text,
    )
    if setting.range is not None and setting.type is float:
        lo, hi = setting.range
        d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    elif setting.range is not None and setting.type is int:
        lo, hi = setting.range
        d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
    return d


def validate_parameter(name: str, value: Any) -> str | None:
    """The reason a value is rejected, or None (unknown names are not ours to judge)."""
    return setting_problem(name, value)


def declare_parameters(node) -> None:
    """Declare every parameter with its descriptor (values from --params-file win)."""
    for setting in SETTINGS:
        if setting.default == ():
            # rclpy infers BYTE_ARRAY from an empty list: declare the type, then set the value
            # (an unset one empties `ros2 param dump`)
            node.declare_parameter(setting.name, Parameter.Type.STRING_ARRAY, descriptor(setting))
            if not _is_set(node, setting.name):
                node.set_parameters([Parameter(setting.name, Parameter.Type.STRING_ARRAY, [])])
        else:
            default = list(setting.default) if setting.type is tuple else setting.default
            node.declare_parameter(setting.name, default, descriptor(setting))


def _is_set(node, name: str) -> bool:
    try:
        node.get_parameter(name).value  # noqa: B018  (raises when uninitialised)
    except ParameterUninitializedException:
        return False
    return True


def read_settings(node) -> Settings:
    """Read all declared parameters (an unset string array reads as empty)."""
    return settings_from(
        {
            s.name: node.get_parameter(s.name).value if _is_set(node, s.name) else []
            for s in SETTINGS
        }
    )
