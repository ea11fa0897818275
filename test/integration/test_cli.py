"""ros2-owl command line: detect (text and JSON), clear errors, offline demo, build-engine hook."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from ros2_owl.cli import app as cli
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


def test_detect_track_gives_ids_across_frames(image_file, tiny_owlvit_dir, capsys):
    argv = ["detect", *[str(image_file)] * 3, "--prompt", "[a box [a corner]]", "--json"]
    argv += ["--no-clip", "--model", str(tiny_owlvit_dir), "--threshold", "0.0", "--track"]
    limits = ["--label-threshold", "a box=0.445", "--max-regions", "1", "--max-detections", "20"]
    assert cli.main(argv + limits) == 0
    frames = [r["detections"] for r in json.loads(capsys.readouterr().out)]
    ids = [[d["track_id"] for d in dets] for dets in frames]
    assert frames[0] and all(t >= 1 for t in ids[0])  # a tracker's first frame confirms all
    assert ids[0] == ids[1] == ids[2]  # the same frame three times: the same tracks
    assert len(set(ids[0])) == len(ids[0])
    assert any(d["parent_id"] for d in frames[0])  # nested detections are tracked too
    assert cli.main(argv[:-1] + limits) == 0  # without --track: no ids
    assert all(d["track_id"] == 0 for d in json.loads(capsys.readouterr().out)[0]["detections"])


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but that holds no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_exif_orientation_is_applied(tmp_path, tiny_owlvit_dir, capsys):
    """A JPEG stored 40x20 with Orientation=6 (rotate 90 degrees clockwise) is 20x40 upright."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = 255  # the stored left edge becomes the top after rotating clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    upright = cli.read_image(str(path))
    assert upright.shape == (40, 20, 3)
    assert upright[:8].mean() > 200 and upright[-20:].mean() < 50
    argv = ["detect", str(path), "--prompt", "[a cat]", "--no-clip"]
    assert cli.main(argv + ["--model", str(tiny_owlvit_dir), "--max-detections", "1"]) == 0
    assert f"{path} (20x40): " in capsys.readouterr().out


def test_oversized_image_is_refused_from_its_header(tmp_path, tiny_owlvit_dir, capsys, recwarn):
    """A 12000x12000 PNG is refused by the one size limit before decoding: its header is all
    this file has, so decoding would fail with another message."""
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(12000, 12000))
    argv = [
        "detect",
        str(path),
        "--prompt",
        "[a cat]",
        "--no-clip",
        "--model",
        str(tiny_owlvit_dir),
    ]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "image is 12000x12000 px; the limit is 8192 px per side" in err, err
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


def test_huge_prompt_error_shows_a_window_not_the_prompt(image_file, tiny_owlvit_dir, capsys):
    prompt = "[a cat, " + "x" * 1_000_000 + "]"
    argv = ["detect", str(image_file), "--prompt", prompt, "--no-clip"]
    assert cli.main(argv + ["--model", str(tiny_owlvit_dir)]) == 1
    err = capsys.readouterr().err
    assert "too long" in err and "^" in err and len(err) < 400, len(err)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--backend", "tensorrt"], "tensorrt"),
        (["--annotate", "{file}/sub"], "cannot write annotated images"),
        (["--backend", "onnxruntime", "--cache-dir", "{file}/cache"], "{file}"),
    ],
)
def test_user_errors_are_one_line_and_exit_1(
    extra, expected, image_file, tiny_owlvit_dir, tmp_path, capsys
):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    extra = [x.format(file=a_file) for x in extra]
    argv = ["detect", str(image_file), "--prompt", "[a cat]", "--no-clip"]
    argv += ["--model", str(tiny_owlvit_dir), *extra]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected.format(file=a_file) in err
    with pytest.raises(Exception):  # noqa: B017  --debug: the real exception, for a bug report
        cli.main([*argv, "--debug"])


@pytest.mark.parametrize("option", ["--backend", "--dtype"])
def test_unknown_backend_or_dtype_is_a_usage_error(option, image_file, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["detect", str(image_file), "--prompt", "[a cat]", option, "bogus"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "must be one of" in err and "'bogus'" in err and "Traceback" not in err


def test_console_command_prints_no_traceback(image_file, tiny_owlvit_dir):
    argv = [sys.executable, "-m", "ros2_owl.cli", "detect", str(image_file), "--no-clip"]
    argv += ["--prompt", "[a cat]", "--model", str(tiny_owlvit_dir), "--backend", "tensorrt"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    # the tiny test model's loud RANDOM WEIGHTS warning aside, stderr is the one error line
    lines = [x for x in done.stderr.splitlines() if x.strip() and not x.startswith("!!!")]
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: backend 'tensorrt' needs NVIDIA TensorRT")
    debug = subprocess.run([*argv, "--debug"], capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_detect_on_a_few_images_never_waits_for_an_export(
    image_file, tiny_owlvit_dir, tmp_path, capsys
):
    """No cached decision and fewer images than an export pays for: torch, said in one line;
    --backend-upgrade wait measures first, and then the cached decision serves every run."""
    argv = ["detect", str(image_file), "--prompt", "[a box]", "--no-clip", "--model"]
    argv += [str(tiny_owlvit_dir), "--cache-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    said = [x for x in err.splitlines() if "backend auto" in x]
    want = f"backend auto: no measured choice cached for this CPU and 1 image(s) < {cli.AMORTISE_IMAGES}"
    assert len(said) == 1 and said[0].startswith(want), err
    assert not list(tmp_path.rglob("*.onnx"))  # nothing exported
    assert cli.main(argv + ["--backend-upgrade", "wait"]) == 0
    assert list(tmp_path.glob("auto/*.choice"))
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "backend auto: no measured choice" not in capsys.readouterr().err
