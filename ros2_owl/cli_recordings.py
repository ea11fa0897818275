"""`ros2-owl bag` and `ros2-owl video`: the tree prompt over recordings (registered by cli.py).

The model, backend, threshold, label-threshold and NMS options are `detect`'s own and the
predictor is loaded the same way: cli.py hands its option adder and loader over as
PredictorOptions (it imports this module, so this module does not import it back).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .recordings import (
    Progress,
    RecordingError,
    RunReport,
    Slice,
    check_output,
    run_frames,
)
from .settings import SCHEMA

__all__ = ["PredictorOptions", "add_subcommands", "cmd_bag", "cmd_video"]


@dataclass(frozen=True)
class PredictorOptions:
    """`detect`'s predictor options and loader, from cli.py."""

    add: Callable[[argparse.ArgumentParser], None]  # adds --prompt, --model, --threshold, ...
    settings: Callable[[argparse.Namespace], Any]  # the Settings those options give
    load: Callable[[argparse.Namespace, str, str], Any]  # (args, model, clip) -> TreePredictor
    tracker: Callable[[Any], Any] = lambda settings: None  # --track: a new CameraTracker


def _add_run_args(p: argparse.ArgumentParser, options: PredictorOptions) -> None:
    options.add(p)
    p.set_defaults(predictor_options=options)
    p.add_argument("--start", type=float, help="first second to process (from the start)")
    p.add_argument("--end", type=float, help="stop at this second (from the start)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_subcommands(sub, options: PredictorOptions) -> None:
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
    _add_run_args(bag, options)
    bag.set_defaults(func=cmd_bag)

    video = sub.add_parser("video", help="run a tree prompt over a video file")
    video.add_argument("input", help="video file (anything FFmpeg reads)")
    video.add_argument("--out", help="annotated video to write (.mp4, .mkv, ...)")
    video.add_argument("--jsonl", help="write one JSON line per processed frame here")
    pick = video.add_mutually_exclusive_group()
    pick.add_argument("--every", type=int, default=1, help="process every Nth frame")
    pick.add_argument("--fps", type=float, help="process at most F frames per second")
    _add_run_args(video, options)
    video.set_defaults(func=cmd_video)


def _prepare(args):
    """The loaded predictor and the prompt state (after every cheap check has passed)."""
    if not args.prompt:
        raise RecordingError("--prompt is required")
    settings = args.predictor_options.settings(args)
    predictor = args.predictor_options.load(args, settings.model, settings.clip_model)
    if settings.queries_file:
        predictor.load_queries(settings.queries_file)
    state = predictor.prepare(args.prompt, label_thresholds=settings.label_threshold_map())
    return predictor, state


def _trackers(args) -> Callable[[str], Any] | None:
    """--track: one CameraTracker per input topic (frames in recording order), else None."""
    options = args.predictor_options
    settings = options.settings(args)
    if not settings.tracking:
        return None
    trackers: dict[str, Any] = {}

    def tracker(camera: str):
        if camera not in trackers:
            trackers[camera] = options.tracker(settings)
        return trackers[camera]

    return tracker


def _finish(report: RunReport, output: str) -> int:
    for line in report.lines(output):
        print(line, file=sys.stderr)
    if report.done:
        print(f"{report.fps:.2f} frames/s over {report.done} frames", file=sys.stderr)
    return report.exit_code()


def cmd_bag(args) -> int:
    """`bag`: every frame of the topics through the prompt, into a bag of the node's outputs."""
    from .bag_messages import bag_messages
    from .draw import draw_result
    from .recordings_bag import BagOutput, BagWriterOptions, open_input
    from .ros.convert import message_to_rgb  # imports no ROS: sensor_msgs pixel layouts

    part = Slice(args.start, args.end)
    source = open_input(args.input, args.topic, args.camera_name)
    if source.damage:
        print(f"warning: {args.input} is damaged ({source.damage}); reading what is readable",
              file=sys.stderr)  # fmt: skip
    try:
        out = check_output(args.out, args.overwrite)
        jsonl = check_output(args.jsonl, args.overwrite) if args.jsonl else None
        predictor, state = _prepare(args)
        trackers = _trackers(args)
        types = bag_messages()
        report = RunReport(total=source.count(part))
        options = BagWriterOptions(
            copy_images=args.copy_images,
            annotated_image=args.annotated_image,
            namespace=args.namespace,
            storage=args.storage,
            jsonl=jsonl,
            tracking=trackers is not None,
        )
        writer = BagOutput(
            out, source, options, threshold=args.predictor_options.settings(args).threshold
        )
        try:
            run_frames(
                source.frames(part, types, report, message_to_rgb),
                lambda image: predictor.predict(image, state),
                lambda frame, result: writer.write(
                    frame,
                    trackers(frame.camera.topic).update(result) if trackers else result,
                    draw_result,
                ),
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
    from .draw import draw_result
    from .recordings_video import FrameSelection, VideoInput, VideoOutput

    if not args.out and not args.jsonl:
        raise RecordingError("give --out (annotated video) and/or --jsonl (results)")
    part, selection = Slice(args.start, args.end), FrameSelection(args.every, args.fps)
    source = VideoInput(args.input)
    try:
        outputs = [check_output(p, args.overwrite) if p else None for p in (args.out, args.jsonl)]
        if outputs[0] is not None and outputs[0] == outputs[1]:
            raise RecordingError("--out and --jsonl name the same file")
        predictor, state = _prepare(args)
        trackers = _trackers(args)  # the video is one camera, frames in order
        report = RunReport(total=source.count(part, selection))
        writer = VideoOutput(outputs[0], outputs[1], source)
        try:
            run_frames(
                source.frames(part, selection, report),
                lambda image: predictor.predict(image, state),
                lambda frame, result: writer.write(
                    frame, trackers("video").update(result) if trackers else result, draw_result
                ),
                report,
                Progress(report.total, args.quiet),
            )
        finally:
            writer.close()
    finally:
        source.close()
    return _finish(report, " and ".join(str(p) for p in outputs if p))
