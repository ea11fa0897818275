"""The page's server without a browser: protocol refusals, token, origin, viewer limit, and
newest-frame-only under a stalled client. Real aiohttp server, real predictor and results."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time

import aiohttp
import numpy as np
import pytest
from fixtures_models import synthetic_scene

from ros2_owl.core.predictor import PredictorConfig, TreePredictor
from ros2_owl.web.control import PredictorPromptControl
from ros2_owl.web.protocol import MAX_MESSAGE_BYTES, unpack_frame
from ros2_owl.web.server import FrameStats, ServerConfig, WebServer, WebServerError

STATS = FrameStats(fps=1.0, latency_ms=1.0, inference_ms=1.0, frames=1, dropped=0)
TIMEOUT = 30.0  # generous for a loaded machine; every wait ends as soon as its event arrives


@pytest.fixture(scope="module")
def predictor(tiny_owlvit_dir, tiny_clip_dir):
    return TreePredictor.from_pretrained(str(tiny_owlvit_dir), str(tiny_clip_dir))


@pytest.fixture
def make_server(predictor):
    servers = []

    def make(cameras=("",), initial_camera=0, **kwargs) -> WebServer:
        control = PredictorPromptControl(predictor, "[a cat, a dog]", PredictorConfig(0.0))
        config = ServerConfig(port=0, **kwargs)
        server = WebServer(control, config, cameras=cameras, initial_camera=initial_camera)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def _base(server: WebServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT * 2))


async def _next_json(ws) -> dict:
    while True:
        msg = await ws.receive(timeout=TIMEOUT)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return json.loads(msg.data)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg


def test_bad_messages_are_refused_counted_and_the_connection_stays(make_server):
    server = make_server()

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{_base(server)}/ws") as ws:
                assert (await _next_json(ws))["state"]["prompt"] == "[a cat, a dog]"
                await ws.send_str("{not json")
                assert "not JSON" in (await _next_json(ws))["message"]
                await ws.send_str('{"cmd": "launch_missiles"}')
                assert "unknown command" in (await _next_json(ws))["message"]
                await ws.send_str('{"cmd": "set_threshold", "label": "a cat", "value": 3}')
                assert "out of range" in (await _next_json(ws))["message"]
                await ws.send_bytes(b"\x00\x01")
                assert "binary" in (await _next_json(ws))["message"]
                await ws.send_str(json.dumps({"cmd": "set_prompt", "prompt": "[a bird]"}))
                answer = await _next_json(ws)
                assert answer["type"] == "prompt" and answer["ok"], answer

    _run(scenario())
    assert server.counters().refused_messages == 4
    assert server.control.state.prompt == "[a bird]"


def test_huge_message_closes_that_socket_only(make_server):
    server = make_server()

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{_base(server)}/ws") as ws:
                await _next_json(ws)
                await ws.send_str("x" * (MAX_MESSAGE_BYTES * 8))
                while (await ws.receive(timeout=TIMEOUT)).type not in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                ):
                    pass
                assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            async with session.ws_connect(f"{_base(server)}/ws") as ws:  # still serving
                assert (await _next_json(ws))["type"] == "state"

    _run(scenario())
    assert server.counters().refused_messages == 1


def test_token_is_required_on_every_request_and_the_websocket(make_server):
    server = make_server(token="tok en/1")
    assert "token=tok%20en%2F1" in server.url

    async def scenario():
        base = _base(server)
        async with aiohttp.ClientSession() as session:
            for path in ("/", "/static/app.js", "/api/status", "/ws", "/missing"):
                async with session.get(base + path) as response:
                    assert response.status == 401, path
                async with session.get(base + path, params={"token": "wrong"}) as response:
                    assert response.status == 401, path
            async with session.get(server.url) as response:
                assert response.status == 200
                html = await response.text()
            assert 'src="static/app.js?token=tok%20en%2F1"' in html
            for headers in ({"Authorization": "Bearer tok en/1"}, {"X-Owl-Token": "tok en/1"}):
                async with session.get(f"{base}/static/style.css", headers=headers) as response:
                    assert response.status == 200
                    assert response.content_type == "text/css"
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await session.ws_connect(f"{base}/ws")
            assert info.value.status == 401
            async with session.ws_connect(f"{base}/ws", params={"token": "tok en/1"}) as ws:
                assert (await _next_json(ws))["type"] == "state"

    _run(scenario())
    assert server.counters().unauthorized == 11


def test_websocket_from_a_foreign_page_is_refused(make_server):
    server = make_server()

    async def scenario():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await session.ws_connect(
                    f"{_base(server)}/ws", headers={"Origin": "http://evil.example"}
                )
            assert info.value.status == 403
            origin = {"Origin": _base(server)}
            async with session.ws_connect(f"{_base(server)}/ws", headers=origin) as ws:
                assert (await _next_json(ws))["type"] == "state"

    _run(scenario())
    assert server.counters().unauthorized == 1


def test_viewer_limit(make_server):
    server = make_server(max_viewers=2)

    async def scenario():
        async with aiohttp.ClientSession() as session:
            first = await session.ws_connect(f"{_base(server)}/ws")
            second = await session.ws_connect(f"{_base(server)}/ws")
            for ws in (first, second):
                await _next_json(ws)
            async with session.ws_connect(f"{_base(server)}/ws") as third:
                refusal = await _next_json(third)
                assert "viewer limit reached (2)" in refusal["message"]
                assert (await third.receive(timeout=TIMEOUT)).type == aiohttp.WSMsgType.CLOSE
                assert third.close_code == aiohttp.WSCloseCode.TRY_AGAIN_LATER
            await first.close()
            deadline = time.monotonic() + TIMEOUT
            while server.counters().viewers > 1:  # the server saw the close
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            async with session.ws_connect(f"{_base(server)}/ws") as fourth:
                assert (await _next_json(fourth))["type"] == "state"
            await second.close()

    _run(scenario())
    assert server.counters().refused_viewers == 1


def test_static_files_and_status(make_server):
    server = make_server()

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.get(_base(server) + "/") as response:
                assert response.status == 200
                assert "connect-src 'self'" in response.headers["Content-Security-Policy"]
                assert "__QUERY__" not in await response.text()
            async with session.get(_base(server) + "/static/app.js") as response:
                assert response.content_type == "text/javascript"
            for path in ("/static/index.html", "/static/..%2Fserver.py", "/static/nope.js"):
                async with session.get(_base(server) + path) as response:
                    assert response.status == 404, path
            async with session.get(_base(server) + "/api/status") as response:
                status = await response.json()
        assert status["state"]["prompt"] == "[a cat, a dog]"
        assert status["server"]["viewers"] == 0
        assert status["cameras"] == [""]

    _run(scenario())


def _stats(source: str, frames: int = 1) -> FrameStats:
    return FrameStats(fps=1.0, latency_ms=1.0, inference_ms=1.0, frames=frames, dropped=0,
                      source=source)  # fmt: skip


async def _next_frame(ws) -> dict:
    while True:
        msg = await ws.receive(timeout=TIMEOUT)
        if msg.type == aiohttp.WSMsgType.BINARY:
            return unpack_frame(msg.data)[0]
        assert msg.type == aiohttp.WSMsgType.TEXT, msg


def test_each_viewer_chooses_its_camera(make_server, predictor):
    server = make_server(cameras=("front", "back", "side"), initial_camera=1)
    result = predictor.predict(synthetic_scene(), server.control.state, server.control.config)
    image = synthetic_scene()

    async def scenario():
        async with aiohttp.ClientSession() as session:
            stay = await session.ws_connect(f"{_base(server)}/ws")
            switch = await session.ws_connect(f"{_base(server)}/ws")
            for ws in (stay, switch):  # the state, then the list with web_camera's choice
                assert (await _next_json(ws))["type"] == "state"
                cameras = await _next_json(ws)
                assert cameras == {"type": "cameras", "cameras": ["front", "back", "side"],
                                   "selected": 1}  # fmt: skip
            server.publish(image, result, _stats("front"), camera=0)
            server.publish(image, result, _stats("back"), camera=1)
            for ws in (stay, switch):
                header = await _next_frame(ws)
                assert (header["camera"], header["stats"]["source"]) == (1, "back")
            await switch.send_str(json.dumps({"cmd": "select_camera", "camera": 0}))
            assert (await _next_json(switch))["selected"] == 0
            header = await _next_frame(switch)  # front's last frame, rendered for it now
            assert (header["camera"], header["seq"], header["stats"]["source"]) == (0, 1, "front")
            for n in (2, 3):
                server.publish(image, result, _stats("front", n), camera=0)
                server.publish(image, result, _stats("back", n), camera=1)
                for ws, source in ((stay, "back"), (switch, "front")):
                    while (header := await _next_frame(ws))["seq"] < n:
                        pass
                    assert (header["stats"]["source"], header["stats"]["frames"]) == (source, n)
            for bad in ('"cmd": "select_camera", "camera": 3', '"cmd": "select_camera"',
                        '"cmd": "select_camera", "camera": "1"'):  # fmt: skip
                await switch.send_str("{" + bad + "}")
                refusal = await _next_json(switch)
                assert refusal["type"] == "error" and "camera" in refusal["message"], refusal
            server.publish(image, result, _stats("front", 4), camera=0)
            while (header := await _next_frame(switch))["seq"] < 4:  # still served, still front
                pass
            assert header["stats"]["source"] == "front"
            await stay.close()
            await switch.close()

    _run(scenario())
    assert server.counters().refused_messages == 3


def test_only_watched_cameras_are_rendered(make_server, predictor):
    server = make_server(cameras=("front", "back"))
    result = predictor.predict(synthetic_scene(), server.control.state, server.control.config)

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{_base(server)}/ws") as ws:
                await _next_json(ws)
                assert (await _next_json(ws))["selected"] == 0
                for _ in range(3):  # nobody watches "back": its frames are only stored
                    server.publish(synthetic_scene(), result, _stats("back"), camera=1)
                server.publish(synthetic_scene(), result, _stats("front"), camera=0)
                assert (await _next_frame(ws))["stats"]["source"] == "front"

    _run(scenario())
    counters = server.counters()
    assert (counters.published, counters.rendered) == (4, 1)


def test_one_camera_has_no_list_and_refuses_another(make_server):
    server = make_server()

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{_base(server)}/ws") as ws:
                assert (await _next_json(ws))["type"] == "state"
                await ws.send_str('{"cmd": "select_camera", "camera": 1}')
                refusal = await _next_json(ws)  # the next text: no camera list came first
                assert refusal == {
                    "type": "error",
                    "message": "refused: camera 1 out of range: there are 1, 0 to 0",
                }
                await ws.send_str('{"cmd": "select_camera", "camera": 0}')
                assert await _next_json(ws) == {"type": "cameras", "cameras": [""], "selected": 0}

    _run(scenario())
    assert server.counters().refused_messages == 1
    with pytest.raises(ValueError, match="initial_camera 2 out of range"):
        WebServer(server.control, cameras=("a", "b"), initial_camera=2)
    with pytest.raises(IndexError, match="camera 1 out of range"):
        server.publish(synthetic_scene(), None, STATS, camera=1)


def test_port_in_use_is_one_line(make_server):
    server = make_server()
    with pytest.raises(WebServerError, match=f"cannot serve the page on 127.0.0.1:{server.port}"):
        WebServer(server.control, ServerConfig(port=server.port)).start()


# ----- newest frame only ----------------------------------------------------------------------
class RawViewer:
    """A websocket client on a plain socket with a tiny receive buffer, so it can stall."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            assert chunk, "connection closed"
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def message(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next unfragmented server message."""
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack(">H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack(">Q", self._read(8))
        return first & 0x0F, self._read(size)


def test_stalled_viewer_gets_the_newest_frame_and_never_queues(make_server, predictor):
    server = make_server()
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)  # ~300 KB JPEGs
    result = predictor.predict(synthetic_scene(), server.control.state, server.control.config)
    stalled = RawViewer(server.port)  # connects, then reads nothing for a while
    total = 120

    async def fast_viewer() -> list[int]:
        seqs = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{_base(server)}/ws", max_msg_size=0) as ws:
                await _next_json(ws)
                for i in range(1, total + 1):
                    server.publish(noise, result, STATS)
                    if i % 10 == 0:  # the fast one keeps receiving while the other stalls
                        while True:
                            msg = await ws.receive(timeout=TIMEOUT)
                            if msg.type == aiohttp.WSMsgType.BINARY:
                                seqs.append(unpack_frame(msg.data)[0]["seq"])
                                if seqs[-1] >= i - 9:
                                    break
                    await asyncio.sleep(0.005)
        return seqs

    fast = _run(fast_viewer())
    assert len(fast) >= total // 10 and fast[-1] >= total - 9
    # the stalled viewer now reads: only a few frames were ever handed to it, then the newest
    seqs = []
    while not seqs or seqs[-1] < total:
        opcode, payload = stalled.message()
        if opcode == 2:
            seqs.append(unpack_frame(payload)[0]["seq"])
    stalled.sock.close()
    # what was in flight when it stalled (socket buffers capped near one frame), then a jump
    # over everything published meanwhile to the newest frames: never a backlog
    gaps = [b - a for a, b in zip(seqs, seqs[1:], strict=False)]
    jump = next(i for i, gap in enumerate(gaps) if gap > total // 2)
    assert jump <= 5 and len(seqs) <= jump + 8, seqs
    assert seqs == sorted(seqs) and seqs[-1] == total
    counters = server.counters()
    assert counters.skipped >= total - len(seqs) - len(fast)
    assert counters.published == total and counters.rendered <= total
