"""The page's websocket messages: typed commands, refusals with reasons, frame framing."""

from __future__ import annotations

import json

import pytest

from ros2_owl.web.protocol import (
    MAX_MESSAGE_BYTES,
    ProtocolError,
    SelectCameraCommand,
    SetPromptCommand,
    SetThresholdCommand,
    pack_frame,
    parse_command,
    unpack_frame,
)


def test_commands_parse_to_typed_values():
    assert parse_command('{"cmd": "set_prompt", "prompt": "[a cat]"}') == SetPromptCommand(
        "[a cat]"
    )
    assert parse_command('{"cmd": "set_threshold", "label": " a cat ", "value": 1}') == (
        SetThresholdCommand("a cat", 1.0)
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"cmd": "fly"}', "unknown command 'fly'"),
        ("{}", "unknown command None"),
        ('{"cmd": "set_prompt"}', "'prompt' must be a str"),
        ('{"cmd": "set_prompt", "prompt": 5}', "'prompt' must be a str"),
        ('{"cmd": "set_threshold", "label": "a", "value": true}', "'value' must be a float"),
        ('{"cmd": "set_threshold", "label": "a", "value": 1.5}', "out of range"),
        ('{"cmd": "set_threshold", "label": "a", "value": NaN}', "out of range"),
        ('{"cmd": "set_threshold", "label": " ", "value": 0.5}', "must not be empty"),
        ("[" * 100_000, "larger than"),
        ("[" * 5000 + "]" * 5000, "not JSON"),  # nesting past the parser's depth
    ],
)
def test_bad_messages_are_refused_with_the_reason(text, reason):
    with pytest.raises(ProtocolError, match=reason) as info:
        parse_command(text)
    assert "\n" not in str(info.value)


def test_select_camera_is_an_index_in_range():
    assert parse_command('{"cmd": "select_camera", "camera": 2}', cameras=3) == (
        SelectCameraCommand(2)
    )
    assert parse_command('{"cmd": "select_camera", "camera": 0}') == SelectCameraCommand(0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"cmd": "select_camera", "camera": 3}', "camera 3 out of range: there are 3, 0 to 2"),
        ('{"cmd": "select_camera", "camera": -1}', "camera -1 out of range"),
        ('{"cmd": "select_camera"}', "'camera' must be an integer"),
        ('{"cmd": "select_camera", "camera": "1"}', "'camera' must be an integer"),
        ('{"cmd": "select_camera", "camera": 1.0}', "'camera' must be an integer"),
        ('{"cmd": "select_camera", "camera": true}', "'camera' must be an integer"),
        ('{"cmd": "select_camera", "camera": [1]}', "'camera' must be an integer"),
        ('{"cmd": "select_camera", "camera": ' + "9" * 4000 + "}", r"camera 9{20}\.\.\. out of"),
        ('{"cmd": "select_camera", "camera": ' + "9" * 5000 + "}", "not JSON: Exceeds the limit"),
        ('{"cmd": "select_camera", "camera": 1, "x": "' + "y" * MAX_MESSAGE_BYTES + '"}', "larger"),
    ],
)
def test_bad_camera_choices_are_refused_with_the_reason(text, reason):
    with pytest.raises(ProtocolError, match=reason) as info:
        parse_command(text, cameras=3)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_a_number_too_long_for_python_is_refused_not_raised():
    """A 5000-digit number is a ValueError of int(), not a JSONDecodeError: it escaped before."""
    text = '{"cmd": "set_threshold", "label": "a", "value": ' + "1" * 5000 + "}"
    with pytest.raises(ProtocolError, match="not JSON"):
        parse_command(text)


def test_size_limit_counts_bytes_not_characters():
    prompt = "é" * (MAX_MESSAGE_BYTES // 2)  # 2 bytes each in UTF-8
    with pytest.raises(ProtocolError, match="larger than"):
        parse_command(json.dumps({"cmd": "set_prompt", "prompt": prompt}, ensure_ascii=False))


def test_frame_round_trip():
    header = {"seq": 7, "result": {"detections": []}, "label": "ünïcode"}
    data = pack_frame(header, b"\xff\xd8jpeg")
    assert unpack_frame(data) == (header, b"\xff\xd8jpeg")
