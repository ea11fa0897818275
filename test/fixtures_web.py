"""Helpers for the live page's tests: a short synthetic video, a served tiny predictor."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np
from fixtures_models import synthetic_scene

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def sample_frames(count: int, width: int = 320, height: int = 240) -> list[np.ndarray]:
    """A slow pan over each bundled sample image in turn (8 frames each), width x height."""
    from PIL import Image

    pictures = []
    for path in sorted(SAMPLES.glob("*.jpg")):
        with Image.open(path) as img:
            w, h = img.size
            side = min(w, h * 4 // 3)  # centre crop to 4:3, then a little larger than the frame
            box = ((w - side) // 2, (h - side * 3 // 4) // 2)
            crop = img.convert("RGB").crop((*box, box[0] + side, box[1] + side * 3 // 4))
            pictures.append(np.asarray(crop.resize((width + 40, height + 30))))
    frames = []
    for i in range(count):
        picture, step = pictures[(i // 8) % len(pictures)], i % 8
        frames.append(
            np.ascontiguousarray(picture[step * 3 : step * 3 + height, step * 5 :][:, :width])
        )
    return frames


def write_synthetic_video(path: Path, frames: int = 24, fps: int = 12) -> Path:
    """An MPEG-4 clip panning over the sample images (written with PyAV)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.bit_rate = 1_500_000
        for image in sample_frames(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_image(seq: int, h: int = 120, w: int = 160) -> np.ndarray:
    """A deterministic frame that differs per sequence number."""
    image = synthetic_scene(h, w)
    image[:10, : (seq * 7) % w] = 255
    return image


@contextlib.contextmanager
def serving(predictor, prompt: str, source, server_config, config=None):
    """A running serve loop + web server on a thread; yields (server, control, loop)."""
    from ros2_owl.core.predictor import PredictorConfig
    from ros2_owl.core.settings import Settings
    from ros2_owl.runtime.session import FrameSession
    from ros2_owl.web.control import PredictorPromptControl
    from ros2_owl.web.serve import ServeLoop
    from ros2_owl.web.server import WebServer

    control = PredictorPromptControl(predictor, prompt, config or PredictorConfig())
    server = WebServer(control, server_config)
    server.start()
    loop = ServeLoop(FrameSession(predictor, Settings()), control, source, server)
    source.start()
    thread = threading.Thread(target=loop.run, name="test_serve_loop", daemon=True)
    thread.start()
    try:
        yield server, control, loop
    finally:
        loop.stop.set()
        source.close()
        thread.join(timeout=10)
        server.stop()
