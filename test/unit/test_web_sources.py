"""serve's frame sources: newest frame only, video decoding and looping, clear open errors."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_web import write_synthetic_video

from ros2_owl.web.sources import (
    SourceError,
    camera_target,
    open_source,
)


def test_video_is_decoded_paced_and_looped(tmp_path):
    video = write_synthetic_video(tmp_path / "clip.mp4", frames=6, fps=12)
    source = open_source(video=str(video), fps=200)
    assert source.fps == 200
    source.start()
    seen = []
    try:
        while len(seen) < 15:
            frame = source.take(timeout=10)
            assert frame is not None, source.error
            seen.append(frame)
    finally:
        source.close()
    assert seen[0].image.shape == (240, 320, 3) and seen[0].image.dtype == np.uint8
    assert seen[-1].index > 6  # past the end of the 6-frame clip: it looped
    assert source.error is None


def test_video_rate_comes_from_the_file(tmp_path):
    video = write_synthetic_video(tmp_path / "clip.mp4", frames=3, fps=12)
    assert open_source(video=str(video)).fps == pytest.approx(12.0)


def test_images_folder_cycles(tmp_path):
    from PIL import Image

    for i, colour in enumerate(((255, 0, 0), (0, 255, 0))):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(images=str(tmp_path), fps=500)
    source.start()
    try:
        colours = set()
        while len(colours) < 2:
            frame = source.take(timeout=10)
            assert frame is not None, source.error
            colours.add(tuple(frame.image[0, 0]))
    finally:
        source.close()
    assert colours == {(255, 0, 0), (0, 255, 0)}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"camera": "97"}, "camera 97: /dev/video97 does not exist"),
        ({"video": "/nonexistent/clip.mp4"}, "video /nonexistent/clip.mp4 does not exist"),
        ({"images": "/nonexistent"}, "image folder /nonexistent does not exist"),
        ({}, "exactly one of"),
        ({"camera": "0", "video": "x"}, "exactly one of"),
        ({"images": "/tmp", "fps": 0.0}, "--fps must be"),
    ],
)
def test_sources_that_cannot_open_say_why_in_one_line(kwargs, message):
    with pytest.raises(SourceError, match=message) as info:
        open_source(**kwargs)
    assert "\n" not in str(info.value)


def test_a_file_that_is_not_a_video(tmp_path):
    bogus = tmp_path / "clip.mp4"
    bogus.write_bytes(b"this is not a video")
    with pytest.raises(SourceError, match="cannot open"):
        open_source(video=str(bogus))


def test_empty_image_folder(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        open_source(images=str(tmp_path))


def test_camera_index_names_the_device():
    import sys

    if sys.platform.startswith("linux"):
        assert camera_target("0") == ("/dev/video0", "v4l2")
        assert camera_target("/dev/video4") == ("/dev/video4", "v4l2")
