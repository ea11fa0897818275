"""The model and setting options `detect`, `demo`, `serve`, `bag` and `video` share, and the
Settings they give (each option is a Setting of core/settings/)."""

from __future__ import annotations

import argparse

from ..core.settings import SETTINGS, Setting, settings_from

__all__ = ["DEMO_PROMPT", "add_model_args", "add_setting_options", "settings_of"]

DEMO_PROMPT = "[a person [a face], a cat (sleeping, awake), a cup]"  # demo and serve


def _value_type(setting: Setting):
    """argparse type for one setting: convert, then the schema's own check."""
    convert = str if setting.type is tuple else setting.type

    def parse(text: str):
        value = convert(text)
        reason = setting.problem((value,) if setting.type is tuple else value)
        if reason:
            raise argparse.ArgumentTypeError(reason)
        return value

    parse.__name__ = setting.name  # argparse names the type in its error
    return parse


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One option per setting that has a `cli` flag, typed, checked and documented by SETTINGS."""
    for setting in SETTINGS:
        if not setting.flag:
            continue
        kwargs = dict(dest=setting.name, type=_value_type(setting), help=setting.description)
        if setting.type is bool:  # a switch that turns the setting on
            parser.add_argument(
                setting.flag, dest=setting.name, action="store_true", help=setting.description
            )
            continue
        if setting.type is tuple:  # repeatable
            kwargs.update(action="append", default=[], metavar=setting.name.upper())
        else:
            kwargs.update(default=setting.default, choices=setting.choices or None)
        parser.add_argument(setting.flag, **kwargs)


def add_model_args(p: argparse.ArgumentParser, outputs: bool = True) -> None:
    p.add_argument("--prompt", help="tree prompt, e.g. '[a person [a face] (standing, sitting)]'")
    add_setting_options(p)
    p.add_argument("--no-clip", action="store_true", help="no CLIP (= --clip-model '')")
    p.add_argument("--no-nms", action="store_true", help="turn NMS off (= --nms-iou 0)")
    if not outputs:  # serve shows results in its page; bag and video write their own files
        return
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--annotate", metavar="DIR", help="write annotated images into DIR")


def settings_of(args):
    """The Settings these options give (--no-clip and --no-nms are spellings of '' and 0)."""
    values = dict(vars(args))
    if args.no_clip:
        values["clip_model"] = ""
    if args.no_nms:
        values["nms_iou"] = 0.0
    return settings_from(values)
