"""The frames the page shows: the newest published frame of each camera, and its rendering.

The producer puts a frame from any thread in O(1) (it replaces that camera's untaken one);
the server's render loop takes the newest frame of each camera someone watches. Each camera
numbers its own frames, so a page can tell which of one camera's frames it missed.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..core.draw import draw_result
from ..core.results import TreeResult
from ..runtime.slots import NewestSlots
from .protocol import pack_frame

__all__ = ["CameraFrames", "FrameStats", "ShownFrame", "render_frame"]


@dataclass(frozen=True)
class FrameStats:
    """The producer's numbers for one frame, shown under the stream."""

    fps: float  # processed frames per second (recent)
    latency_ms: float  # frame captured/received -> result ready
    inference_ms: float
    frames: int  # processed so far
    dropped: int  # frames replaced by a newer one before the model took them
    source: str = ""


@dataclass(frozen=True)
class ShownFrame:
    """One camera's processed frame, numbered within that camera."""

    camera: int
    seq: int
    image: np.ndarray
    result: TreeResult
    stats: FrameStats


class CameraFrames:
    """The newest frame of each camera; `put` from any thread, `newest` from the renderer."""

    def __init__(self, names: Sequence[str]):
        if not names:
            raise ValueError("a page needs at least one camera")
        self.names = tuple(names)
        self._lock = threading.Lock()  # numbers and stores a frame as one step
        self._newest: NewestSlots[ShownFrame] = NewestSlots()  # read, never taken
        self._count = [0] * len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def put(self, camera: int, image: np.ndarray, result: TreeResult, stats: FrameStats) -> None:
        """Replace `camera`'s newest frame (IndexError for a camera the page does not have)."""
        if not 0 <= camera < len(self.names):
            raise IndexError(f"camera {camera} out of range: there are {len(self.names)}")
        with self._lock:
            self._count[camera] += 1
            shown = ShownFrame(camera, self._count[camera], image, result, stats)
            self._newest.put(camera, shown)

    def newest(self, camera: int) -> ShownFrame | None:
        return self._newest.peek(camera)


def render_frame(frame: ShownFrame, quality: int, server: dict[str, Any]) -> bytes:
    """The annotated JPEG and its JSON header as one websocket message (render thread)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(draw_result(frame.image, frame.result)).save(
        buffer, format="JPEG", quality=quality
    )
    header = {
        "camera": frame.camera,
        "seq": frame.seq,
        "result": frame.result.to_dict(),
        "stats": asdict(frame.stats),
        "server": server,
    }
    return pack_frame(header, buffer.getvalue())
