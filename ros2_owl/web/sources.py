"""Live frame sources for `ros2-owl serve`: a camera, a video file or a folder of images.

Each source runs its own reader thread into a one-slot NewestSlots: a frame the model has not
taken yet is replaced by a newer one (counted as dropped), as the ROS node's mailbox does, so
the page always shows the present and nothing queues. Cameras and videos are read with PyAV
(FFmpeg's maintained Python bindings; the wheel ships FFmpeg); images with Pillow.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime.slots import NewestSlots

__all__ = ["FrameSource", "SourceError", "SourceFrame", "open_source"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message names it and says why."""


@dataclass(frozen=True)
class SourceFrame:
    """One decoded frame: HxWx3 uint8 RGB, when it was captured (time.monotonic)."""

    image: np.ndarray
    captured: float
    index: int


class FrameSource:
    """A reader thread filling a one-slot NewestSlots; subclasses implement `_read_forever`."""

    name = "source"

    def __init__(self) -> None:
        self.slot: NewestSlots[SourceFrame] = NewestSlots()  # a frame the model missed drops
        self.error: str | None = None  # why the reader stopped early, for the serve loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._count = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="owl_source", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read_forever()
        except Exception as error:  # a broken file or an unplugged camera ends the source
            self.error = f"{self.name}: {error}"
        finally:
            self.slot.close(discard=False)

    def _emit(self, image: np.ndarray) -> None:
        self._count += 1
        self.slot.put(0, SourceFrame(image, time.monotonic(), self._count))

    def _read_forever(self) -> None:
        raise NotImplementedError

    def take(self, timeout: float | None = None) -> SourceFrame | None:
        return self.slot.take(timeout)

    @property
    def dropped(self) -> int:
        return self.slot.dropped

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self.slot.close(discard=False)
        if self._thread is not None:
            self._thread.join(timeout=5)


def _open_av(target: str, **kwargs):
    import av

    try:
        return av.open(target, **kwargs)
    except (OSError, av.FFmpegError) as error:
        raise SourceError(f"cannot open {target}: {error}") from None


class VideoSource(FrameSource):
    """A video file played at its own frame rate (or `fps`), looping, decoded with PyAV."""

    def __init__(self, path: str, fps: float | None = None, loop: bool = True):
        super().__init__()
        self.path, self.loop, self.name = path, loop, f"video {path}"
        container = _open_av(path)
        try:
            if not container.streams.video:
                raise SourceError(f"{path} has no video stream")
            rate = container.streams.video[0].average_rate
            self.fps = float(fps or (rate if rate else 25.0))
        finally:
            container.close()

    def _read_forever(self) -> None:
        period = 1.0 / self.fps
        next_time = time.monotonic()
        while not self._stop.is_set():
            container = _open_av(self.path)
            try:
                for video_frame in container.decode(video=0):
                    # pacing to the video's clock, not synchronisation: a live source's rate
                    if self._stop.wait(max(0.0, next_time - time.monotonic())):
                        return
                    next_time = max(next_time + period, time.monotonic() - period)
                    self._emit(video_frame.to_ndarray(format="rgb24"))
            finally:
                container.close()
            if not self.loop:
                return


def camera_target(camera: str) -> tuple[str, str | None]:
    """(device, FFmpeg input format) for `--camera`: an index or a device path/name."""
    if sys.platform.startswith("linux"):
        return (f"/dev/video{camera}" if camera.isdigit() else camera), "v4l2"
    if sys.platform == "darwin":
        return camera, "avfoundation"
    if sys.platform == "win32":
        return (camera if camera.startswith("video=") else f"video={camera}"), "dshow"
    return camera, None


class CameraSource(FrameSource):
    """A camera through FFmpeg's device input (v4l2 on Linux), read as fast as it delivers."""

    def __init__(self, camera: str, fps: float | None = None):
        super().__init__()
        device, fmt = camera_target(camera)
        self.name = f"camera {camera} ({device})"
        if fmt == "v4l2" and not Path(device).exists():
            raise SourceError(f"camera {camera}: {device} does not exist (no such camera)")
        options = {"framerate": f"{fps:g}"} if fps else {}
        self._container = _open_av(device, format=fmt, options=options)
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"camera {camera}: {device} has no video stream")

    def close(self) -> None:
        super().close()
        if not self.running:  # never started, or its thread ended: the device is ours to close
            self._container.close()

    def _read_forever(self) -> None:
        try:
            for video_frame in self._container.decode(video=0):
                if self._stop.is_set():
                    return
                self._emit(video_frame.to_ndarray(format="rgb24"))
        finally:
            self._container.close()


class ImageFolderSource(FrameSource):
    """Every image of a folder in name order, shown `fps` times a second, looping."""

    def __init__(self, folder: str, fps: float | None = None):
        super().__init__()
        root = Path(folder)
        if not root.is_dir():
            raise SourceError(f"image folder {folder} does not exist")
        self.paths = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        self.fps, self.name = float(fps or 1.0), f"images {folder}"

    def _read_forever(self) -> None:
        from PIL import Image

        images = []
        for path in self.paths:
            with Image.open(path) as img:
                images.append(np.asarray(img.convert("RGB")))
        index = 0
        while True:
            self._emit(images[index % len(images)])
            index += 1
            if self._stop.wait(1.0 / self.fps):  # pacing, not synchronisation
                return


def open_source(
    camera: str | None = None,
    video: str | None = None,
    images: str | None = None,
    fps: float | None = None,
) -> FrameSource:
    """Exactly one of camera / video / images, opened (SourceError when it cannot be)."""
    if sum(x is not None for x in (camera, video, images)) != 1:
        raise SourceError("give exactly one of --camera, --video or --images")
    if fps is not None and not 0 < fps <= 1000:
        raise SourceError(f"--fps must be in (0, 1000], got {fps:g}")
    if camera is not None:
        return CameraSource(camera, fps)
    if video is not None:
        if not Path(video).is_file():
            raise SourceError(f"video {video} does not exist")
        return VideoSource(video, fps)
    return ImageFolderSource(images, fps)
