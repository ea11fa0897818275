"""build_engine command: exports into the cache, reuses it, lists it, fails with one clear line."""

from __future__ import annotations

import argparse

import pytest

from ros2_owl.backends.cache import ArtefactCache
from ros2_owl.cli.build_engine import add_arguments, main


def test_add_arguments_defaults():
    args = add_arguments(argparse.ArgumentParser()).parse_args([])
    assert args.model == "google/owlvit-base-patch32"
    assert args.backend == "onnxruntime" and args.max_batch == 8
    assert args.on_invalid == "rebuild" and not args.force


def test_builds_then_reuses_and_lists(tmp_path, capsys, tiny_owlv2_dir, tiny_clip_dir):
    argv = [
        "--model",
        str(tiny_owlv2_dir),
        "--clip-model",
        str(tiny_clip_dir),
        "--cache-dir",
        str(tmp_path),
        "--max-batch",
        "2",
    ]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "exporting OwlImageEncoder" in first.err and "exporting ClipImageEncoder" in first.err
    assert "verifying the ONNX graph against torch" in first.err
    entries = list(ArtefactCache(tmp_path).entries("onnx"))
    assert len(entries) == 2 and all(e.path.stat().st_size > 0 for e in entries)
    assert first.out.count(str(tmp_path)) == 3  # header + one line per artefact

    assert main(argv) == 0
    second = capsys.readouterr()
    assert "exporting" not in second.err and second.err.count("cached ONNX") == 2

    assert main(["--list", "--cache-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 2
    assert any("OwlImageEncoder 96px float32 batch 1..2 onnx" in line for line in listing)
    assert any("ClipImageEncoder 64px float32 batch 1..2 onnx" in line for line in listing)

    assert main(["--clear", "--cache-dir", str(tmp_path)]) == 0
    assert "removed 2 artefacts" in capsys.readouterr().out
    assert list(ArtefactCache(tmp_path).entries()) == []


def test_unloadable_model_is_one_error_line(tmp_path, capsys):
    code = main(["--model", str(tmp_path / "missing"), "--no-clip", "--cache-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    assert "missing" in err.splitlines()[-1]


def test_list_of_empty_cache(tmp_path, capsys):
    assert main(["--list", "--cache-dir", str(tmp_path / "none")]) == 0
    assert "no artefacts in" in capsys.readouterr().out


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT installed"
)
def test_tensorrt_without_runtime_names_fallback(tmp_path, capsys, tiny_owlvit_dir):
    code = main(
        [
            "--model",
            str(tiny_owlvit_dir),
            "--no-clip",
            "--backend",
            "tensorrt",
            "--cache-dir",
            str(tmp_path),
        ]
    )
    assert code == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("error: backend 'tensorrt' needs")
    assert "backend='onnxruntime'" in last


def test_cuda_without_gpu_runtime_fails_before_loading(tmp_path, capsys):
    code = main(
        [
            "--model",
            str(tmp_path / "never-loaded"),
            "--device",
            "cuda",
            "--cache-dir",
            str(tmp_path),
        ]
    )
    assert code == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert "needs onnxruntime-gpu" in last and "never-loaded" not in last


def test_auto_measures_once_and_lists_its_choice(tmp_path, capsys, tiny_owlvit_dir):
    argv = ["--model", str(tiny_owlvit_dir), "--no-clip", "--cache-dir", str(tmp_path)]
    assert main([*argv, "--backend", "auto"]) == 0
    first = capsys.readouterr()
    assert "auto: onnxruntime float32" in first.err and "auto: torch float32" in first.err
    assert main([*argv, "--backend", "auto"]) == 0
    second = capsys.readouterr()
    assert "(cache: fastest of 2 measured" in second.err
    assert "ms per image" not in second.err  # the decision is reused, nothing re-measured
    assert main(["--list", "--cache-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    chose = [line for line in listing.splitlines() if " auto " in line and "-> chose" in line]
    assert len(chose) == 1 and "fastest of 2 measured" in chose[0]


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    import io

    from ros2_owl.cli.build_engine import LineProgress

    out = io.StringIO()
    bar = LineProgress(out, use_bar=True, total=2)
    for message in ("loading owl", "exporting", "ready: owl", "ready: clip"):
        bar(message)
    bar.close()
    text = out.getvalue()
    assert "2/2" in text and "exporting" in text and "encoder" in text
    plain = io.StringIO()
    lines = LineProgress(plain)  # not a terminal: one timestamped line per step
    lines("exporting")
    assert plain.getvalue().endswith("s] exporting\n") and "\r" not in plain.getvalue()
