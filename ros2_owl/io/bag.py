"""`ros2-owl bag`: a rosbag2 recording (sqlite3 or mcap) in, a bag of the node's outputs out.

Reading and writing use rosbags (pure Python, its own CDR serialisation), so no ROS install is
needed. Per camera the output holds exactly the topics and types the node publishes, filled by
result_messages (the node's own mapping), each written at the input frame's receive time with
the input header, so `ros2 bag play` of it looks like the node ran live.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import result_messages
from .bag_messages import BagMessages, bag_messages
from .bag_salvage import open_salvage
from .recordings import JsonLines, RecordingError, RunReport, Slice
from .topics import OUTPUT_TOPICS, output_prefixes, resolve_topic

__all__ = ["IMAGE_TYPES", "BagInput", "BagOutput", "BagWriterOptions", "open_input"]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


@dataclass
class BagCamera:
    """One input topic and where its outputs go."""

    topic: str
    msgtype: str
    prefix: str
    connection: object = None
    out: dict = field(default_factory=dict)  # output name -> rosbags Connection
    label_info_written: bool = False


@dataclass
class BagFrame:
    """One image message: decoded pixels plus what its outputs copy."""

    camera: BagCamera
    index: int
    time: float  # seconds since the start of the recording
    timestamp: int  # the bag's receive time (ns)
    header: object
    raw: bytes
    image: np.ndarray | None  # None: not decodable (skipped, copied with --copy-images)


def _storage_of(path: Path) -> str:
    if path.is_file():
        return "mcap" if path.suffix == ".mcap" else "sqlite3"
    return "mcap" if any(path.glob("*.mcap")) else "sqlite3"


class BagInput:
    """An open recording, its image topics and the frames of a slice of them."""

    def __init__(self, path: str | Path, topics: list[str], camera_names: list[str]) -> None:
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        if not self.path.exists():
            raise RecordingError(f"input bag {self.path} does not exist")
        self.damage: str | None = None  # why rosbags refused it (then it is salvaged)
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except Exception as error:  # ReaderError, no metadata.yaml, damaged storage
            try:
                self.reader = open_salvage(self.path)
            except Exception:
                raise RecordingError(f"cannot read bag {self.path}: {error}") from None
            self.damage = str(error)
        self.storage = _storage_of(self.path)
        images = self.image_topics()
        missing = [t for t in topics if t not in images]
        if missing:
            have = ", ".join(f"{t} ({m.rpartition('/')[2]})" for t, m in images.items()) or "none"
            raise RecordingError(
                f"bag {self.path} has no image topic {', '.join(missing)}; its image topics: {have}"
            )
        try:
            prefixes = output_prefixes(tuple(topics), tuple(camera_names))
        except ValueError as error:
            raise RecordingError(str(error)) from None
        self.cameras = [BagCamera(t, images[t], p) for t, p in zip(topics, prefixes, strict=True)]
        by_topic = {c.topic: c for c in self.cameras}
        self.connections = [c for c in self.reader.connections if c.topic in by_topic]
        for conn in self.connections:
            by_topic[conn.topic].connection = conn

    def image_topics(self) -> dict[str, str]:
        """topic -> message type of every Image / CompressedImage topic in the bag."""
        return {c.topic: c.msgtype for c in self.reader.connections if c.msgtype in IMAGE_TYPES}

    def _bounds(self, part: Slice) -> tuple[int | None, int | None]:
        begin = self.reader.start_time
        start = None if part.start is None else begin + int(part.start * 1e9)
        stop = None if part.end is None else begin + int(part.end * 1e9)
        return start, stop

    def count(self, part: Slice) -> int:
        """Frames in the slice: the index's counts, or a scan without decoding for a slice."""
        if part.start is None and part.end is None:
            return sum(c.msgcount for c in self.connections)
        start, stop = self._bounds(part)
        try:
            return sum(1 for _ in self.reader.messages(self.connections, start, stop))
        except Exception:  # a truncated bag: frames() reports where it stops
            return sum(c.msgcount for c in self.connections)

    def frames(self, part: Slice, types: BagMessages, report: RunReport, decode) -> Iterator:
        """BagFrames in receive-time order (image None when `decode` (message -> HxWx3 RGB)
        raises ValueError: counted in report.skipped); stops at the first unreadable part
        (report.stopped says where)."""
        start, stop = self._bounds(part)
        by_conn = {c.connection.id: c for c in self.cameras}
        begin, index, last = self.reader.start_time, 0, None
        messages = self.reader.messages(self.connections, start, stop)
        while True:
            try:
                conn, timestamp, raw = next(messages)
            except StopIteration:
                return
            except Exception as error:  # truncated or corrupt storage: keep what was read
                where = f"after {index} frames" + (
                    f" (last at {(last - begin) / 1e9:.3f} s)" if last is not None else ""
                )
                report.stopped = f"{self.path}: {where}: {type(error).__name__}: {error}"
                return
            last = timestamp
            index += 1
            msg = image = None
            try:
                msg = types.deserialize(raw, conn.msgtype)
                image = decode(msg)
            except (ValueError, AssertionError) as error:
                report.skipped[f"{conn.topic}: {str(error).splitlines()[0]}"] += 1
            t = (timestamp - begin) / 1e9
            header = getattr(msg, "header", None)
            yield BagFrame(by_conn[conn.id], index - 1, t, timestamp, header, raw, image)

    def close(self) -> None:
        self.reader.close()


@dataclass(frozen=True)
class BagWriterOptions:
    """What the output bag holds besides detections, tree, classification and label_info."""

    copy_images: bool = False
    annotated_image: bool = False
    namespace: str = "/"
    storage: str | None = None  # None: the input's
    jsonl: Path | None = None  # also one JSON line per frame
    tracking: bool = False  # --track: Detection2D.id carries the track id, as the node's


def _qos(name: str):
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    spec = OUTPUT_TOPICS[name]
    zero = QosTime(0, 0)
    durability = QosDurability.TRANSIENT_LOCAL if spec.transient_local else QosDurability.VOLATILE
    return Qos(
        QosHistory.KEEP_LAST,
        spec.depth,
        QosReliability.RELIABLE,
        durability,
        zero,
        zero,
        QosLiveliness.AUTOMATIC,
        zero,
        False,
    )


class BagOutput:
    """The output bag: one connection per camera output, created when first written."""

    def __init__(self, path: Path, source: BagInput, options: BagWriterOptions, threshold: float):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.types = bag_messages()
        self.options = options
        self.threshold = threshold
        storage = options.storage or source.storage
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(path, version=8, storage_plugin=plugin)
        self.writer.open()
        self.jsonl = JsonLines(options.jsonl)

    def _connection(self, camera: BagCamera, name: str):
        conn = camera.out.get(name)
        if conn is None:
            topic = resolve_topic(self.options.namespace, camera.prefix, name)
            conn = self.writer.add_connection(
                topic, OUTPUT_TOPICS[name].type, typestore=self.types.typestore,
                offered_qos_profiles=[_qos(name)],
            )  # fmt: skip
            camera.out[name] = conn
        return conn

    def _write(self, camera: BagCamera, name: str, timestamp: int, message) -> None:
        data = self.types.serialize(message)
        self.writer.write(self._connection(camera, name), timestamp, data)

    def copy_input(self, frame: BagFrame) -> None:
        """The input image message as it was (--copy-images), also when it was skipped."""
        if not self.options.copy_images:
            return
        camera = frame.camera
        conn = camera.out.get("input")
        if conn is None:
            conn = self.writer.add_connection(
                camera.topic, camera.msgtype, typestore=self.types.typestore,
                offered_qos_profiles=camera.connection.ext.offered_qos_profiles,
            )  # fmt: skip
            camera.out["input"] = conn
        self.writer.write(conn, frame.timestamp, frame.raw)

    def write(self, frame: BagFrame, result, draw=None) -> None:
        """Everything the node publishes for this frame (label_info before a camera's first)."""
        camera, make, header, ts = frame.camera, self.types, frame.header, frame.timestamp
        self.copy_input(frame)
        if not camera.label_info_written:
            info_header = make.new("std_msgs/msg/Header")
            info_header.stamp = header.stamp
            info = result_messages.label_info(make, result.tree, self.threshold, info_header)
            self._write(camera, "label_info", ts, info)
            camera.label_info_written = True
        self._write(
            camera,
            "detections",
            ts,
            result_messages.detection_array(make, result, header, self.options.tracking),
        )
        self._write(camera, "tree", ts, result_messages.tree_array(make, result, header))
        classification = result_messages.image_classification(make, result, header)
        if classification is not None:
            self._write(camera, "classification", ts, classification)
        masks = result_messages.mask_image(make, result, header)
        if masks is not None:
            self._write(camera, "masks", ts, masks)
        if self.options.annotated_image and draw is not None:
            image = result_messages.rgb_image(make, draw(frame.image, result), header)
            self._write(camera, "annotated_image", ts, image)
        stamp = header.stamp.sec + header.stamp.nanosec / 1e9
        where = {"frame": frame.index, "topic": camera.topic, "time": round(frame.time, 6)}
        self.jsonl.write({**where, "stamp": stamp}, result)

    def close(self) -> None:
        self.jsonl.close()
        self.writer.close()


def open_input(path: str, topics: list[str], camera_names: list[str]) -> BagInput:
    """The input bag, checked: it exists, is readable and has every requested image topic."""
    return BagInput(path, topics, camera_names)
