"""The websocket protocol between the page and the server: commands in, frames and state out.

Page -> server (text, JSON, at most MAX_MESSAGE_BYTES):
    {"cmd": "set_prompt", "prompt": "[a person [a face]]"}
    {"cmd": "set_threshold", "label": "a face", "value": 0.3}
    {"cmd": "select_camera", "camera": 1}   this page's camera (an index into "cameras")
Server -> page:
    binary: a frame = 4-byte big-endian length of a JSON header, the header, then the JPEG
    text:   {"type": "state", ...}   the current prompt and its detect labels' thresholds
            {"type": "prompt", ...}  the answer to one command (ok, message, column)
            {"type": "error", ...}   a refused message (bad JSON, unknown command, too big)
            {"type": "cameras", "cameras": [...], "selected": i}  with several cameras: at
                                     connect, and as the answer to select_camera
    A frame's header names its camera ("camera": i); "seq" counts that camera's frames.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from ..core.limits import is_fraction

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ProtocolError",
    "SelectCameraCommand",
    "SetPromptCommand",
    "SetThresholdCommand",
    "pack_frame",
    "parse_command",
    "unpack_frame",
]

# A prompt is at most 1000 characters (prompt.py); JSON escaping can grow it ~6x.
MAX_MESSAGE_BYTES = 16 * 1024
_HEADER = struct.Struct(">I")


class ProtocolError(ValueError):
    """A message the server refuses; the text says why, for the page to show."""


@dataclass(frozen=True)
class SetPromptCommand:
    """Replace the prompt (validated and swapped by the PromptControl)."""

    prompt: str


@dataclass(frozen=True)
class SetThresholdCommand:
    """Set one detect label's threshold (a label_thresholds entry)."""

    label: str
    value: float


@dataclass(frozen=True)
class SelectCameraCommand:
    """Show this camera (an index into the server's cameras) to the page that sent it."""

    camera: int


Command = SetPromptCommand | SetThresholdCommand | SelectCameraCommand


def _field(message: dict[str, Any], name: str, kind: type) -> Any:
    value = message.get(name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProtocolError(f"'{name}' must be a {kind.__name__}")
    return value


def _camera(message: dict[str, Any], cameras: int) -> SelectCameraCommand:
    camera = message.get("camera")
    if not isinstance(camera, int) or isinstance(camera, bool):
        raise ProtocolError("'camera' must be an integer (an index into the camera list)")
    if not 0 <= camera < cameras:
        shown = str(camera) if len(str(camera)) <= 20 else str(camera)[:20] + "..."
        raise ProtocolError(f"camera {shown} out of range: there are {cameras}, 0 to {cameras - 1}")
    return SelectCameraCommand(camera)


def parse_command(text: str, cameras: int = 1) -> Command:
    """One page message as a typed command (ProtocolError with the reason otherwise);
    `cameras` is how many the server shows (select_camera's range)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as error:  # ValueError: also a 5000-digit number
        raise ProtocolError(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object with a 'cmd' field")
    cmd = message.get("cmd")
    if cmd == "set_prompt":
        return SetPromptCommand(_field(message, "prompt", str))
    if cmd == "set_threshold":
        label = _field(message, "label", str).strip()
        value = _field(message, "value", float)
        if not label:
            raise ProtocolError("'label' must not be empty")
        if not is_fraction(value):
            raise ProtocolError(f"threshold {value} out of range: use a number from 0 to 1")
        return SetThresholdCommand(label, value)
    if cmd == "select_camera":
        return _camera(message, cameras)
    raise ProtocolError(
        f"unknown command {cmd!r}: use 'set_prompt', 'set_threshold' or 'select_camera'"
    )


def pack_frame(header: dict[str, Any], jpeg: bytes) -> bytes:
    """One binary frame message: length-prefixed JSON header, then the JPEG bytes."""
    meta = json.dumps(header, separators=(",", ":")).encode()
    return _HEADER.pack(len(meta)) + meta + jpeg


def unpack_frame(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(header, jpeg) of a frame message (the page's JavaScript does the same)."""
    (size,) = _HEADER.unpack_from(data)
    start = _HEADER.size
    return json.loads(data[start : start + size]), data[start + size :]
