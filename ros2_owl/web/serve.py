"""`ros2-owl serve`: a source, the predictor and the page, each on its own thread.

The inference loop (the caller's thread) takes the newest source frame, runs it through the
FrameSession with the state the prompt control holds at that moment, and offers the result to
the server;
the server draws, encodes and sends on its own threads, so watching never slows the model.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from ..runtime.session import FrameSession, SessionFrame
from .sources import FrameSource, SourceError

__all__ = ["ServeLoop", "check_dependencies", "run"]

log = logging.getLogger("ros2_owl.web")


class ServeLoop:
    """Source -> session (predictor, tracker with --track) -> server, on the calling thread;
    `stop` ends it. The source is one camera: its frames in order."""

    CAMERA = "source"

    def __init__(self, session: FrameSession, control, source: FrameSource, server=None):
        self.session, self.control, self.source = session, control, source
        self.server = server
        self.stop = threading.Event()
        self.frames = 0
        self.bad_frames = 0

    def fps(self) -> float:
        """Processed frames per second (the session's rolling rate of this camera)."""
        return self.session.camera_stats(self.CAMERA).snapshot().output_hz

    def run(self, max_frames: int | None = None) -> None:
        from .server import FrameStats

        while not self.stop.is_set() and (max_frames is None or self.frames < max_frames):
            frame = self.source.take(timeout=0.5)
            if frame is None:
                if not self.source.running:
                    return  # the source ended (its error, if any, is in source.error)
                continue
            state, config = self.control.state, self.control.config  # one prompt per frame
            started = time.monotonic()
            shown = SessionFrame(self.CAMERA, frame.image, frame.captured)
            (done,) = self.session.process([shown], state, config)
            if done.result is None:  # ImageError: this frame is refused, the next may do
                self.bad_frames += 1
                if self.bad_frames == 1:
                    log.warning("dropped a bad frame: %s", done.error)
                continue
            now = time.monotonic()
            self.frames += 1
            if self.server is not None:
                stats = FrameStats(
                    fps=round(self.fps(), 2),
                    latency_ms=round((now - frame.captured) * 1000.0, 1),
                    inference_ms=round((now - started) * 1000.0, 1),
                    frames=self.frames,
                    dropped=self.source.dropped,
                    source=self.source.name,
                )
                self.server.publish(frame.image, done.result, stats)


def run(args, session: FrameSession, source: FrameSource, prompt: str) -> int:
    """Serve until Ctrl+C (or until a non-looping source ends); 1 when the source failed.
    The caller closes the source."""
    from .control import PredictorPromptControl
    from .server import ServerConfig, WebServer, WebServerError

    settings = session.settings
    control = PredictorPromptControl(
        session.predictor,
        prompt,
        settings.predictor_config(),
        settings.label_threshold_map(),
        check=session.check_masks,
    )
    server = WebServer(
        control,
        ServerConfig(
            host=args.host,
            port=args.port,
            token=args.token,
            max_viewers=args.max_viewers,
            stream_fps=args.stream_fps,
        ),
    )
    try:
        server.start()
    except WebServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    loop = ServeLoop(session, control, source, server)
    source.start()
    exposed = (
        "" if args.host in ("127.0.0.1", "localhost", "::1") else " (reachable from the network)"
    )
    print(f"serving {server.url}{exposed} - {source.name}; Ctrl+C stops", flush=True)
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
        server.stop()
    if source.error:
        print(f"error: {source.error}", file=sys.stderr)
        return 1
    return 0


def check_dependencies() -> None:
    """SourceError naming the missing web packages (aiohttp, PyAV) and how to get them."""
    missing = []
    for module, package in (("aiohttp", "aiohttp"), ("av", "av")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise SourceError(
            f"`serve` needs {', '.join(missing)}: pip install 'ros2-owl[web]' (or {' '.join(missing)})"
        )
