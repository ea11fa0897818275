"""Offline frames per second of `ros2-owl bag` and `ros2-owl video` next to the same frames
through `ros2-owl detect` (PNG files), on the tiny random model and on the full-size random
OWL-ViT B/32 with a chosen backend. The model is loaded once and shared by all three commands,
so the numbers compare the per-frame paths: bag read + CDR + bag write, or video decode, or
PNG decode + JSON, around the same predictor.

    python benchmarks/bench_recordings.py [--frames 40] [--full-frames 6] [--full-backend onnxruntime]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "test"))

from bench_common import camera_scene  # noqa: E402

from ros2_owl.backends.auto import cpu_model  # noqa: E402
from ros2_owl.cli import app as cli  # noqa: E402
from ros2_owl.runtime import session  # noqa: E402

PROMPT = "[a person, a car, a dog]"
TOPIC = "/camera/image_raw"


def frames(n: int) -> list[np.ndarray]:
    base = camera_scene()
    return [np.roll(base, 7 * i, axis=1) for i in range(n)]


def write_inputs(folder: Path, images: list[np.ndarray]) -> tuple[Path, Path, list[str]]:
    """The same frames as a sqlite3 bag (10 Hz), an MP4 and PNG files."""
    from fixtures_recordings import raw_image, write_video
    from PIL import Image
    from rosbags.rosbag2 import Writer

    from ros2_owl.io.bag_messages import bag_messages

    types = bag_messages()
    bag = folder / "bag"
    with Writer(bag, version=8) as writer:
        conn = writer.add_connection(TOPIC, "sensor_msgs/msg/Image", typestore=types.typestore)
        for i, rgb in enumerate(images):
            header = types.new("std_msgs/msg/Header")
            header.stamp.sec = i
            writer.write(
                conn, (i + 1) * 100_000_000, types.serialize(raw_image(types, rgb, header))
            )
    pngs = []
    for i, rgb in enumerate(images):
        pngs.append(str(folder / f"frame{i:04d}.png"))
        Image.fromarray(rgb).save(pngs[-1])
    video = folder / "clip.mp4"
    write_video(video, len(images), fps=10, size=(640, 480))
    return bag, video, pngs


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one `ros2-owl` command."""
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(argv)
    if code != 0:
        raise SystemExit(f"ros2-owl {argv[0]} failed with exit code {code}")
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(name: str, model_dir: str, backend: str, n: int, rounds: int) -> None:
    """Print fps (wall) and CPU ms per frame of bag, video and detect; ratios use CPU time,
    which other processes on a shared machine do not inflate."""
    from ros2_owl.core.predictor import TreePredictor

    predictor = TreePredictor.from_pretrained(model_dir, None, backend=backend)
    predictor.predict(camera_scene(), predictor.prepare(PROMPT))  # warm-up (and ORT export)
    session.load_predictor = lambda *args, **kwargs: predictor  # every command uses it
    common = ["--prompt", PROMPT, "--no-clip", "--model", model_dir, "--backend", backend]
    runs: dict[str, list[tuple[float, float]]] = {"bag": [], "video": [], "detect": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bag, video, pngs = write_inputs(folder, frames(n))
        for r in range(rounds):  # interleaved, so load changes hit all three alike
            out, jsonl = folder / f"out{r}", folder / f"out{r}.jsonl"
            runs["bag"].append(
                timed(["bag", str(bag), "--topic", TOPIC, "--out", str(out), "--quiet", *common])
            )
            runs["video"].append(
                timed(["video", str(video), "--jsonl", str(jsonl), "--quiet", *common])
            )
            runs["detect"].append(timed(["detect", *pngs, "--json", *common]))
    wall = {k: float(np.median([w for w, _ in v])) for k, v in runs.items()}
    cpu = {k: float(np.median([c for _, c in v])) for k, v in runs.items()}
    print(f"{name} ({backend}), {n} frames 640x480, median of {rounds}:")
    for key in ("bag", "video", "detect"):
        ratio = (
            ""
            if key == "detect"
            else f" = {cpu['detect'] / cpu[key]:.2f}x detect's frames per CPU-second"
        )
        print(
            f"  {key:<6} {n / wall[key]:7.2f} fps wall, {1000 * cpu[key] / n:8.1f} ms CPU per frame{ratio}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames for the tiny model")
    parser.add_argument("--full-frames", type=int, default=6, help="frames for the full model")
    parser.add_argument("--full-backend", default="onnxruntime", help="backend of the full model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    import torch

    from ros2_owl.demo.random_models import ensure_random_model

    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} torch threads; prompt {PROMPT}")
    measure(
        "tiny random OWL-ViT",
        str(ensure_random_model("tiny-owlvit")),
        "torch",
        args.frames,
        args.rounds,
    )
    if not args.skip_full:
        full = str(ensure_random_model("owlvit-base-patch32"))
        measure(
            "full-size random OWL-ViT B/32", full, args.full_backend, args.full_frames, args.rounds
        )


if __name__ == "__main__":
    main()
