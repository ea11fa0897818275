"""`ros2-owl video`: a video written in the test in, an annotated video and JSON lines out;
frame count and timestamps checked, --every / --fps / --start / --end respected."""

from __future__ import annotations

import json

import pytest
from fixtures_recordings import write_video

from ros2_owl.cli import app as cli
from ros2_owl.io.recordings import EXIT_INCOMPLETE


@pytest.fixture
def models(tiny_owlvit_dir):
    return ["--model", str(tiny_owlvit_dir), "--no-clip", "--prompt", "[a box [a corner]]"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, frames=20, fps=10)
    return path


def _decoded_times(path) -> list[float]:
    import av

    with av.open(str(path)) as container:
        return [round(float(f.time), 3) for f in container.decode(video=0)]


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_writes_every_frame_annotated_and_as_jsonl(clip, tmp_path, models, capsys):
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    argv = ["video", str(clip), "--out", str(out), "--jsonl", str(jsonl), "--quiet"]
    assert cli.main(argv + models) == 0
    assert "wrote 20 of 20 frames (up to 1.900 s)" in capsys.readouterr().err
    lines = _lines(jsonl)
    assert [d["frame"] for d in lines] == list(range(20))
    assert [d["time"] for d in lines] == pytest.approx([i / 10 for i in range(20)])
    assert lines[0]["prompt"] == "[a box [a corner]]" and lines[0]["image_size"] == [80, 64]
    assert all(d["detections"] for d in lines)  # the same dict `detect --json` prints
    assert set(lines[0]["detections"][0]) >= {"id", "parent_id", "label", "score", "box"}
    assert _decoded_times(out) == pytest.approx([i / 10 for i in range(20)])


@pytest.mark.parametrize(
    ("options", "frames"),
    [
        (["--every", "3"], [0, 3, 6, 9, 12, 15, 18]),
        (["--fps", "4"], [0, 3, 5, 8, 10, 13, 15, 18]),
        (["--start", "0.5", "--end", "1.2"], [5, 6, 7, 8, 9, 10, 11]),
        (["--start", "1.0", "--every", "4"], [10, 14, 18]),
    ],
)
def test_video_frame_selection(clip, tmp_path, models, capsys, options, frames):
    out, jsonl = tmp_path / "out.mkv", tmp_path / "out.jsonl"
    argv = ["video", str(clip), "--out", str(out), "--jsonl", str(jsonl), "--quiet", *options]
    assert cli.main(argv + models) == 0
    assert f"wrote {len(frames)} of {len(frames)} frames" in capsys.readouterr().err
    lines = _lines(jsonl)
    assert [d["frame"] for d in lines] == frames
    assert [d["time"] for d in lines] == pytest.approx([i / 10 for i in frames])
    assert _decoded_times(out) == pytest.approx([i / 10 for i in frames])


def test_video_bad_input_is_one_line(clip, tmp_path, models, capsys):
    def run(*argv) -> tuple[int, str]:
        code = cli.main(["video", *argv, "--quiet"] + models)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        return code, err

    code, err = run(str(tmp_path / "missing.mp4"), "--jsonl", str(tmp_path / "r.jsonl"))
    assert code == 1 and "does not exist" in err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    code, err = run(str(junk), "--jsonl", str(tmp_path / "r.jsonl"))
    assert code == 1 and "cannot read video" in err
    existing = tmp_path / "exists.jsonl"
    existing.write_text("keep me")
    code, err = run(str(clip), "--jsonl", str(existing))
    assert code == 1 and "exists: choose another path or pass --overwrite" in err
    assert existing.read_text() == "keep me"
    code, err = run(str(clip))
    assert code == 1 and "--out" in err and "--jsonl" in err


def test_truncated_video_processes_what_is_readable(tmp_path, models, capsys):
    video = tmp_path / "long.mkv"  # Matroska: a truncated file still opens and decodes
    write_video(video, frames=60, fps=10)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    jsonl = tmp_path / "r.jsonl"
    code = cli.main(["video", str(video), "--jsonl", str(jsonl), "--quiet"] + models)
    err = capsys.readouterr().err
    assert code == EXIT_INCOMPLETE, err
    assert "input ended early: " in err and "decoded frames" in err
    done = len(_lines(jsonl))
    assert 0 < done < 60 and f"wrote {done} of 60 frames" in err


def test_video_track_gives_ids_across_frames(clip, tmp_path, models, capsys):
    """--track: the video is one camera; its detections carry track ids (0 without --track)."""
    limits = ["--max-detections", "6", "--max-regions", "1"]
    tracked, plain = tmp_path / "tracked.jsonl", tmp_path / "plain.jsonl"
    argv = ["video", str(clip), "--quiet", "--every", "2"]
    assert cli.main([*argv, "--jsonl", str(tracked), "--track", *models, *limits]) == 0
    assert cli.main([*argv, "--jsonl", str(plain), *models, *limits]) == 0
    capsys.readouterr()
    frames = [[d["track_id"] for d in line["detections"]] for line in _lines(tracked)]
    assert frames[0] and all(t >= 1 for t in frames[0])  # a tracker's first frame confirms all
    assert all(len(set(t for t in ids if t)) == len([t for t in ids if t]) for ids in frames)
    assert set(frames[0]) & set(frames[1])  # the moving scene keeps some of its tracks
    assert all(d["track_id"] == 0 for line in _lines(plain) for d in line["detections"])


def test_video_masks_are_in_the_jsonl_as_rle(clip, tmp_path, tiny_owlvit_dir, tiny_sam_dir, capsys):
    jsonl = tmp_path / "out.jsonl"
    argv = ["video", str(clip), "--jsonl", str(jsonl), "--quiet", "--end", "0.2"]
    argv += ["--model", str(tiny_owlvit_dir), "--no-clip", "--sam-model", str(tiny_sam_dir)]
    assert cli.main(argv + ["--prompt", "[a box {mask} [a corner]]"]) == 0, capsys.readouterr().err
    lines = _lines(jsonl)
    assert lines and all(d["detections"] for d in lines)
    for line in lines:
        for det in line["detections"]:
            if det["label"] == "a box":  # marked: a mask of the frame's size, area = its runs
                rle = det["mask"]["rle"]
                assert rle["size"] == [64, 80] and sum(rle["counts"]) == 64 * 80
                assert det["mask"]["area"] == sum(rle["counts"][1::2])
            else:
                assert det["mask"] is None
