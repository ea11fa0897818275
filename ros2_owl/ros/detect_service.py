"""~/detect: a prompt run once on the newest frame of one camera, beside the stream.

The streaming prompt is never touched: a request gets its own encoded prompt and its own result.
The service callback runs in a DetachedCallbackGroup (OwlExecutor runs it beside the node's other
callbacks), hands the request to one worker thread and waits for it with the request's timeout;
the model runs on that worker, taking turns with the frame pipeline through the session's
encoder lock. It calls the predictor and the session's mask step, not FrameSession.process: a
one-shot result must not enter the camera's tracks or frame counters.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from ros2_owl.core.prompt import PromptError, caret_message
from ros2_owl.io.images import ImageConversionError, message_to_rgb
from ros2_owl.ros import messages
from ros2_owl.ros.executor import DetachedCallbackGroup
from ros2_owl.ros.guard import one_line
from ros2_owl.ros.spatial import detection_3d_array, stamp_ns
from ros2_owl.ros.web_bridge import select_camera
from ros2_owl.runtime.session import SessionFrame, segment_step
from ros2_owl.srv import Detect

__all__ = ["DEFAULT_TIMEOUT_S", "DetectService", "LatestFrames"]

DEFAULT_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 600.0
MAX_WAITING = 8  # requests queued for the worker at once; more are refused, never piled up


class LatestFrames:
    """The newest message of every camera (executor thread writes, the worker reads)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frames: dict[int, object] = {}

    def put(self, index: int, msg) -> None:
        with self._cond:
            self._frames[index] = msg
            self._cond.notify_all()

    def wait(self, index: int, timeout: float):
        """The newest frame of the camera, waiting up to `timeout` for a first one (or None)."""
        with self._cond:
            self._cond.wait_for(lambda: index in self._frames, timeout)
            return self._frames.get(index)

    def clear(self) -> None:
        with self._cond:
            self._frames.clear()


@dataclass
class _Answer:
    success: bool
    message: str
    result: object = None
    header: object = None
    msg_3d: object = None


class DetectService:
    """The ~/detect service of owl_node and the worker thread its requests run on."""

    def __init__(self, node):
        self._node = node
        self.frames = LatestFrames()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="owl_detect")
        self._waiting = 0
        self._lock = threading.Lock()
        self.service = node.create_service(
            Detect,
            "~/detect",
            node._guard.service("detect", self.handle),
            callback_group=DetachedCallbackGroup(),
        )

    def handle(self, req: Detect.Request, resp: Detect.Response) -> Detect.Response:
        """A detached thread (OwlExecutor): validate, queue, wait; never runs the model."""
        answer = self._answer(req)
        resp.success, resp.message = answer.success, answer.message
        if answer.success:
            resp.detections = messages.detection_array(answer.result, answer.header)
            resp.tree = messages.tree_array(answer.result, answer.header)
            if answer.msg_3d is not None:
                resp.has_3d, resp.detections_3d = True, answer.msg_3d
            masks = messages.mask_image(answer.result, answer.header)
            if masks is not None:  # prompts with {mask} labels, found or not
                resp.has_masks, resp.masks = True, masks
        first = answer.message.splitlines()[0] if answer.message else ""
        self._node.get_logger().info(f"detect {req.prompt!r:.80}: {first:.200}")
        return resp

    def _answer(self, req) -> _Answer:
        timeout = float(req.timeout) if req.timeout else DEFAULT_TIMEOUT_S
        if not 0.0 < timeout <= MAX_TIMEOUT_S:  # NaN fails this too
            return _Answer(False, f"timeout must be in (0, {MAX_TIMEOUT_S:g}] s, got {timeout!r}")
        node = self._node
        if node.phase != "active" or node.predictor is None:
            return _Answer(False, f"the node is {node.phase}: detect needs it active")
        if not req.prompt.strip():
            return _Answer(False, "the prompt is empty: give one, e.g. '[a red mug]'")
        try:
            cam = select_camera(node.cameras, req.camera.strip())
        except ValueError as exc:
            return _Answer(False, str(exc).replace("web_camera", "camera", 1))
        with self._lock:
            if self._waiting >= MAX_WAITING:
                return _Answer(False, f"busy: {MAX_WAITING} detect requests are waiting")
            self._waiting += 1
        future: Future = self._worker.submit(self._run, req.prompt, cam, timeout)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            return _Answer(False, f"timed out after {timeout:g} s (no frame or a slow model)")
        finally:
            with self._lock:
                self._waiting -= 1

    def _run(self, prompt: str, cam, timeout: float) -> _Answer:
        """Worker thread: encode the prompt, wait for a frame, run the model, build the 3D."""
        node = self._node
        live, predictor, session = node.active, node.predictor, node.session
        if predictor is None or session is None or live.config is None:
            return _Answer(False, f"the node is {node.phase}: detect needs it active")
        try:
            session.check_masks(prompt)  # {mask} without a sam_model: one line
            state = predictor.prepare(prompt, label_thresholds=live.settings.label_threshold_map())
        except (PromptError, ValueError) as exc:
            return _Answer(False, caret_message(prompt, exc))
        msg = self.frames.wait(cam.index, timeout)
        if msg is None:
            return _Answer(False, f"no frame from {cam.resolved_topic} within {timeout:g} s")
        try:
            image = message_to_rgb(msg)
            with node.encoder_lock:
                result = predictor.predict(image, state, live.config)
                result = segment_step(session, SessionFrame(cam.resolved_topic, image), result)
        except (ImageConversionError, ValueError) as exc:
            return _Answer(False, f"the newest frame of {cam.resolved_topic}: {one_line(exc)}")
        return _Answer(True, "ok", result, msg.header, self._boxes_3d(cam, result, msg.header))

    def _boxes_3d(self, cam, result, header):
        """Detection3DArray for this frame when the camera has depth (in target_frame if set)."""
        session = self._node.session
        if session is None:
            return None
        boxes = session.boxes_3d(cam.resolved_topic, stamp_ns(header.stamp), result)
        if boxes is None:
            return None
        msg = detection_3d_array(result, boxes, header, False)
        robot = self._node.robot_outputs
        return robot.to_target(cam.index, msg) if robot is not None else msg

    def close(self) -> None:
        self.frames.clear()
        self._worker.shutdown(wait=False, cancel_futures=True)
