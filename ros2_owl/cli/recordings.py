"""`ros2-owl bag` and `ros2-owl video`: the tree prompt over recordings (registered by app.py).

The model, backend, threshold, label-threshold and NMS options are `detect`'s own (options.py)
and the frames go through the same FrameSession.
"""

from __future__ import annotations

import argparse
import sys

from ..core.settings import SCHEMA
from ..io.recordings import (
    Progress,
    RecordingError,
    RunReport,
    Slice,
    check_output,
    run_frames,
)
from .options import add_model_args, settings_of

__all__ = ["add_subcommands", "cmd_bag", "cmd_video"]


def _add_run_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p, outputs=False)
    p.add_argument("--start", type=float, help="first second to process (from the start)")
    p.add_argument("--end", type=float, help="stop at this second (from the start)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_subcommands(sub) -> None:
    """Add `bag` and `video` to the `ros2-owl` subcommands."""
    bag = sub.add_parser("bag", help="run a tree prompt over a rosbag2 recording (sqlite3/mcap)")
    bag.add_argument("input", help="rosbag2 folder (or one .db3 / .mcap file)")
    bag.add_argument(
        "--topic", action="append", required=True, help="image topic (repeatable: one per camera)"
    )
    bag.add_argument("--out", required=True, help="output bag folder")
    bag.add_argument("--copy-images", action="store_true", help="copy the input images too")
    bag.add_argument(
        "--annotated-image", action="store_true", help="also write <camera>/annotated_image"
    )
    cameras = SCHEMA["camera_names"]  # the node's setting; here one --camera-name per --topic
    bag.add_argument("--camera-name", action="append", default=[], help=cameras.description)
    bag.add_argument("--namespace", default="/", help="node namespace the outputs live in")
    bag.add_argument("--storage", choices=("sqlite3", "mcap"), help="default: the input's")
    bag.add_argument("--jsonl", help="also write one JSON line per processed frame here")
    _add_run_args(bag)
    bag.set_defaults(func=cmd_bag)

    video = sub.add_parser("video", help="run a tree prompt over a video file")
    video.add_argument("input", help="video file (anything FFmpeg reads)")
    video.add_argument("--out", help="annotated video to write (.mp4, .mkv, ...)")
    video.add_argument("--jsonl", help="write one JSON line per processed frame here")
    pick = video.add_mutually_exclusive_group()
    pick.add_argument("--every", type=int, default=1, help="process every Nth frame")
    pick.add_argument("--fps", type=float, help="process at most F frames per second")
    _add_run_args(video)
    video.set_defaults(func=cmd_video)


def _session(args):
    """The FrameSession of these options (after every cheap check has passed)."""
    from ..runtime.session import FrameSession

    if not args.prompt:
        raise RecordingError("--prompt is required")
    return FrameSession.from_settings(settings_of(args), args.prompt)


def _process(session, camera: str | None = None):
    """Frame -> ProcessedFrame for run_frames; `camera` None: each frame's camera topic."""
    from ..runtime.session import SessionFrame

    def process(frame):
        name = camera or frame.camera.topic
        return session.process([SessionFrame(name, frame.image)])[0]

    return process


def _finish(report: RunReport, output: str) -> int:
    for line in report.lines(output):
        print(line, file=sys.stderr)
    if report.done:
        print(f"{report.fps:.2f} frames/s over {report.done} frames", file=sys.stderr)
    return report.exit_code()


def cmd_bag(args) -> int:
    """`bag`: every frame of the topics through the prompt, into a bag of the node's outputs."""
    from ..core.draw import draw_result
    from ..io.bag import BagOutput, BagWriterOptions, open_input
    from ..io.bag_messages import bag_messages
    from ..io.images import message_to_rgb  # imports no ROS: sensor_msgs pixel layouts

    part = Slice(args.start, args.end)
    source = open_input(args.input, args.topic, args.camera_name)
    if source.damage:
        print(f"warning: {args.input} is damaged ({source.damage}); reading what is readable",
              file=sys.stderr)  # fmt: skip
    try:
        out = check_output(args.out, args.overwrite)
        jsonl = check_output(args.jsonl, args.overwrite) if args.jsonl else None
        session = _session(args)
        types = bag_messages()
        report = RunReport(total=source.count(part))
        options = BagWriterOptions(
            copy_images=args.copy_images,
            annotated_image=args.annotated_image,
            namespace=args.namespace,
            storage=args.storage,
            jsonl=jsonl,
            tracking=session.tracking is not None,
        )
        writer = BagOutput(out, source, options, threshold=session.settings.threshold)
        try:
            run_frames(
                source.frames(part, types, report, message_to_rgb),
                _process(session),  # one track set per input topic
                lambda frame, result: writer.write(frame, result, draw_result),
                report,
                Progress(report.total, args.quiet),
                write_skipped=writer.copy_input,
            )
        finally:
            writer.close()
    finally:
        source.close()
    return _finish(report, str(out))


def cmd_video(args) -> int:
    """`video`: frames of a video through the prompt, into an annotated video and/or JSONL."""
    from ..core.draw import draw_result
    from ..io.video import FrameSelection, VideoInput, VideoOutput

    if not args.out and not args.jsonl:
        raise RecordingError("give --out (annotated video) and/or --jsonl (results)")
    part, selection = Slice(args.start, args.end), FrameSelection(args.every, args.fps)
    source = VideoInput(args.input)
    try:
        outputs = [check_output(p, args.overwrite) if p else None for p in (args.out, args.jsonl)]
        if outputs[0] is not None and outputs[0] == outputs[1]:
            raise RecordingError("--out and --jsonl name the same file")
        session = _session(args)
        report = RunReport(total=source.count(part, selection))
        writer = VideoOutput(outputs[0], outputs[1], source)
        try:
            run_frames(
                source.frames(part, selection, report),
                _process(session, "video"),  # the video is one camera, frames in order
                lambda frame, result: writer.write(frame, result, draw_result),
                report,
                Progress(report.total, args.quiet),
            )
        finally:
            writer.close()
    finally:
        source.close()
    return _finish(report, " and ".join(str(p) for p in outputs if p))
