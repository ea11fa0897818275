"""The frame path off the executor thread, running only while owl_node is active.

An inference thread encodes the newest frame of every waiting camera together (predict_batch)
and publishes each camera's results; a drawing thread renders annotated images, so drawing
never delays the next inference. Both read the node's live state through one immutable `Live`
snapshot per batch, which only the node's commit path replaces.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ros2_owl.core.draw import draw_result
from ros2_owl.core.predictor import PredictorConfig, PromptState
from ros2_owl.core.settings import Settings
from ros2_owl.io.images import ImageConversionError, message_to_rgb
from ros2_owl.ros import messages
from ros2_owl.ros.cameras import Camera
from ros2_owl.ros.messages import rgb_to_image_msg
from ros2_owl.ros.spatial import detection_3d_array, stamp_ns
from ros2_owl.runtime.session import FrameSession, ProcessedFrame, SessionFrame
from ros2_owl.runtime.slots import NewestSlots

__all__ = ["FrameOutputs", "FramePipeline", "Live"]


@dataclass(frozen=True)
class Live:
    """The node's live state, replaced as one reference (never half old, half new).

    `state` and `config` are None while the node is unconfigured (no models, nothing encoded).
    """

    settings: Settings
    state: PromptState | None = None
    config: PredictorConfig | None = None
    key: tuple = ()  # (prompt, label_thresholds) the state was encoded from


@dataclass
class FrameOutputs:
    """What a processed frame feeds besides its camera's publishers (each one optional)."""

    web: Any = None  # ros.web_bridge.WebBridge when the live page is on
    robot: Any = None  # ros.robot_outputs.RobotOutputs: target frame, markers, annotations


@dataclass
class _WaitingFrame:
    camera: Camera
    msg: Any
    received: float  # time.monotonic() when the callback ran


@dataclass
class _Drawing:
    camera: Camera
    image: Any
    result: Any
    header: Any


class FramePipeline:
    """Started on activate, stopped on deactivate: while stopped no thread runs, no frame waits."""

    def __init__(
        self,
        session: FrameSession,
        cameras: list[Camera],
        live: Callable[[], Live],
        warn: Callable[[Camera, str], None],
        outputs: FrameOutputs,
        context_ok: Callable[[], bool] = lambda: True,
    ):
        self._session = session  # its lock is shared with query registration on the executor
        self._cameras = len(cameras)
        self._live = live
        self._warn = warn
        self._outputs = outputs
        self._context_ok = context_ok  # False once Ctrl-C shut the context down
        self._waiting: NewestSlots[_WaitingFrame] = NewestSlots()  # camera index -> newest
        self._drawings: NewestSlots[_Drawing] = NewestSlots()  # a newer result replaces one
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name="owl_inference", daemon=True),
            threading.Thread(target=self._draw, name="owl_drawing", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def post(self, cam: Camera, msg, received: float) -> None:
        """Executor thread: hand a frame over; replaces the camera's unprocessed one."""
        if self._waiting.put(cam.index, _WaitingFrame(cam, msg, received), received):
            cam.stats.frame_dropped()

    def stop(self, timeout: float = 10.0) -> None:
        """Drop waiting frames and end both threads (a batch in flight finishes first)."""
        self._stopping.set()
        self._waiting.close()
        self._drawings.close()
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout)

    # ----- inference thread -------------------------------------------------------------------
    def _work(self) -> None:
        while items := self._waiting.take_batch(self._cameras):
            try:
                self._process_batch(items)
            except Exception as exc:  # never let one batch kill the worker
                if self._stopping.is_set() or not self._context_ok():
                    return  # deactivate or Ctrl-C while publishing: nothing failed
                for item in items:
                    item.camera.stats.frame_error(f"{type(exc).__name__}: {exc}")
                    self._warn(item.camera, f"inference failed: {type(exc).__name__}: {exc}")

    def _process_batch(self, items) -> None:
        live = self._live()  # one read: these frames use this snapshot to the end
        frames = []
        for item in items:
            try:
                image = message_to_rgb(item.msg)
            except ImageConversionError as exc:
                item.camera.stats.frame_bad(str(exc))
                self._warn(item.camera, f"dropped a bad frame: {exc}")
                continue
            stamp = stamp_ns(item.msg.header.stamp)  # pairs the frame with depth
            frames.append(
                (item, SessionFrame(item.camera.resolved_topic, image, item.received, stamp))
            )
        if not frames:
            return
        done = self._session.process([f for _, f in frames], live.state, live.config)
        for (item, _), processed in zip(frames, done, strict=True):
            if processed.result is None:  # the predictor refused this image (counted)
                self._warn(item.camera, f"dropped a bad frame: {processed.error}")
            else:
                self._publish(item, processed, live)

    def _publish(self, item, processed: ProcessedFrame, live: Live) -> None:
        """One camera's outputs (the session counted the frame done)."""
        cam, header, out = item.camera, item.msg.header, self._outputs
        result, image = processed.result, processed.frame.image
        pubs = cam.publishers
        tracking = self._session.tracking is not None
        pubs["detections"].publish(messages.detection_array(result, header, tracking))
        msg_3d = None
        if result.boxes_3d is not None:  # the session paired depth (unpaired: only counted)
            msg_3d = detection_3d_array(result, result.boxes_3d, header, tracking)
            if out.robot is not None:  # into target_frame; None: skipped (no transform)
                msg_3d = out.robot.to_target(cam.index, msg_3d)
            if msg_3d is not None:
                pubs["detections_3d"].publish(msg_3d)
        if out.robot is not None:
            out.robot.frame_done(cam, result, header, msg_3d, tracking, live.settings.prompt)
        pubs["tree"].publish(messages.tree_array(result, header))
        masks = messages.mask_image(result, header)
        if masks is not None:  # prompts with {mask} labels: every frame, found or not
            pubs["masks"].publish(masks)
        classification = messages.image_classification(result, header)
        if classification is not None:
            pubs["classification"].publish(classification)
        annotated = pubs["annotated_image"]
        if live.settings.publish_annotated and annotated.get_subscription_count() > 0:
            self._drawings.put(cam.index, _Drawing(cam, image, result, header))
        if out.web is not None:  # O(1): the page draws and sends on its own threads
            out.web.frame_done(cam, image, result, item.received, processed.inference_ms)

    # ----- drawing thread ---------------------------------------------------------------------
    def _draw(self) -> None:
        while (item := self._drawings.take()) is not None:
            try:
                msg = rgb_to_image_msg(draw_result(item.image, item.result), item.header)
                item.camera.publishers["annotated_image"].publish(msg)
            except Exception as exc:  # a drawing problem must not end the drawing thread
                if self._stopping.is_set() or not self._context_ok():
                    return
                self._warn(item.camera, f"drawing failed: {type(exc).__name__}: {exc}")
