"""ros2-owl command line: detect (text and JSON), clear errors, offline demo, build-engine hook."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ros2_owl import cli
from ros2_owl.demo.fallback import weights_available


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "scene.png"
    img = np.zeros((90, 120, 3), np.uint8)
    img[10:80, 20:60] = (220, 60, 40)
    Image.fromarray(img).save(path)
    return path


def _models(tiny_owlvit_dir, tiny_clip_dir):
    return ["--model", str(tiny_owlvit_dir), "--clip-model", str(tiny_clip_dir)]


def test_detect_prints_a_tree(image_file, tiny_owlvit_dir, tiny_clip_dir, capsys):
    argv = ["detect", str(image_file), "--prompt", "[a box [a corner] (red, blue)]"]
    assert cli.main(argv + _models(tiny_owlvit_dir, tiny_clip_dir) + ["--max-detections", "4"]) == 0
    out = capsys.readouterr().out
    assert f"{image_file} (120x90): " in out and "#1 a box" in out
    assert "-> red " in out and ", blue " in out


def test_detect_json(image_file, tiny_owlvit_dir, tiny_clip_dir, capsys):
    argv = ["detect", str(image_file), str(image_file), "--prompt", "[a box, a ball]", "--json"]
    argv += ["--threshold", "0.3", "--label-threshold", "a ball=0.99", "--no-nms"]
    assert cli.main(argv + _models(tiny_owlvit_dir, tiny_clip_dir)) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 2 and results[0]["image"] == str(image_file)
    dets = results[0]["detections"]
    assert dets and all(d["label"] == "a box" and d["score"] > 0.3 for d in dets)
    assert set(dets[0]) >= {"id", "parent_id", "label_index", "box", "classifications"}


def test_detect_errors_are_one_line(image_file, tiny_owlvit_dir, tmp_path, capsys):
    base = ["detect", str(image_file), "--no-clip", "--model", str(tiny_owlvit_dir)]
    assert cli.main(base + ["--prompt", "[a cat, [x]"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "[a cat, [x]\n" in err and "^" in err
    missing = str(tmp_path / "nope")
    assert cli.main(["detect", str(image_file), "--prompt", "[a]", "--model", missing]) == 1
    assert f"local directory '{missing}' does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    argv = ["detect", str(bad), "--prompt", "[a cat]", "--no-clip", "--model", str(tiny_owlvit_dir)]
    assert cli.main(argv) == 1
    assert "cannot read image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(base + ["--prompt", "[a]", "--label-threshold", "no-equals-sign"])


def test_demo_falls_back_to_random_weights_loudly(
    image_file, tmp_path, monkeypatch, capsys, tiny_owlvit_dir
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["demo", str(image_file), "--cache-dir", str(tmp_path), "--max-detections", "3"]
    assert cli.main(argv + ["--annotate", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in out and "google/owlvit-base-patch32: not in the local" in out
    assert "MEANINGLESS" in out and f"{image_file} (120x90): 3 detections" in out
    assert (tmp_path / "out" / "scene_owl.png").is_file()
    # a random-weight directory is never mistaken for real weights
    assert weights_available(str(tiny_owlvit_dir)) == (
        False,
        f"{tiny_owlvit_dir} holds random weights",
    )


def test_build_engine_subcommand_is_wired(tmp_path, capsys):
    assert cli.main(["build-engine", "--list", "--cache-dir", str(tmp_path)]) == 0
