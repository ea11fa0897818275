"""The page's server: aiohttp on its own thread and event loop, fed one frame at a time.

The producer (the serve loop or the ROS node's inference thread) calls `publish()`, which
stores one reference and wakes the loop: it never draws, encodes or waits for a browser. The
loop draws and JPEG-encodes only the newest frame and only while someone watches (on a render
thread), and each viewer's sender sends the newest rendered frame when its previous send has
finished, so a slow browser skips frames instead of making the server queue them.

With several cameras (the node's), each page chooses its own: a viewer gets only its camera's
frames, and only cameras someone watches are rendered.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from ..core.results import TreeResult
from .control import PromptControl
from .frames import CameraFrames, FrameStats, ShownFrame, render_frame
from .protocol import (
    MAX_MESSAGE_BYTES,
    ProtocolError,
    SelectCameraCommand,
    SetPromptCommand,
    parse_command,
)
from .routes import foreign_origin, index_response, page_query, static_response, token_ok

__all__ = ["FrameStats", "ServerConfig", "ServerCounters", "WebServer", "WebServerError"]

log = logging.getLogger("ros2_owl.web")
# Per-viewer kernel send buffer: about one frame, so a slow page gets the present, not a
# backlog the kernel kept for it (autotuning would let it grow to megabytes).
VIEWER_SEND_BUFFER = 256 * 1024


class WebServerError(RuntimeError):
    """The server cannot start (port taken, bad host); the message says which and why."""


@dataclass(frozen=True)
class ServerConfig:
    """Where and for whom the page is served (validated on construction)."""

    host: str = "127.0.0.1"  # 0.0.0.0 only when asked for: the page can change the prompt
    port: int = 7860  # 0 = any free port (tests)
    token: str | None = None  # when set, every request and websocket must carry it
    max_viewers: int = 4
    jpeg_quality: int = 80
    stream_fps: float = 15.0  # most frames drawn and sent per second: a page needs no more

    def __post_init__(self) -> None:
        if not 0 <= int(self.port) <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if int(self.max_viewers) < 1:
            raise ValueError(f"max_viewers must be >= 1, got {self.max_viewers}")
        if not 1 <= int(self.jpeg_quality) <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {self.jpeg_quality}")
        if not 0.0 < float(self.stream_fps) <= 120.0:
            raise ValueError(f"stream_fps must be in (0, 120], got {self.stream_fps}")
        if self.token is not None and not self.token.strip():
            raise ValueError("token must not be empty (leave it unset for no token)")


@dataclass
class ServerCounters:
    """What the server did and refused (a snapshot is copied out by `counters()`)."""

    published: int = 0
    rendered: int = 0
    sent: int = 0
    skipped: int = 0  # frames a viewer never got because a newer one was ready
    viewers: int = 0
    refused_messages: int = 0  # bad JSON, unknown command, binary, oversize
    refused_viewers: int = 0  # over max_viewers
    unauthorized: int = 0  # missing/wrong token or a foreign Origin


@dataclass(eq=False)
class _Viewer:
    ws: web.WebSocketResponse
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    camera: int = 0  # the camera this page shows (its own choice)
    last_seq: int = 0  # of that camera's frames
    state: dict[str, Any] | None = None  # a prompt state message not sent yet (newest only)
    cameras: dict[str, Any] | None = None  # the camera list, not sent yet (at connect)


class WebServer:
    """Serves the page and its websocket; see the module docstring for the frame path."""

    def __init__(
        self,
        control: PromptControl,
        config: ServerConfig | None = None,
        cameras: Sequence[str] = ("",),
        initial_camera: int = 0,
    ):
        """`cameras`: the names a page chooses from (one: no choice); a page starts on
        `initial_camera`."""
        self.control = control
        self.config = config or ServerConfig()
        self._lock = threading.Lock()
        self._counters = ServerCounters()
        self._frames = CameraFrames(cameras)
        if not 0 <= initial_camera < len(self._frames):
            raise ValueError(f"initial_camera {initial_camera} out of range 0..{len(cameras) - 1}")
        self.initial_camera = initial_camera
        self._latest: list[tuple[int, bytes] | None] = [None] * len(self._frames)  # (seq, message)
        self._viewers: set[_Viewer] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._frame_ready: asyncio.Event | None = None
        self._render_pool = ThreadPoolExecutor(1, thread_name_prefix="owl_web_render")
        self._control_pool = ThreadPoolExecutor(1, thread_name_prefix="owl_web_control")
        self.port = self.config.port

    # ----- producer side (any thread) -------------------------------------------------------
    def publish(
        self, image: np.ndarray, result: TreeResult, stats: FrameStats, camera: int = 0
    ) -> None:
        """Offer `camera`'s newest frame; O(1), never blocks. The image must not change later."""
        self._frames.put(camera, image, result, stats)
        self._count("published")
        self._wake_renderer()

    def counters(self) -> ServerCounters:
        with self._lock:
            return ServerCounters(**asdict(self._counters))

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self._counters, name, getattr(self._counters, name) + n)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/{page_query(self.config.token)}"

    # ----- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve on a background thread (WebServerError when it cannot bind)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup(loop))
            except BaseException as error:  # reported to start()'s caller
                failure.append(error)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                tasks = asyncio.all_tasks(loop)  # the render loop and any sender left
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name="owl_web", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise WebServerError(f"web server did not start within {timeout:g} s")
        if failure:
            error = failure[0]
            where = f"{self.config.host}:{self.config.port}"
            raise WebServerError(f"cannot serve the page on {where}: {error}") from error

    async def _startup(self, loop: asyncio.AbstractEventLoop) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_MESSAGE_BYTES)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/api/status", self._status)
        app.on_shutdown.append(self._close_viewers)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.config.host, self.config.port).start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self.port = int(self._runner.addresses[0][1])
        self._frame_ready = asyncio.Event()
        self._loop = loop
        loop.create_task(self._render_loop())

    def stop(self) -> None:
        """Close every viewer and stop the loop thread."""
        loop, self._loop = self._loop, None
        if loop is not None and self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
        self._render_pool.shutdown(wait=False, cancel_futures=True)
        self._control_pool.shutdown(wait=False, cancel_futures=True)

    async def _close_viewers(self, _app: web.Application) -> None:
        for viewer in list(self._viewers):
            await viewer.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")

    # ----- HTTP -----------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler):
        """Token on every request; a websocket only from a page of this server (Origin)."""
        if not token_ok(self.config.token, request):
            self._count("unauthorized")
            return web.Response(status=401, text="missing or wrong token: open /?token=...\n")
        origin = foreign_origin(request)
        if origin:
            self._count("unauthorized")
            return web.Response(status=403, text=f"websocket from a foreign origin {origin}\n")
        response = await handler(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def _index(self, request: web.Request) -> web.Response:
        return index_response(self.config.token, request)

    async def _static(self, request: web.Request) -> web.Response:
        return static_response(request.match_info["name"])

    async def _status(self, request: web.Request) -> web.Response:
        view = self.control.view()
        return web.json_response(
            {
                "state": view.to_dict(),
                "server": asdict(self.counters()),
                "cameras": list(self._frames.names),
            }
        )

    # ----- frames ---------------------------------------------------------------------------
    def _wake_renderer(self) -> None:
        loop, ready = self._loop, self._frame_ready
        if loop is not None and ready is not None:
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # the loop closed while we were stopping
                pass

    async def _render_loop(self) -> None:
        """Render the newest frame of each watched camera (no viewer: nothing), wake senders."""
        loop = asyncio.get_running_loop()
        period, last = 1.0 / self.config.stream_fps, float("-inf")
        while True:
            # a rate cap, not synchronisation: frames published meanwhile replace the pending one
            await asyncio.sleep(max(0.0, last + period - loop.time()))
            await self._frame_ready.wait()
            self._frame_ready.clear()
            for camera in sorted({viewer.camera for viewer in self._viewers}):
                frame, latest = self._frames.newest(camera), self._latest[camera]
                if frame is None or (latest is not None and latest[0] >= frame.seq):
                    continue
                last = loop.time()
                await self._render(frame)

    async def _render(self, frame: ShownFrame) -> None:
        loop = asyncio.get_running_loop()
        server = {k: v for k, v in asdict(self.counters()).items() if k != "published"}
        try:
            payload = await loop.run_in_executor(
                self._render_pool, render_frame, frame, self.config.jpeg_quality, server
            )
        except Exception as error:  # a drawing bug must not stop the page
            log.warning("could not render frame %d: %s", frame.seq, error)
            return
        self._latest[frame.camera] = (frame.seq, payload)
        self._count("rendered")
        for viewer in self._viewers:
            if viewer.camera == frame.camera:
                viewer.wake.set()

    async def _send_frames(self, viewer: _Viewer) -> None:
        """One viewer's sender: the newest state and rendered frame, once the last send ended."""
        while not viewer.ws.closed:
            await viewer.wake.wait()
            viewer.wake.clear()
            texts = (viewer.state, viewer.cameras)  # taken before any await: newer ones wait
            viewer.state = viewer.cameras = None
            for text in texts:
                if text is not None:
                    await viewer.ws.send_json(text)
            latest = self._latest[viewer.camera]
            if latest is None or latest[0] <= viewer.last_seq:
                continue
            seq, payload = latest
            if viewer.last_seq:
                self._count("skipped", max(0, seq - viewer.last_seq - 1))
            viewer.last_seq = seq
            await viewer.ws.send_bytes(payload)
            self._count("sent")

    def _cameras_message(self, selected: int) -> dict[str, Any]:
        return {"type": "cameras", "cameras": list(self._frames.names), "selected": selected}

    async def _select_camera(self, viewer: _Viewer, camera: int) -> None:
        """This page's camera from now on; the others keep theirs."""
        viewer.camera, viewer.last_seq = camera, 0
        await viewer.ws.send_json(self._cameras_message(camera))
        viewer.wake.set()  # that camera's last rendered frame at once
        self._frame_ready.set()  # and its newest one rendered if nobody watched it

    # ----- websocket ------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30, compress=False)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, VIEWER_SEND_BUFFER)
        await ws.prepare(request)
        if len(self._viewers) >= self.config.max_viewers:
            self._count("refused_viewers")
            limit = self.config.max_viewers
            await ws.send_json(
                {"type": "error", "message": f"viewer limit reached ({limit}): try again later"}
            )
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"viewer limit reached")
            return ws
        viewer = _Viewer(ws, camera=self.initial_camera)
        viewer.state = {"type": "state", "state": self.control.view().to_dict()}
        if len(self._frames) > 1:  # one camera: nothing to choose, the page shows no selector
            viewer.cameras = self._cameras_message(self.initial_camera)
        self._viewers.add(viewer)
        self._count("viewers")
        sender = asyncio.create_task(self._send_frames(viewer))
        try:
            viewer.wake.set()  # the state, the cameras and the last rendered frame at once
            self._frame_ready.set()  # and render the pending one if nobody watched it yet
            async for message in ws:
                await self._on_message(viewer, message)
        finally:
            self._viewers.discard(viewer)
            self._count("viewers", -1)
            sender.cancel()
        return ws

    async def _on_message(self, viewer: _Viewer, message) -> None:
        if message.type == WSMsgType.ERROR:  # e.g. over max_msg_size: aiohttp closes (1009)
            self._count("refused_messages")
            log.warning("refused a websocket message: %s", viewer.ws.exception())
            return
        if message.type != WSMsgType.TEXT:
            await self._refuse(viewer, "binary messages are not accepted: send JSON text")
            return
        try:
            command = parse_command(message.data, cameras=len(self._frames))
        except ProtocolError as error:
            await self._refuse(viewer, str(error))
            return
        if isinstance(command, SelectCameraCommand):
            await self._select_camera(viewer, command.camera)
            return
        loop = asyncio.get_running_loop()
        if isinstance(command, SetPromptCommand):
            call = (self.control.set_prompt, command.prompt)
        else:
            call = (self.control.set_label_threshold, command.label, command.value)
        try:
            outcome = await loop.run_in_executor(self._control_pool, *call)
        except Exception as error:  # the owner failed unexpectedly: say so, keep serving
            log.warning("prompt change failed: %s: %s", type(error).__name__, error)
            await viewer.ws.send_json({"type": "error", "message": f"change failed: {error}"})
            return
        await viewer.ws.send_json(outcome.to_dict())
        if outcome.ok:
            state = {"type": "state", "state": outcome.view.to_dict()}
            for other in self._viewers:
                if other is not viewer:  # its sender sends it; a stalled page blocks no one
                    other.state = state
                    other.wake.set()

    async def _refuse(self, viewer: _Viewer, reason: str) -> None:
        self._count("refused_messages")
        await viewer.ws.send_json({"type": "error", "message": f"refused: {reason}"})
