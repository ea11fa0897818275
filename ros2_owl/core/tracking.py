"""Track ids across frames for tree results, per camera (supervision's ByteTrack per label).

Each (parent track, label) pair gets its own ByteTrack: root detections are tracked per label
on the whole image, nested detections per label inside their parent's track, in coordinates
relative to the parent box (a face moves with its person). The tracker-local ids are mapped to
ids unique per camera and never reused in a run.

Every detection enters ByteTrack as a high-confidence one: the predictor has already applied
the thresholds, and OWL's sigmoid scores (often 0.1-0.4 for true objects) are not calibrated
like the YOLO scores ByteTrack's fixed low-score band and score fusion were tuned for.

ByteTrack confirms a track on its second matched frame, except in a tracker's first frame:
an object that appears later carries track_id 0 on its first frame, then its id.

Classification smoothing (optional): every classify group of a tracked region keeps an
exponential moving average of its label scores, s = a * s_prev + (1 - a) * score, with
a = `classification_smoothing`; it appears as `Detection.track_classifications` while
`Detection.classifications` keeps the raw per-frame scores.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from .results import Classification, Detection, LabelScore, TreeResult
from .settings import SCHEMA, require_setting

__all__ = ["BoxTracker", "ByteTrackBoxTracker", "CameraTracker", "Tracking", "TrackingConfig"]

NO_TRACK = 0  # track_id of a detection without a (confirmed) track


@dataclass(frozen=True)
class TrackingConfig:
    """How long tracks wait for their object, and the optional classify-score smoothing."""

    # frames a lost track stays matchable before its id ends
    max_missed_frames: int = SCHEMA["track_max_missed_frames"].default
    # EMA weight of the past; 0 = off
    classification_smoothing: float = SCHEMA["classification_smoothing"].default

    def __post_init__(self) -> None:  # the settings' own bounds, not a second copy of them
        require_setting("track_max_missed_frames", self.max_missed_frames)
        require_setting("classification_smoothing", float(self.classification_smoothing))


class BoxTracker(Protocol):
    """One multi-object tracker over boxes of one kind (the library sits behind this)."""

    def update(self, boxes: np.ndarray) -> np.ndarray:
        """[N, 4] xyxy boxes of this frame -> [N] tracker-local ids, -1 = no confirmed track."""

    def alive_tracks(self) -> int:
        """Confirmed tracks that are visible or still waiting for their object."""


@functools.cache
def _supervision():
    """Import supervision once (seconds: it loads scipy), quietly.

    It warns that it runs without OpenCV (on purpose: its NumPy fallback) and that ByteTrack
    moved to `trackers` (which requires the GUI opencv-python).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import supervision

    return supervision


class ByteTrackBoxTracker:
    """supervision's ByteTrack, fed with unit confidences (see the module docstring)."""

    def __init__(self, max_missed_frames: int):
        sv = _supervision()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._tracker = sv.ByteTrack(
                track_activation_threshold=0.5,
                lost_track_buffer=max_missed_frames,
                minimum_matching_threshold=0.8,
                frame_rate=30,  # max_time_lost = lost_track_buffer * frame_rate / 30
                minimum_consecutive_frames=1,
            )
        self._detections = sv.Detections

    def update(self, boxes: np.ndarray) -> np.ndarray:
        n = len(boxes)
        detections = self._detections(
            xyxy=np.asarray(boxes, dtype=np.float32).reshape(n, 4),
            confidence=np.ones(n, dtype=np.float32),
            data={"index": np.arange(n)},
        )
        tracked = self._tracker.update_with_detections(detections)
        ids = np.full(n, -1, dtype=np.int64)
        if len(tracked):
            ids[tracked.data["index"]] = tracked.tracker_id
        return ids

    def alive_tracks(self) -> int:
        tracked = sum(1 for t in self._tracker.tracked_tracks if t.is_activated)
        return tracked + len(self._tracker.lost_tracks)


@dataclass
class _Slot:
    """One BoxTracker plus its local -> camera-unique id map."""

    tracker: BoxTracker
    last_frame: int
    ids: dict[int, int]


def _relative(box, parent_box) -> tuple[float, float, float, float]:
    px, py = parent_box[0], parent_box[1]
    return (box[0] - px, box[1] - py, box[2] - px, box[3] - py)


class CameraTracker:
    """Track ids for the frames of one camera; feed results in frame order."""

    def __init__(
        self,
        config: TrackingConfig | None = None,
        make_tracker: Callable[[int], BoxTracker] = ByteTrackBoxTracker,
    ):
        self.config = config or TrackingConfig()
        self._make_tracker = make_tracker
        self._slots: dict[tuple[int, str], _Slot] = {}  # (parent track id, label) -> slot
        self._next_id: Iterator[int] = itertools.count(1)
        self._frame = 0
        self._active = 0
        self._updated: set[tuple[int, str]] = set()
        self._smoothed: dict[int, tuple[int, dict[tuple[str, ...], np.ndarray]]] = {}

    @property
    def active_tracks(self) -> int:
        """Confirmed tracks, root and nested, visible or still waiting (as of the last frame;
        a plain int, so other threads may read it while a frame is being tracked)."""
        return self._active

    def update(self, result: TreeResult) -> TreeResult:
        """The same result with track ids (and smoothed classifications when configured)."""
        self._frame += 1
        track_of: dict[int, int] = {0: NO_TRACK}  # detection id -> track id (0 = image)
        box_of = {d.id: d.box for d in result.detections}
        pending = list(result.detections)
        self._updated = set()
        while pending:  # level by level: parents get their track ids before their children
            level = [d for d in pending if d.parent_id in track_of]
            if not level:  # orphans (parent missing from the result): tracked like roots
                level = pending
            self._track_level(level, track_of, box_of)
            done = {d.id for d in level}
            pending = [d for d in pending if d.id not in done]
        present = set(track_of.values())  # NO_TRACK (the image) is always present
        for key in [k for k in self._slots if k not in self._updated and k[0] in present]:
            self._update_slot(key, [], [])  # a miss counts only where the parent is visible
        self._prune()
        self._active = sum(slot.tracker.alive_tracks() for slot in self._slots.values())
        detections = tuple(self._with_track(d, track_of[d.id]) for d in result.detections)
        return replace(result, detections=detections)

    def _track_level(self, level: list[Detection], track_of: dict[int, int], box_of) -> None:
        groups: dict[tuple[int, str], list[Detection]] = {}
        for det in level:
            parent_track = track_of.get(det.parent_id, NO_TRACK)
            if det.parent_id != 0 and parent_track == NO_TRACK:
                track_of[det.id] = NO_TRACK  # no parent track yet: nothing to nest it in
                continue
            groups.setdefault((parent_track, det.label), []).append(det)
        for key, dets in groups.items():
            if key[0] == NO_TRACK:
                boxes = [d.box for d in dets]
            else:
                boxes = [_relative(d.box, box_of[d.parent_id]) for d in dets]
            for det, track_id in zip(dets, self._update_slot(key, boxes, dets), strict=True):
                track_of[det.id] = track_id

    def _update_slot(self, key, boxes, dets) -> list[int]:
        slot = self._slots.get(key)
        if slot is None:
            if not dets:
                return []
            slot = _Slot(self._make_tracker(int(self.config.max_missed_frames)), 0, {})
            self._slots[key] = slot
        if dets:
            slot.last_frame = self._frame
        self._updated.add(key)
        local = slot.tracker.update(np.asarray(boxes, dtype=np.float32).reshape(len(boxes), 4))
        out = []
        for local_id in local.tolist():
            if local_id < 0:
                out.append(NO_TRACK)
                continue
            if local_id not in slot.ids:
                slot.ids[local_id] = next(self._next_id)
            out.append(slot.ids[local_id])
        return out

    def _prune(self) -> None:
        """Forget trackers (and smoothing state) whose tracks have all expired."""
        horizon = int(self.config.max_missed_frames) + 1
        stale = [k for k, s in self._slots.items() if self._frame - s.last_frame > horizon]
        for key in stale:
            del self._slots[key]
        old = [t for t, (seen, _) in self._smoothed.items() if self._frame - seen > horizon]
        for track_id in old:
            del self._smoothed[track_id]

    def _with_track(self, det: Detection, track_id: int) -> Detection:
        if track_id == NO_TRACK:
            return det
        alpha = float(self.config.classification_smoothing)
        if alpha <= 0.0 or not det.classifications:
            return replace(det, track_id=track_id)
        _, state = self._smoothed.get(track_id, (0, {}))
        smoothed = []
        for cls in det.classifications:
            key = tuple(s.label for s in cls.scores)
            raw = np.array([s.score for s in cls.scores], dtype=np.float64)
            prev = state.get(key)
            mean = raw if prev is None else alpha * prev + (1.0 - alpha) * raw
            state[key] = mean
            scores = tuple(
                LabelScore(s.label_index, s.label, float(m))
                for s, m in zip(cls.scores, mean, strict=True)
            )
            smoothed.append(Classification(cls.node_index, cls.region_id, scores))
        self._smoothed[track_id] = (self._frame, state)
        return replace(det, track_id=track_id, track_classifications=tuple(smoothed))


class Tracking:
    """One CameraTracker per camera name, created on first use (ids are per camera)."""

    def __init__(self, config: TrackingConfig | None = None):
        self.config = config or TrackingConfig()
        self._cameras: dict[str, CameraTracker] = {}
        _supervision()  # pay the import here (node configure), not on the first frame

    def camera(self, name: str) -> CameraTracker:
        if name not in self._cameras:
            self._cameras[name] = CameraTracker(self.config)
        return self._cameras[name]

    def update(self, camera: str, result: TreeResult) -> TreeResult:
        return self.camera(camera).update(result)

    @property
    def active_tracks(self) -> dict[str, int]:
        """Active tracks per camera (safe to read from another thread)."""
        return {name: cam.active_tracks for name, cam in list(self._cameras.items())}
