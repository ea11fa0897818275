"""Reading what is readable of a damaged rosbag2 file (a recorder killed mid-write, a copy cut
short), which rosbags refuses to open: its sqlite3 reader counts every message first and its
MCAP reader needs the file's footer. These readers go record by record and stop at the damage.

They offer the subset of rosbags' Reader that recordings_bag uses (connections with counts,
start_time, messages in storage order).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

__all__ = ["open_salvage"]


def _connection(cid: int, topic: str, msgtype: str, count: int):
    from rosbags.interfaces import (
        Connection,
        ConnectionExtRosbag2,
        MessageDefinition,
        MessageDefinitionFormat,
    )

    none = MessageDefinition(MessageDefinitionFormat.NONE, "")
    return Connection(cid, topic, msgtype, none, "", count, ConnectionExtRosbag2("cdr", []), None)


def _stated_counts(folder: Path) -> dict[str, int]:
    """Message counts per topic from metadata.yaml, when the recorder got to write it."""
    import yaml

    try:
        info = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return {
            t["topic_metadata"]["name"]: int(t["message_count"])
            for t in info["topics_with_message_count"]
        }
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return {}


class _Salvage:
    start_time = 0
    connections: list = []

    def _window(self, rows: Iterator, connections, start, stop) -> Iterator:
        wanted = {c.id: c for c in connections}
        for cid, timestamp, data in rows:
            if cid in wanted and (start is None or timestamp >= start):
                if stop is not None and timestamp >= stop:
                    continue
                yield wanted[cid], timestamp, data


class SqliteSalvage(_Salvage):
    """Rows of the messages table in insertion order, until a damaged page."""

    def __init__(self, path: Path, counts: dict[str, int]) -> None:
        self.db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)  # never written
        # SQLite refuses a file shorter than its header's page count unless writable_schema
        # is on, with which it reads the pages that exist (the connection stays read-only).
        self.db.execute("PRAGMA writable_schema=ON")
        topics = self.db.execute("SELECT id, name, type FROM topics ORDER BY id").fetchall()
        self.connections = [_connection(i, n, t, counts.get(n, 0)) for i, n, t in topics]
        first = self.db.execute("SELECT timestamp FROM messages ORDER BY rowid LIMIT 1").fetchone()
        self.start_time = first[0] if first else 0

    def messages(self, connections, start=None, stop=None) -> Iterator:
        rows = self.db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY rowid")
        return self._window(rows, connections, start, stop)

    def close(self) -> None:
        self.db.close()


class McapSalvage(_Salvage):
    """Records of an MCAP file read in stream order (mcap's StreamReader), until the damage."""

    def __init__(self, path: Path, counts: dict[str, int]) -> None:
        self.path = path
        schemas: dict[int, str] = {}
        self.connections = []
        self.start_time = 0
        for record in self._records(keep_going=True):
            name = type(record).__name__
            if name == "Schema":
                schemas[record.id] = record.name
            elif name == "Channel":
                msgtype = schemas.get(record.schema_id, "")
                self.connections.append(
                    _connection(record.id, record.topic, msgtype, counts.get(record.topic, 0))
                )
            elif name == "Message":
                self.start_time = record.log_time
                break

    def _records(self, keep_going: bool = False) -> Iterator:
        """Records up to the damage (which raises, unless `keep_going`: then they just end)."""
        from mcap.exceptions import McapError
        from mcap.stream_reader import StreamReader

        with self.path.open("rb") as stream:
            try:
                yield from StreamReader(stream, skip_magic=False).records
            except McapError:
                if not keep_going:
                    raise

    def messages(self, connections, start=None, stop=None) -> Iterator:
        rows = (
            (r.channel_id, r.log_time, r.data)
            for r in self._records()
            if type(r).__name__ == "Message"
        )
        return self._window(rows, connections, start, stop)

    def close(self) -> None:
        pass


def open_salvage(path: Path):
    """A salvage reader for the bag folder (or single .db3 / .mcap file) at `path`."""
    folder = path if path.is_dir() else path.parent
    files = [path] if path.is_file() else sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))
    if len(files) != 1:
        raise ValueError(f"expected one storage file, found {len(files)}")
    counts = _stated_counts(folder)
    if files[0].suffix == ".mcap":
        return McapSalvage(files[0], counts)
    return SqliteSalvage(files[0], counts)
