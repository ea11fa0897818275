"""Runs over recordings: Ctrl-C on a real `ros2-owl` process leaves a valid partial bag and
video holding what it reported; slices and the report's exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_recordings import FRONT, read_bag, write_bag, write_video

from ros2_owl.io.recordings import EXIT_INTERRUPTED, RecordingError, RunReport, Slice

REPO = Path(__file__).resolve().parents[2]


def _interrupt_after(argv: list[str], jsonl: Path, lines: int, timeout: float = 180.0):
    """Start `ros2-owl ARGV`, send SIGINT once `jsonl` has `lines` lines; (code, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ros2_owl.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + timeout
    try:
        while not (jsonl.exists() and len(jsonl.read_text().splitlines()) >= lines):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no frames were written in time"
            time.sleep(0.05)  # polling a file the process writes, not synchronising on time
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def _reported(err: str) -> int:
    line = next(x for x in err.splitlines() if x.startswith("interrupted: wrote "))
    return int(line.split("wrote ")[1].split(" of ")[0])


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_sigint_leaves_a_readable_partial_bag(storage, tmp_path, tiny_owlvit_dir):
    write_bag(tmp_path / "in", storage, frames=400)
    out, jsonl = tmp_path / "out", tmp_path / "frames.jsonl"
    argv = ["bag", str(tmp_path / "in"), "--topic", FRONT, "--out", str(out), "--quiet"]
    argv += ["--jsonl", str(jsonl), "--prompt", "[a box [a corner]]", "--no-clip"]
    code, err = _interrupt_after(argv + ["--model", str(tiny_owlvit_dir)], jsonl, lines=3)
    assert code == EXIT_INTERRUPTED, err
    done = _reported(err)
    assert 3 <= done < 400 and "Traceback" not in err
    messages, _ = read_bag(out)  # closed properly: metadata written, storage readable
    assert len(messages["/detections"]) == len(messages["/tree"]) == done
    assert len(jsonl.read_text().splitlines()) == done


def test_sigint_leaves_a_finalised_partial_video(tmp_path, tiny_owlvit_dir):
    import av

    video = tmp_path / "in.mp4"
    write_video(video, frames=400, fps=25)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "frames.jsonl"
    argv = ["video", str(video), "--out", str(out), "--jsonl", str(jsonl), "--quiet"]
    argv += ["--prompt", "[a box [a corner]]", "--no-clip", "--model", str(tiny_owlvit_dir)]
    code, err = _interrupt_after(argv, jsonl, lines=3)
    assert code == EXIT_INTERRUPTED, err
    done = _reported(err)
    assert 3 <= done < 400 and "Traceback" not in err
    with av.open(str(out)) as container:  # finalised: the mp4 index is there
        assert sum(1 for _ in container.decode(video=0)) == done
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [d["frame"] for d in lines] == list(range(done))


def test_slice_checks_and_report():
    with pytest.raises(RecordingError, match="must be after"):
        Slice(2.0, 1.0)
    with pytest.raises(RecordingError, match="negative"):
        Slice(-1.0)
    assert Slice(1.0, 2.0).contains(1.0) and not Slice(1.0, 2.0).contains(2.0)
    report = RunReport(total=10, done=4, last_time=0.4)
    assert report.exit_code() == 0
    report.skipped["unsupported encoding 'x'"] += 2
    assert report.exit_code() == 3
    assert report.lines("out") == [
        "wrote 4 of 10 frames (up to 0.400 s) to out",
        "skipped 2 frames: unsupported encoding 'x'",
    ]
    report.interrupted = True
    assert report.exit_code() == EXIT_INTERRUPTED
