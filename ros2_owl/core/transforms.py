"""A ROS-free transform buffer: what /tf and /tf_static say, looked up through the tree at a time.

tf2's semantics without tf2_ros (which has no wheel): every child frame has one parent; static
transforms hold at all times, dynamic ones are kept for `cache_s` seconds and interpolated
between the two samples around the asked time (linear for translations, slerp for rotations);
time 0 asks for the newest common time. A lookup never waits: it answers or raises
TransformError with a one-line reason. Quaternions are (x, y, z, w), as in geometry_msgs.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["Transform", "TransformBuffer", "TransformError", "quat_multiply", "slerp"]


class TransformError(LookupError):
    """No transform between two frames at that time; the message says why, on one line."""


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a*b of (x, y, z, w) quaternions (the rotation b, then a)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def _normalised(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"rotation {q.tolist()} is not a usable quaternion")
    return q / norm


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions, the shorter way round."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # q and -q are the same rotation: take the short arc
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: linear is exact enough and avoids 0/0
        return _normalised(q0 + t * (q1 - q0))
    theta = np.arccos(min(dot, 1.0))
    s = np.sin(theta)
    return (np.sin((1.0 - t) * theta) / s) * q0 + (np.sin(t * theta) / s) * q1


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate the 3-vector v by the unit quaternion q."""
    u, w = q[:3], q[3]
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


@dataclass(frozen=True)
class Transform:
    """Maps points of a child frame into its parent frame: p_parent = R p_child + t."""

    translation: np.ndarray  # (3,)
    rotation: np.ndarray  # (4,) unit (x, y, z, w)

    @staticmethod
    def identity() -> Transform:
        return Transform(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))

    @staticmethod
    def of(translation, rotation) -> Transform:
        """Checked construction: a finite translation and a non-zero quaternion (normalised)."""
        t = np.asarray(translation, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(t)):
            raise ValueError(f"translation {t.tolist()} is not finite")
        return Transform(t, _normalised(rotation))

    def __mul__(self, other: Transform) -> Transform:
        """self * other: apply other first, then self (parent<-mid * mid<-child)."""
        return Transform(
            _rotate(self.rotation, other.translation) + self.translation,
            quat_multiply(self.rotation, other.rotation),
        )

    def inverse(self) -> Transform:
        conj = self.rotation * np.array([-1.0, -1.0, -1.0, 1.0])
        return Transform(-_rotate(conj, self.translation), conj)

    def apply(self, point) -> np.ndarray:
        """A point of the child frame in the parent frame."""
        return _rotate(self.rotation, np.asarray(point, dtype=np.float64)) + self.translation


def _interpolate(t0: int, a: Transform, t1: int, b: Transform, stamp: int) -> Transform:
    ratio = 0.0 if t1 == t0 else (stamp - t0) / (t1 - t0)
    return Transform(
        a.translation + ratio * (b.translation - a.translation),
        slerp(a.rotation, b.rotation, ratio),
    )


class _Edge:
    """One child frame's link to its parent: a static transform or timed samples."""

    def __init__(self, parent: str):
        self.parent = parent
        self.static: Transform | None = None
        self.stamps: list[int] = []
        self.samples: list[Transform] = []

    def add(self, stamp: int, transform: Transform, cache_ns: int) -> None:
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            self.samples[i] = transform  # a re-sent sample replaces the old one
        else:
            self.stamps.insert(i, stamp)
            self.samples.insert(i, transform)
        cut = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_ns)
        if cut:
            del self.stamps[:cut], self.samples[:cut]

    def newest(self) -> int:
        return 0 if self.static is not None else self.stamps[-1]

    def at(self, stamp: int, child: str) -> Transform:
        """The transform at `stamp` (0: the newest); TransformError outside the samples."""
        if self.static is not None:
            return self.static
        if stamp == 0:
            return self.samples[-1]
        first, last = self.stamps[0], self.stamps[-1]
        if stamp < first or stamp > last:
            when = "before the oldest" if stamp < first else "after the newest"
            raise TransformError(
                f"{child} -> {self.parent} at {stamp / 1e9:.3f} s is {when} transform "
                f"({first / 1e9:.3f} .. {last / 1e9:.3f} s)"
            )
        i = bisect.bisect_left(self.stamps, stamp)
        if self.stamps[i] == stamp:
            return self.samples[i]
        return _interpolate(
            self.stamps[i - 1], self.samples[i - 1], self.stamps[i], self.samples[i], stamp
        )


class TransformBuffer:
    """Frames and their parents from /tf and /tf_static, safe to fill and read from two threads."""

    def __init__(self, cache_s: float = 10.0, max_depth: int = 64):
        self._cache_ns = int(cache_s * 1e9)
        self._max_depth = max_depth
        self._edges: dict[str, _Edge] = {}
        self._lock = threading.Lock()

    def set_transform(
        self, parent: str, child: str, stamp_ns: int, translation, rotation, static: bool
    ) -> None:
        """Store one TransformStamped; ValueError for an unusable one (nothing stored)."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"transform {parent!r} -> {child!r} needs two different frame names")
        transform = Transform.of(translation, rotation)
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent:  # a frame may be re-parented
                edge = self._edges[child] = _Edge(parent)
            if static:
                edge.static = transform
            else:
                edge.static = None
                edge.add(int(stamp_ns), transform, self._cache_ns)

    def frames(self) -> set[str]:
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def _path_to_root(self, frame: str) -> list[str]:
        path = [frame]
        while frame in self._edges:
            frame = self._edges[frame].parent
            if frame in path or len(path) > self._max_depth:
                raise TransformError(f"the transform tree has a loop through {frame!r}")
            path.append(frame)
        return path

    def lookup(self, target: str, source: str, stamp_ns: int = 0) -> Transform:
        """The transform mapping points of `source` into `target` at `stamp_ns` (0: newest)."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return Transform.identity()
        try:
            return self._lookup(target, source, stamp_ns)
        except TransformError as exc:
            raise TransformError(f"no transform {source!r} -> {target!r}: {exc}") from None

    def _lookup(self, target: str, source: str, stamp_ns: int) -> Transform:
        with self._lock:
            known = set(self._edges) | {e.parent for e in self._edges.values()}
            for frame in (target, source):
                if frame not in known:
                    raise TransformError(
                        f"frame {frame!r} is not known (no /tf or /tf_static names it)"
                    )
            up, down = self._path_to_root(source), self._path_to_root(target)
            common = next((f for f in up if f in down), None)
            if common is None:
                raise TransformError(
                    f"{source!r} and {target!r} are not connected (roots {up[-1]!r} and {down[-1]!r})"
                )
            chain_up = up[: up.index(common)]
            chain_down = down[: down.index(common)]
            if stamp_ns == 0:  # the newest time every dynamic link on the way has
                stamps = [self._edges[f].newest() for f in chain_up + chain_down]
                stamp_ns = min((s for s in stamps if s), default=0)
            to_common = Transform.identity()
            for frame in chain_up:  # source -> ... -> common
                to_common = self._edges[frame].at(stamp_ns, frame) * to_common
            target_to_common = Transform.identity()
            for frame in chain_down:
                target_to_common = self._edges[frame].at(stamp_ns, frame) * target_to_common
        return target_to_common.inverse() * to_common
