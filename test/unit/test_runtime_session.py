"""runtime/session.py: FrameSession runs frames through the predictor (one batched call, one by
one when an image is refused) and then its steps; a step added to FRAME_STEPS once shows in
every front end (here `detect` and `video`)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from fixtures_recordings import write_video

from ros2_owl.cli import app as cli
from ros2_owl.core.results import TreeResult
from ros2_owl.core.settings import Settings
from ros2_owl.runtime import session as session_module
from ros2_owl.runtime.session import FrameSession, SessionFrame


class _Predictor:
    """Records calls; refuses images whose first pixel is 255 (as ImageError would)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def prepare(self, prompt, label_thresholds=None):
        return ("state", prompt, dict(label_thresholds or {}))

    def _result(self, image) -> TreeResult:
        if image.flat[0] == 255:
            raise ValueError("image refused")
        return TreeResult(None, "p", (image.shape[1], image.shape[0]), ())

    def predict(self, image, state, config=None):
        self.calls.append(("predict", 1))
        return self._result(image)

    def predict_batch(self, images, states, config=None):
        self.calls.append(("batch", len(images)))
        return [self._result(image) for image in images]


def _frame(camera: str, value: int = 0) -> SessionFrame:
    return SessionFrame(camera, np.full((4, 6, 3), value, np.uint8), received=None)


def test_frames_share_one_batched_call_and_are_counted_per_camera():
    predictor = _Predictor()
    session = FrameSession(predictor, Settings(), prompt="[a cat]")
    done = session.process([_frame("a"), _frame("b")])
    assert predictor.calls == [("batch", 2)]
    assert [d.frame.camera for d in done] == ["a", "b"]
    assert all(d.result.image_size == (6, 4) and not d.error for d in done)
    assert session.camera_stats("a").snapshot().processed == 1


def test_a_refused_image_is_named_and_the_others_still_run():
    predictor = _Predictor()
    session = FrameSession(predictor, Settings(), prompt="[a cat]")
    good, bad = session.process([_frame("a"), _frame("b", 255)])
    assert predictor.calls == [("batch", 2), ("predict", 1), ("predict", 1)]
    assert good.result is not None and bad.result is None and bad.error == "image refused"
    assert session.camera_stats("b").snapshot().bad == 1


def test_steps_run_in_order_after_the_model():
    session = FrameSession(_Predictor(), Settings(), prompt="[a cat]")
    seen = []
    session.steps = [
        lambda s, frame, result: seen.append(("first", frame.camera)) or result,
        lambda s, frame, result: seen.append(("second", frame.camera)) or result,
    ]
    session.process([_frame("a")])
    assert seen == [("first", "a"), ("second", "a")]


def test_process_without_a_prompt_says_so():
    with pytest.raises(RuntimeError, match="no prompt"):
        FrameSession(_Predictor(), Settings()).process([_frame("a")])


def test_a_step_added_once_runs_in_detect_and_in_video(
    tmp_path, tiny_owlvit_dir, monkeypatch, capsys
):
    from PIL import Image

    cameras: list[str] = []

    def drop_detections(session, frame, result):
        cameras.append(frame.camera)
        return dataclasses.replace(result, detections=())

    steps = [*session_module.FRAME_STEPS, drop_detections]
    monkeypatch.setattr(session_module, "FRAME_STEPS", steps)
    model = [
        "--model",
        str(tiny_owlvit_dir),
        "--no-clip",
        "--prompt",
        "[a box]",
        "--threshold",
        "0",
    ]
    image, video, jsonl = tmp_path / "scene.png", tmp_path / "clip.mp4", tmp_path / "v.jsonl"
    Image.fromarray(np.full((64, 80, 3), 200, np.uint8)).save(image)
    write_video(video, frames=3, fps=10)

    assert cli.main(["detect", str(image), "--json", *model]) == 0
    assert cli.main(["video", str(video), "--jsonl", str(jsonl), "--quiet", *model]) == 0
    assert [d["detections"] for d in json.loads(capsys.readouterr().out)] == [[]]
    assert [json.loads(line)["detections"] for line in jsonl.read_text().splitlines()] == [[]] * 3
    assert cameras == ["images", "video", "video", "video"]


def test_without_the_step_the_same_runs_find_boxes(tmp_path, tiny_owlvit_dir, capsys):
    """The control for the test above: threshold 0 gives every run detections."""
    from PIL import Image

    image = tmp_path / "scene.png"
    Image.fromarray(np.full((64, 80, 3), 200, np.uint8)).save(image)
    argv = ["detect", str(image), "--json", "--model", str(tiny_owlvit_dir), "--no-clip"]
    assert cli.main([*argv, "--prompt", "[a box]", "--threshold", "0"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["detections"]
