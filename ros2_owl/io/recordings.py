"""Offline runs over recordings: what every run shares (slices, progress, Ctrl-C, the report).

recordings_bag.py reads rosbag2 recordings and writes result bags; recordings_video.py reads
and writes video files. Both loop over frames with `run_frames`, which never leaves a
half-written frame behind: Ctrl-C during the model discards that frame, Ctrl-C while a frame
is being written takes effect right after it.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "JsonLines",
    "Progress",
    "RecordingError",
    "RunReport",
    "Slice",
    "check_output",
    "run_frames",
]

EXIT_INCOMPLETE = 3  # the output is valid but frames were skipped or the input ended early
EXIT_INTERRUPTED = 130  # Ctrl-C: the output is valid and holds the frames reported


class RecordingError(ValueError):
    """A recording or output that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Slice:
    """The part of a recording to process, in seconds from its start (None = open end)."""

    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.start < 0:
            raise RecordingError(f"--start {self.start} is negative")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise RecordingError(f"--end {self.end} must be after --start {self.start}")

    def contains(self, t: float) -> bool:
        return (self.start is None or t >= self.start) and (self.end is None or t < self.end)


@dataclass
class RunReport:
    """How far a run got: the line printed at the end and the exit code follow from it."""

    total: int
    done: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> frames
    stopped: str | None = None  # why the input ended before its stated end (truncated)
    interrupted: bool = False
    last_time: float | None = None  # recording time (s) of the last frame written
    seconds: float = 0.0  # wall time of the run

    @property
    def fps(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_INCOMPLETE if self.skipped or self.stopped else 0

    def lines(self, output: str) -> list[str]:
        at = f" (up to {self.last_time:.3f} s)" if self.last_time is not None else ""
        head = "interrupted: " if self.interrupted else ""
        lines = [f"{head}wrote {self.done} of {self.total} frames{at} to {output}"]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"skipped {count} frame{'s' * (count != 1)}: {reason}")
        if self.stopped:
            lines.append(f"input ended early: {self.stopped}")
        return lines


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing output unless --overwrite (then remove it first)."""
    import shutil

    out = Path(path)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise RecordingError(f"output {out} exists: choose another path or pass --overwrite")
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        else:
            out.unlink()
    if not out.parent.is_dir():
        raise RecordingError(f"output folder {out.parent} does not exist")
    return out


class JsonLines:
    """One JSON object per processed frame (`detect --json`'s result dict plus where it came
    from), flushed per line so a partial file is valid up to its last line."""

    def __init__(self, path: Path | None) -> None:
        self._file = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, where: dict, result) -> None:
        if self._file is not None:
            self._file.write(json.dumps({**where, **result.to_dict()}) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Progress:
    """frames done / total, frames per second and ETA on stderr (tqdm); silent with quiet."""

    def __init__(self, total: int, quiet: bool = False, what: str = "frames") -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total, unit="frame", disable=quiet, file=sys.stderr, desc=what, smoothing=0.3
        )

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


class _StopRequest:
    """SIGINT handling for `run_frames`: raise at once, except while a frame is written."""

    def __init__(self) -> None:
        self.requested = False
        self._writing = False

    def handler(self, signum, frame) -> None:
        self.requested = True
        if not self._writing:
            raise KeyboardInterrupt

    @contextmanager
    def writing(self) -> Iterator[None]:
        self._writing = True
        try:
            yield
        finally:
            self._writing = False
        if self.requested:
            raise KeyboardInterrupt


@contextmanager
def _sigint(stop: _StopRequest) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread; nothing to install
        return
    previous = signal.signal(signal.SIGINT, stop.handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_frames(
    frames: Iterable,
    process: Callable[[Any], Any],
    write: Callable[[object, object], None],
    report: RunReport,
    progress: Progress,
    write_skipped: Callable[[object], None] | None = None,
) -> RunReport:
    """Process and write every frame (objects with .image and .time) until the input ends or
    Ctrl-C. `process` gives the frame's result (.result), or why the predictor refused it
    (.error, result None: the frame is skipped). A frame whose .image is None could not be
    decoded (`frames` counted it in report.skipped); it goes to `write_skipped` (the bag copies
    it with --copy-images)."""
    stop = _StopRequest()
    started = time.monotonic()
    try:
        with _sigint(stop):
            for frame in frames:
                if frame.image is None:
                    if write_skipped is not None:
                        with stop.writing():
                            write_skipped(frame)
                    progress.update()
                    continue
                done = process(frame)
                if done.result is None:  # the predictor refuses this image: skip it
                    report.skipped[done.error.splitlines()[0]] += 1
                    progress.update()
                    continue
                with stop.writing():
                    write(frame, done.result)
                    report.done += 1
                    report.last_time = frame.time
                    progress.update()
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        progress.close()
    report.seconds = time.monotonic() - started
    return report
