"""Inference rate of `ros2-owl serve` with 0 and 1 connected viewers (the page's cost).

The serve loop runs the predictor on a synthetic 640x480 camera that always has a new frame,
so the model is the bottleneck; rounds with no viewer and with one viewer alternate and the
medians are compared. The viewer is headless Debian chromium showing the page (default) or a
plain websocket client (--viewer ws), each in its own process. Both share this machine's
CPU with the model, so the ratio is an upper bound on what a viewer on another machine costs.

    python benchmarks/bench_web.py --model tiny --rounds 10 --seconds 4 [--viewer ws]
    python benchmarks/bench_web.py --model full --rounds 6 --seconds 10
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import camera_scene  # noqa: E402

from ros2_owl.backends.auto import cpu_model  # noqa: E402
from ros2_owl.core.predictor import PredictorConfig, TreePredictor  # noqa: E402
from ros2_owl.core.settings import Settings  # noqa: E402
from ros2_owl.demo.random_models import ensure_random_model  # noqa: E402
from ros2_owl.runtime.session import FrameSession  # noqa: E402
from ros2_owl.web.control import PredictorPromptControl  # noqa: E402
from ros2_owl.web.serve import ServeLoop  # noqa: E402
from ros2_owl.web.server import ServerConfig, WebServer  # noqa: E402
from ros2_owl.web.sources import FrameSource  # noqa: E402

PROMPT = "[a person, a car, a dog]"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class SyntheticCamera(FrameSource):
    """A 'camera' at a rate no model here reaches, cycling a few 640x480 scenes."""

    name = "synthetic camera 640x480"

    def __init__(self, fps: float = 200.0):
        super().__init__()
        base = camera_scene()
        self.images = [np.roll(base, shift * 16, axis=1) for shift in range(8)]
        self.period = 1.0 / fps

    def _read_forever(self) -> None:
        index = 0
        while not self._stop.wait(self.period):  # pacing, not synchronisation
            self._emit(self.images[index % len(self.images)])
            index += 1


_BROWSER = """
import sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = b.new_page()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "watch":
            page.goto(URL)
            page.wait_for_function(
                "() => Number(document.getElementById('frame').dataset.shown) >= 1", timeout=120000
            )
        else:
            page.goto("about:blank")
        print("ok", flush=True)
    b.close()
"""
_WS = """
import asyncio, sys
import aiohttp
async def main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    async with aiohttp.ClientSession() as session:
        task = None
        while line := (await reader.readline()).decode().strip():
            if line == "watch":
                ws = await session.ws_connect(URL.replace("http://", "ws://").rstrip("/") + "/ws",
                                              max_msg_size=0)
                while (await ws.receive()).type != aiohttp.WSMsgType.BINARY:
                    pass
                async def drain(ws=ws):
                    async for _ in ws:
                        pass
                task = asyncio.create_task(drain())
            else:
                await ws.close()
                await task
            print("ok", flush=True)
asyncio.run(main())
"""


class Viewer:
    """One viewer in its own process; `watch()` opens the page, `leave()` closes it."""

    def __init__(self, kind: str, url: str):
        code = (_BROWSER if kind == "browser" else _WS).replace("URL", repr(url))
        code = code.replace("CHROMIUM", repr(shutil.which("chromium") or "chromium"))
        code = code.replace("ARGS", repr(BROWSER_ARGS))
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._expect("ready")

    def _expect(self, word: str) -> None:
        line = self.process.stdout.readline().strip()
        if line != word:
            raise RuntimeError(f"the viewer process answered {line!r}, not {word!r}")

    def _say(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        self._expect("ok")

    def watch(self) -> None:
        self._say("watch")

    def leave(self) -> None:
        self._say("leave")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def measure(loop: ServeLoop, seconds: float) -> float:
    """Frames per second the serve loop processed during `seconds`."""
    start_frames, start = loop.frames, time.monotonic()
    time.sleep(seconds)  # a measurement window, not synchronisation
    return (loop.frames - start_frames) / (time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--viewer", choices=("browser", "ws"), default="browser")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    if args.viewer == "browser" and shutil.which("chromium") is None:
        print("no chromium here: use --viewer ws, or apt-get install chromium", file=sys.stderr)
        return 2

    name = "tiny-owlvit" if args.model == "tiny" else "owlvit-base-patch32"
    predictor = TreePredictor.from_pretrained(str(ensure_random_model(name)), None)
    control = PredictorPromptControl(predictor, PROMPT, PredictorConfig(threshold=0.1))
    server = WebServer(control, ServerConfig(port=0))
    server.start()
    source = SyntheticCamera()
    loop = ServeLoop(FrameSession(predictor, Settings()), control, source, server)
    source.start()
    worker = threading.Thread(target=loop.run, daemon=True)
    worker.start()
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    size = "tiny, far faster than a real model" if args.model == "tiny" else "real model's compute"
    print(f"model: random {name} ({size}), prompt {PROMPT}, 640x480")
    print(f"page stream capped at {server.config.stream_fps:g} fps (ServerConfig.stream_fps)")
    print(f"viewer: {args.viewer}; {args.rounds} rounds x {args.seconds:g} s per setting")
    measure(loop, min(5.0, args.seconds))  # warm-up
    rates: dict[int, list[float]] = {0: [], 1: []}
    viewer = Viewer(args.viewer, server.url)
    try:
        for round_index in range(args.rounds):
            rates[0].append(measure(loop, args.seconds))
            viewer.watch()
            rates[1].append(measure(loop, args.seconds))
            viewer.leave()
            print(f"round {round_index + 1}: 0 viewers {rates[0][-1]:.2f} fps, "
                  f"1 viewer {rates[1][-1]:.2f} fps", flush=True)  # fmt: skip
    finally:
        viewer.close()
    loop.stop.set()
    source.close()
    worker.join(timeout=30)
    counters = server.counters()
    server.stop()
    zero, one = statistics.median(rates[0]), statistics.median(rates[1])
    print(f"median inference rate: 0 viewers {zero:.2f} fps, 1 viewer {one:.2f} fps "
          f"(ratio {one / zero:.3f})")  # fmt: skip
    print(f"server: published {counters.published}, rendered {counters.rendered}, "
          f"sent {counters.sent}, skipped {counters.skipped}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
