"""Small recordings written by the tests: rosbag2 bags (sqlite3 / mcap) with two cameras, raw
and compressed, and short videos, all with known stamps and content."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fixtures_models import synthetic_scene
from PIL import Image

FRONT = "/front/image_raw"
REAR = "/rear/image_raw/compressed"
T0 = 1_700_000_000_000_000_000  # receive time of the first message (ns)
PERIOD = 100_000_000  # 10 Hz per camera
STAMP_LAG = 30_000_000  # header stamps are 30 ms before the bag's receive time


@dataclass(frozen=True)
class Written:
    """One image message written into a test bag."""

    topic: str
    timestamp: int  # bag receive time (ns)
    stamp: tuple[int, int]  # header stamp (sec, nanosec)
    frame_id: str
    decodable: bool


def scene(i: int, h: int = 60, w: int = 80) -> np.ndarray:
    """Frame i of a moving scene (shifted synthetic_scene)."""
    return np.roll(synthetic_scene(h, w), 3 * i, axis=1)


def _header(types, timestamp: int, frame_id: str):
    header = types.new("std_msgs/msg/Header")
    stamp = timestamp - STAMP_LAG
    header.stamp.sec, header.stamp.nanosec = stamp // 10**9, stamp % 10**9
    header.frame_id = frame_id
    return header


def raw_image(types, rgb: np.ndarray, header, encoding: str = "rgb8"):
    msg = types.new("sensor_msgs/msg/Image")
    msg.header, msg.encoding = header, encoding
    msg.height, msg.width = rgb.shape[:2]
    msg.step = rgb.shape[1] * 3
    msg.data = np.ascontiguousarray(rgb).reshape(-1)
    return msg


def jpeg_image(types, rgb: np.ndarray, header):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    msg = types.new("sensor_msgs/msg/CompressedImage")
    msg.header, msg.format = header, "jpeg"
    msg.data = np.frombuffer(buffer.getvalue(), np.uint8)
    return msg


def write_bag(
    path: Path, storage: str, frames: int = 4, bad_frame: int | None = None, size=(80, 60)
):
    """A two-camera bag: FRONT raw rgb8, REAR jpeg, `frames` each of `size` (w, h),
    interleaved, plus a non-image topic; frame `bad_frame` of FRONT has an unknown encoding.
    Returns the Written list."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ros2_owl.io.bag_messages import bag_messages

    types = bag_messages()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    written = []
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        store = types.typestore
        front = writer.add_connection(FRONT, "sensor_msgs/msg/Image", typestore=store)
        rear = writer.add_connection(REAR, "sensor_msgs/msg/CompressedImage", typestore=store)
        other = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        for i in range(frames):
            ts = T0 + i * PERIOD
            header = _header(types, ts, "front_optical")
            bad = i == bad_frame
            msg = raw_image(types, scene(i, size[1], size[0]), header, "weird16" if bad else "rgb8")
            writer.write(front, ts, types.serialize(msg))
            written.append(Written(FRONT, ts, (header.stamp.sec, header.stamp.nanosec),
                                   "front_optical", not bad))  # fmt: skip
            ts_rear = ts + PERIOD // 2
            header = _header(types, ts_rear, "rear_optical")
            rgb = scene(i + 7, size[1], size[0])
            writer.write(rear, ts_rear, types.serialize(jpeg_image(types, rgb, header)))
            written.append(Written(REAR, ts_rear, (header.stamp.sec, header.stamp.nanosec),
                                   "rear_optical", True))  # fmt: skip
            text = types.new("std_msgs/msg/String")
            text.data = f"frame {i}"
            writer.write(other, ts + 1, types.serialize(text))
    return written


def write_video(path: Path, frames: int, fps: int = 10, size: tuple[int, int] = (80, 64)):
    """A short H.264 (or MPEG-4) video of the moving scene, frame i at i / fps seconds."""
    from fractions import Fraction

    import av

    w, h = size
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(scene(i, h, w), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def read_bag(path: Path):
    """{topic: [(timestamp, message)]} and {topic: msgtype} of a bag, read with rosbags."""
    from rosbags.rosbag2 import Reader

    from ros2_owl.io.bag_messages import bag_messages

    types = bag_messages()
    out: dict[str, list] = {}
    with Reader(path) as reader:
        kinds = {c.topic: c.msgtype for c in reader.connections}
        for conn, ts, raw in reader.messages():
            out.setdefault(conn.topic, []).append((ts, types.deserialize(raw, conn.msgtype)))
    return out, kinds
