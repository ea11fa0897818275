"""The one frame path: settings give the predictor, queries, prompt and tracker; frames give results.

Every front end (the node, `serve`, `bag`, `video`, `detect`) builds a FrameSession and hands it
frames with `process`; what happens to a result after the model (masks, track ids, 3D boxes
from the camera's depth) is a list of steps, FRAME_STEPS, so a new per-frame step is one edit
that every front end runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.predictor import PredictorConfig, PromptState, TreePredictor
from ..core.preprocess import load_image
from ..core.prompt import parse_prompt
from ..core.results import TreeResult
from ..core.tracking import Tracking, TrackingConfig
from .spatial import CameraDepth
from .stats import CameraStats

__all__ = [
    "FRAME_STEPS",
    "FrameSession",
    "FrameStep",
    "ProcessedFrame",
    "SessionFrame",
    "load_predictor",
    "load_segmenter",
    "make_tracking",
]


@dataclass(frozen=True)
class SessionFrame:
    """One image of one camera, as every front end hands it to the session."""

    camera: str  # the camera's name: tracks and stats are kept per camera
    image: np.ndarray  # HxWx3 uint8 RGB
    received: float | None = None  # monotonic time it arrived (latency; None = now)
    stamp_ns: int | None = None  # capture stamp: pairs the frame with depth (None = no 3D)


@dataclass(frozen=True)
class ProcessedFrame:
    """A frame's result after every step, or why the predictor refused the image."""

    frame: SessionFrame
    result: TreeResult | None
    error: str = ""  # the refusal (an ImageError's message) when result is None
    inference_ms: float = 0.0


FrameStep = Callable[["FrameSession", SessionFrame, TreeResult], TreeResult]


def segment_step(session: FrameSession, frame: SessionFrame, result: TreeResult) -> TreeResult:
    """Instance masks for the detections of labels marked `{mask}` (a segmenter is loaded):
    one image embedding per frame, all of its boxes in one decoder call."""
    if session.segmenter is None or result.tree is None:
        return result
    masked = set(result.tree.mask_labels())
    chosen = [d for d in result.detections if d.label_index in masked]
    if not chosen:
        return result
    started = time.perf_counter()
    boxes = torch.tensor([d.box for d in chosen], dtype=torch.float32)
    masks = session.segmenter.segment(load_image(frame.image), boxes)
    by_id = {d.id: m for d, m in zip(chosen, masks, strict=True)}
    detections = tuple(
        replace(d, mask=by_id[d.id]) if d.id in by_id else d for d in result.detections
    )
    timings = {**result.timings_ms, "segment": (time.perf_counter() - started) * 1e3}
    return replace(result, detections=detections, timings_ms=timings)


def track_step(session: FrameSession, frame: SessionFrame, result: TreeResult) -> TreeResult:
    """Track ids per camera (`tracking` on): frames of one camera arrive in order."""
    return result if session.tracking is None else session.tracking.update(frame.camera, result)


def spatial_step(session: FrameSession, frame: SessionFrame, result: TreeResult) -> TreeResult:
    """3D boxes for cameras with depth (runtime/spatial.py), paired by the frame's stamp;
    last, so they line up with the final detections (masks narrow the depth used)."""
    if frame.stamp_ns is None or frame.camera not in session.depth:
        return result
    return replace(result, boxes_3d=session.boxes_3d(frame.camera, frame.stamp_ns, result))


FRAME_STEPS: list[FrameStep] = [segment_step, track_step, spatial_step]  # in order


def load_predictor(
    settings, model: str | None = None, clip_model: str | None = None, upgrade: str = "wait"
):
    """The predictor these settings describe (`model`/`clip_model` override theirs: the demo);
    upgrade 'background' leaves backend auto's measurement to predictor.upgrade (not started).
    Torch image encoders a runtime backend replaced from the start are freed."""
    from ..backends.triton_backend import triton_options
    from ..core.encoder_upgrade import free_unused

    clip = settings.clip_model if clip_model is None else clip_model
    predictor = TreePredictor.from_pretrained(
        model or settings.model,
        clip or None,
        device=settings.device,
        dtype=settings.dtype,
        backend=settings.backend,
        config=settings.predictor_config(),
        cache_dir=settings.cache_dir or None,
        precision=settings.precision,
        triton=triton_options(settings),
        upgrade=upgrade,
    )
    free_unused(predictor)
    return predictor


def load_segmenter(settings):
    """The SAM segmenter `sam_model` names, on the settings' device (None: no masks)."""
    if not settings.sam_model:
        return None
    from ..models.sam import SamSegmenter

    return SamSegmenter.load(
        settings.sam_model,
        device=settings.device,
        backend=settings.sam_backend,
        artefact_dir=settings.cache_dir or None,
    )


def make_tracking(settings) -> Tracking | None:
    """Per-camera track ids when `tracking` is on (ImportError says how to get supervision)."""
    if not settings.tracking:
        return None
    config = TrackingConfig(
        max_missed_frames=settings.track_max_missed_frames,
        classification_smoothing=settings.classification_smoothing,
    )
    try:
        return Tracking(config)
    except ImportError as exc:
        raise ImportError(
            f"tracking: true needs supervision ({exc}); pip install 'supervision>=0.30,<0.31'"
        ) from exc


class FrameSession:
    """Owns the predictor, its queries, the prompt state, the tracker, depth pairing and the
    per-camera stats; `process` runs frames through the model (one batched call), then
    FRAME_STEPS."""

    def __init__(
        self,
        predictor: TreePredictor,
        settings,
        prompt: str | None = None,
        lock: Any = None,
        segmenter=None,
    ):
        self.predictor = predictor
        self.settings = settings
        self.segmenter = segmenter  # SamSegmenter for `{mask}` labels, or None
        self.tracking = make_tracking(settings)
        self.steps: list[FrameStep] = list(FRAME_STEPS)
        # image encoders may not be re-entrant (one TensorRT execution context): inference and
        # a query registration on another thread take turns on this lock
        self.lock = lock if lock is not None else threading.Lock()
        self.stats: dict[str, CameraStats] = {}
        self.depth: dict[str, CameraDepth] = {}  # camera -> its depth input (add_depth)
        self.state: PromptState | None = self.prepare(prompt) if prompt else None

    @classmethod
    def from_settings(
        cls,
        settings,
        prompt: str | None = None,
        *,
        predictor: TreePredictor | None = None,
        queries_missing_ok: bool = False,
        lock: Any = None,
    ) -> FrameSession:
        """Load the models (unless `predictor` is given) and the queries file, encode `prompt`."""
        predictor = predictor or load_predictor(settings)
        session = cls(predictor, settings, lock=lock, segmenter=load_segmenter(settings))
        session.load_queries(missing_ok=queries_missing_ok)
        if prompt:
            session.state = session.prepare(prompt)
        return session

    def load_queries(self, missing_ok: bool = False) -> tuple[str, ...]:
        """The settings' queries_file into the predictor (a missing file is fine for the node,
        whose register_query creates it)."""
        path = self.settings.queries_file
        if not path or (missing_ok and not Path(path).exists()):
            return ()
        return self.predictor.load_queries(path)

    def prepare(self, prompt: str) -> PromptState:
        """Encode `prompt` with the settings' per-label thresholds (it does not replace .state)."""
        self.check_masks(prompt)
        thresholds = self.settings.label_threshold_map()
        return self.predictor.prepare(prompt, label_thresholds=thresholds)

    def check_masks(self, prompt: str) -> None:
        """ValueError when the prompt marks labels {mask} and no segmenter is loaded (every
        front end's prompt change asks this before encoding)."""
        if self.segmenter is None and parse_prompt(prompt).mask_labels():
            raise ValueError(
                "the prompt marks labels {mask} but no SAM model is loaded: set sam_model "
                "(e.g. facebook/sam-vit-base), or remove {mask}"
            )

    def add_depth(self, camera: str, depth: CameraDepth) -> CameraDepth:
        """Give a camera depth: its frames with a stamp get 3D boxes from now on."""
        self.depth[camera] = depth
        return depth

    def boxes_3d(self, camera: str, stamp_ns: int, result: TreeResult):
        """The camera's 3D boxes for a result (None: no depth paired it; counted there)."""
        depth = self.depth.get(camera)
        if depth is None:
            return None
        dets = result.detections
        masks = [d.mask.mask if d.mask else None for d in dets]
        return depth.boxes_3d(stamp_ns, [d.box for d in dets], result.image_size, masks)

    def camera_stats(self, camera: str) -> CameraStats:
        """The counters of one camera (created on first use)."""
        if camera not in self.stats:
            self.stats[camera] = CameraStats(camera)
        return self.stats[camera]

    def process(
        self,
        frames: Sequence[SessionFrame],
        state: PromptState | None = None,
        config: PredictorConfig | None = None,
    ) -> list[ProcessedFrame]:
        """Every frame through the model and the steps, in order. Frames share one encoder call;
        when the predictor refuses one image (ValueError), each is run alone to say which."""
        state = state or self.state
        if state is None:
            raise RuntimeError("no prompt: prepare one first")
        if len(frames) == 1:
            return [self._process_one(frames[0], state, config)]
        started = time.monotonic()
        try:
            with self.lock:
                images = [f.image for f in frames]
                results = self.predictor.predict_batch(images, [state] * len(frames), config)
        except ValueError:
            return [self._process_one(f, state, config) for f in frames]
        inference_ms = (time.monotonic() - started) * 1000.0
        return [self._finish(f, r, inference_ms) for f, r in zip(frames, results, strict=True)]

    def _process_one(self, frame: SessionFrame, state: PromptState, config) -> ProcessedFrame:
        started = time.monotonic()
        try:
            with self.lock:
                result = self.predictor.predict(frame.image, state, config)
        except ValueError as exc:  # ImageError: the predictor refuses this image
            self.camera_stats(frame.camera).frame_bad(str(exc))
            return ProcessedFrame(frame, None, str(exc), (time.monotonic() - started) * 1000.0)
        return self._finish(frame, result, (time.monotonic() - started) * 1000.0)

    def _finish(self, frame: SessionFrame, result: TreeResult, inference_ms: float):
        for step in self.steps:
            result = step(self, frame, result)
        now = time.monotonic()
        received = now if frame.received is None else frame.received
        self.camera_stats(frame.camera).frame_done((now - received) * 1000.0, inference_ms, now)
        return ProcessedFrame(frame, result, "", inference_ms)
