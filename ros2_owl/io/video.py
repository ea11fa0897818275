"""`ros2-owl video`: a video file in (PyAV / FFmpeg), an annotated video and/or JSON lines out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .recordings import JsonLines, RecordingError, RunReport, Slice

__all__ = ["FrameSelection", "VideoFrame", "VideoInput", "VideoOutput"]


@dataclass(frozen=True)
class FrameSelection:
    """Which decoded frames to run the model on: every Nth, or at most F per second."""

    every: int = 1
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise RecordingError(f"--every must be 1 or more, got {self.every}")
        if self.fps is not None and self.fps <= 0:
            raise RecordingError(f"--fps must be positive, got {self.fps}")


@dataclass
class VideoFrame:
    index: int  # position among all decoded frames of the file (0-based)
    time: float  # presentation time in seconds from the stream's start
    image: np.ndarray


class VideoInput:
    """An open video file: its first video stream, decoded frame by frame."""

    def __init__(self, path: str | Path) -> None:
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise RecordingError(f"input video {self.path} does not exist")
        try:
            self.container = av.open(str(self.path))
        except av.FFmpegError as error:
            raise RecordingError(f"cannot read video {self.path}: {error}") from None
        if not self.container.streams.video:
            self.container.close()
            raise RecordingError(f"{self.path} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.rate = float(rate) if rate else 0.0
        tb = self.stream.time_base
        self.start = float(self.stream.start_time * tb) if self.stream.start_time else 0.0
        if self.stream.duration is not None:
            self.duration = float(self.stream.duration * tb)
        elif self.container.duration is not None:
            self.duration = self.container.duration / 1e6
        else:
            self.duration = 0.0
        self.stated_frames = self.stream.frames or round(self.duration * self.rate)

    def count(self, part: Slice, selection: FrameSelection) -> int:
        """Frames the run will process (from the stated frame count and rate; an estimate)."""
        first = 0 if part.start is None else int(np.ceil(part.start * self.rate - 1e-6))
        last = self.stated_frames if part.end is None else int(np.ceil(part.end * self.rate - 1e-6))
        n = max(0, min(last, self.stated_frames) - first)
        if selection.fps is not None and self.rate:
            return int(np.ceil(n * min(1.0, selection.fps / self.rate)))
        return -(-n // selection.every)

    def frames(self, part: Slice, selection: FrameSelection, report: RunReport) -> Iterator:
        """Selected VideoFrames of the slice; stops at the first undecodable part (reported)."""
        import av

        decoded, taken, next_time, last = 0, 0, None, None
        packets = self.container.decode(self.stream)
        while True:
            try:
                frame = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as error:
                report.stopped = self._where(decoded, last, f"{type(error).__name__}: {error}")
                return
            index, decoded = decoded, decoded + 1
            t = float(frame.pts * frame.time_base) - self.start if frame.pts is not None else 0.0
            last = t
            if not part.contains(t):
                if part.end is not None and t >= part.end:
                    return
                continue
            if selection.fps is not None:
                if next_time is not None and t < next_time - 1e-6:
                    continue
                base = t if next_time is None else next_time
                next_time = base + 1.0 / selection.fps
            elif taken % selection.every:
                taken += 1
                continue
            taken += 1
            yield VideoFrame(index, t, frame.to_ndarray(format="rgb24"))
        if part.end is None and self.stated_frames and decoded < self.stated_frames - 1:
            report.stopped = self._where(
                decoded,
                last,
                f"the file states {self.stated_frames} frames ({self.duration:.3f} s)",
            )

    def _where(self, decoded: int, last: float | None, why: str) -> str:
        at = f" (last at {last:.3f} s)" if last is not None else ""
        return f"{self.path}: after {decoded} decoded frames{at}: {why}"

    def close(self) -> None:
        self.container.close()


class VideoOutput:
    """An annotated video (H.264 when FFmpeg has it, else MPEG-4) with the input's timestamps,
    and/or one JSON line per processed frame."""

    def __init__(self, video: Path | None, jsonl: Path | None, source: VideoInput) -> None:
        self.container = self.stream = None
        self.jsonl = JsonLines(jsonl)
        if video is not None:
            import av

            self.container = av.open(str(video), "w")
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self.stream = self.container.add_stream(codec, rate=Fraction(source.rate or 30))
            self.stream.width = source.stream.codec_context.width + source.stream.width % 2
            self.stream.height = source.stream.codec_context.height + source.stream.height % 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = Fraction(1, 1000)
            self._last_pts = -1

    def write(self, frame: VideoFrame, result, draw) -> None:
        self.jsonl.write({"frame": frame.index, "time": round(frame.time, 6)}, result)
        if self.stream is not None:
            import av

            image = draw(frame.image, result)
            h, w = image.shape[:2]
            if (w, h) != (self.stream.width, self.stream.height):  # yuv420p needs even sides
                image = np.pad(
                    image, ((0, self.stream.height - h), (0, self.stream.width - w), (0, 0))
                )
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            out.pts = max(self._last_pts + 1, round(frame.time * 1000))
            out.time_base = self.stream.time_base
            self._last_pts = out.pts
            for packet in self.stream.encode(out):
                self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finalise the container (a valid file, also after Ctrl-C)."""
        self.jsonl.close()
        if self.stream is not None:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()
