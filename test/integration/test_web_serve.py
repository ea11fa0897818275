"""`ros2-owl serve` end to end (a real process, a real websocket client) and its one-line
errors; plus the serve loop's numbers."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import aiohttp
import pytest
from fixtures_web import sample_frames, write_synthetic_video

from ros2_owl.web.protocol import unpack_frame

TIMEOUT = 120.0  # model loading on a loaded 2-core machine; waits end on their event


def _serve(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ros2_owl.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--camera", "97"], "error: camera 97: /dev/video97 does not exist (no such camera)"),
        (["--video", "/nonexistent.mp4"], "error: video /nonexistent.mp4 does not exist"),
        (["--images", "/nonexistent"], "error: image folder /nonexistent does not exist"),
    ],
)
def test_missing_source_is_one_line(args, message):
    process = _serve(*args)
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 1
    assert err.strip() == message, err


def test_source_is_required():
    process = _serve()
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 2 and "one of the arguments --camera --video --images" in err


def test_serve_streams_frames_and_takes_prompts(tmp_path, tiny_owlvit_dir, tiny_clip_dir):
    video = write_synthetic_video(tmp_path / "clip.mp4")
    models = ["--model", str(tiny_owlvit_dir), "--clip-model", str(tiny_clip_dir)]
    process = _serve(
        "--video", str(video), *models, "--port", "0", "--token", "abc", "--threshold", "0",
        "--prompt", "[a cat, a dog]",
    )  # fmt: skip
    try:
        line = ""
        while not line.startswith("serving "):
            line = process.stdout.readline()
            assert line, process.stderr.read()
        url = line.split()[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/?token=abc")
        assert "reachable from the network" not in line

        async def client():
            ws_url = url.replace("http://", "ws://").replace("/?", "/ws?")
            frames, answer = [], None
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(ws_url) as ws:
                    while len(frames) < 6 or answer is None:
                        msg = await ws.receive(timeout=TIMEOUT)
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            header, jpeg = unpack_frame(msg.data)
                            assert jpeg[:2] == b"\xff\xd8"
                            frames.append(header)
                            if len(frames) == 3:
                                prompt = {"cmd": "set_prompt", "prompt": "[a bird]"}
                                await ws.send_str(json.dumps(prompt))
                        elif json.loads(msg.data)["type"] == "prompt":
                            answer = json.loads(msg.data)
            return frames, answer

        frames, answer = asyncio.run(client())
        assert answer["ok"] and answer["state"]["prompt"] == "[a bird]"
        assert {d["label"] for d in frames[0]["result"]["detections"]} == {"a cat", "a dog"}
        assert all(d["track_id"] == 0 for f in frames for d in f["result"]["detections"])
        assert {d["label"] for d in frames[-1]["result"]["detections"]} == {"a bird"}
        assert frames[-1]["stats"]["frames"] > frames[0]["stats"]["frames"]
        assert frames[-1]["stats"]["source"] == f"video {video}"
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_bad_prompt_on_the_command_line_is_one_error(tmp_path, tiny_owlvit_dir, tiny_clip_dir):
    video = write_synthetic_video(tmp_path / "clip.mp4", frames=2)
    models = ["--model", str(tiny_owlvit_dir), "--clip-model", str(tiny_clip_dir)]
    process = _serve("--video", str(video), *models, "--prompt", "[a cat)", "--port", "0")
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 1
    assert "unexpected ')' at column 6" in err and "Traceback" not in err


def _url(process: subprocess.Popen) -> str:
    line = ""
    while not line.startswith("serving "):
        line = process.stdout.readline()
        assert line, process.stderr.read()
    return line.split()[1]


async def _frames(url: str, count: int) -> list[dict]:
    """The headers of the first `count` frames a page gets."""
    headers = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url.replace("http://", "ws://") + "ws") as ws:
            while len(headers) < count:
                msg = await ws.receive(timeout=TIMEOUT)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    headers.append(unpack_frame(msg.data)[0])
    return headers


def test_serve_track_gives_ids_across_frames(tmp_path, tiny_owlvit_dir, tiny_clip_dir):
    """--track: the source's frames are one camera's, in order (as `detect --track`)."""
    from PIL import Image

    folder = tmp_path / "still"
    folder.mkdir()
    Image.fromarray(sample_frames(1)[0]).save(folder / "frame.png")  # shown again and again
    models = ["--model", str(tiny_owlvit_dir), "--clip-model", str(tiny_clip_dir)]
    process = _serve(
        "--images", str(folder), "--fps", "8", *models, "--port", "0", "--threshold", "0",
        "--max-regions", "1", "--max-detections", "20", "--prompt", "[a cat [an ear], a dog]",
        "--label-threshold", "a cat=0.55", "--label-threshold", "a dog=0.55", "--track",
    )  # fmt: skip
    try:
        frames = asyncio.run(_frames(_url(process), 4))
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    ids = [sorted(d["track_id"] for d in f["result"]["detections"]) for f in frames]
    assert frames[-1]["stats"]["frames"] > frames[0]["stats"]["frames"]
    assert ids[0] and all(t >= 1 for t in ids[0])  # a tracker's first frame confirms all
    assert all(frame_ids == ids[0] for frame_ids in ids)  # the same picture: the same tracks
    assert len(set(ids[0])) == len(ids[0])
    assert any(d["parent_id"] for d in frames[0]["result"]["detections"])  # nested ones too
