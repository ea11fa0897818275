"""`ros2-owl serve`: its source, address and security options, and the command (the page and
its loop are web/serve.py)."""

from __future__ import annotations

import argparse
import os
import sys

from ..web import TOKEN_ENV
from .options import DEMO_PROMPT, settings_of

__all__ = ["add_serve_arguments", "cmd_serve"]


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The source, address and security options of `serve` (the model options come from cli)."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", metavar="N|DEVICE", help="camera index or device, e.g. 0")
    src.add_argument("--video", metavar="FILE", help="a video file, played in a loop")
    src.add_argument("--images", metavar="DIR", help="a folder of images, shown in a loop")
    p.add_argument("--fps", type=float, help="source rate (default: the video's; images 1)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 = every one")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"require ?token=... (or header) on every request (default: ${TOKEN_ENV})",
    )
    p.add_argument("--max-viewers", type=int, default=4, help="concurrent pages at most")
    p.add_argument(
        "--stream-fps", type=float, default=15.0, help="most frames drawn and sent per second"
    )


def open_source_from_args(args):
    """The source named on the command line (SourceError with one line when it cannot open)."""
    from ..web.sources import open_source

    return open_source(args.camera, args.video, args.images, args.fps)


def cmd_serve(args) -> int:
    """`serve`: open the source first (a missing camera is one line), then load and serve."""
    from ..core.encoder_upgrade import exit_if_upgrading, start_upgrade
    from ..runtime.session import FrameSession, load_predictor
    from ..web import serve as web_serve
    from ..web.sources import SourceError

    try:
        web_serve.check_dependencies()
        source = open_source_from_args(args)
    except SourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    args.prompt = args.prompt or DEMO_PROMPT
    try:
        settings = settings_of(args)
        # a server runs long enough: torch serves the page at once, backend auto's winner is
        # swapped in between frames (backend_upgrade: wait measures first)
        predictor = load_predictor(settings, upgrade=settings.backend_upgrade)
        # --track: one camera's frames; a bad prompt fails here, before the upgrade starts
        session = FrameSession.from_settings(settings, args.prompt, predictor=predictor)
        start_upgrade(predictor, print_to_stderr)
        code = web_serve.run(args, session, source, args.prompt)
    finally:
        source.close()
    exit_if_upgrading(predictor, code)
    return code


def print_to_stderr(message: str) -> None:
    """serve's progress lines (the upgrade's): stderr, stdout carries the `serving` line."""
    print(message, file=sys.stderr, flush=True)
