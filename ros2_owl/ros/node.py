"""OwlNode: camera frames in, tree detections out; prompt by parameter or service."""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

from ros2_owl.backends.triton_backend import triton_options
from ros2_owl.draw import draw_result
from ros2_owl.msg import TreeDetectionArray
from ros2_owl.predictor import PredictorConfig, PromptState, TreePredictor
from ros2_owl.prompt import PromptError, caret_message
from ros2_owl.ros import messages
from ros2_owl.ros.cameras import (
    Camera,
    Mailbox,
    input_qos,
    is_compressed_topic,
    no_frame_message,
    output_prefixes,
    output_topic,
)
from ros2_owl.ros.convert import ImageConversionError, message_to_rgb, rgb_to_image_msg
from ros2_owl.ros.diagnostics import (
    CameraStats,
    build_diagnostics,
    camera_status,
    encoder_facts,
    node_status,
)
from ros2_owl.ros.guard import CallbackGuard
from ros2_owl.ros.params import declare_parameters, read_settings, validate_parameter
from ros2_owl.ros.spatial import DepthInput, detection_3d_array, subscribe_depth
from ros2_owl.settings import Settings, format_label_thresholds
from ros2_owl.srv import RegisterQuery, SetPrompt
from ros2_owl.tracking import Tracking, TrackingConfig

__all__ = ["OwlNode", "StartupError", "main"]

_OUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
_LATCHED_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class StartupError(RuntimeError):
    """The node cannot start with these parameters; the message says which and why."""


@dataclass(frozen=True)
class Active:
    """Everything one frame uses, swapped as one reference: never half old, half new."""

    state: PromptState
    config: PredictorConfig
    key: tuple  # (prompt, label_thresholds) the state was built from


@dataclass(frozen=True)
class PromptChange:
    """The answer to one prompt change (service or page): refused ones say why and where."""

    ok: bool
    message: str
    column: int | None = None
    active: Active | None = None  # the state now in force when ok


def _prompt_key(s: Settings) -> tuple:
    """What the encoded state depends on; the default threshold lives in PredictorConfig."""
    return (s.prompt, s.label_thresholds)


class OwlNode(Node):
    """Runs a TreePredictor on one or more cameras; see README for topics and parameters."""

    def __init__(self, *, predictor: TreePredictor | None = None, **node_kwargs: Any):
        super().__init__("owl_node", **node_kwargs)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._mailbox = Mailbox()
        self._guard = CallbackGuard(self.get_logger())  # no callback exception ends spin()
        try:
            self._setup(predictor)
        except BaseException:
            self.destroy_node()  # no half-built node left for rclpy.shutdown() to tear down
            raise

    def _setup(self, predictor: TreePredictor | None) -> None:
        try:
            declare_parameters(self)
        except Exception as exc:  # a --params-file value of the wrong type or out of range
            raise StartupError(f"invalid parameter value: {exc}") from exc
        self._settings = read_settings(self)
        problems = self._settings.validate()
        if problems:
            raise StartupError("invalid parameters: " + "; ".join(problems))
        try:
            prefixes = output_prefixes(self._settings.image_topics, self._settings.camera_names)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        s = self._settings
        self.predictor = predictor or self._load_predictor(s)
        problem = self.predictor.config_problem(s.predictor_config())
        if problem:  # e.g. region_resolution adaptive with backend triton
            raise StartupError(f"invalid parameters: {problem}")
        if s.queries_file:
            self._load_queries(s.queries_file)
        try:
            self._active = self._build(s)
        except (PromptError, ValueError) as exc:
            raise StartupError(f"prompt parameter: {caret_message(s.prompt, exc)}") from exc
        self._pending: tuple[Settings, Active] | None = None
        self._prompt_lock = threading.RLock()  # one prompt write at a time (service, page, params)
        self._web = None
        # image encoders may not be re-entrant (one TensorRT execution context): the worker's
        # predict and a query registration on the executor thread take turns
        self._encoder_lock = threading.Lock()
        self._warn_times: dict[str, float] = {}
        self._tracking = self._make_tracking(s)
        self._depth: dict[int, DepthInput] = {}  # camera index -> its depth input (3D on)
        self.cameras = [self._make_camera(i, t, prefixes[i]) for i, t in enumerate(s.image_topics)]
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._previous_stats: dict[int, Any] = {}
        g = self._guard
        self.add_on_set_parameters_callback(g.parameters(self._on_set_parameters))
        self.add_post_set_parameters_callback(
            g.call("parameter update", self._after_set_parameters)
        )
        self.create_service(
            SetPrompt, "~/set_prompt", g.service("set_prompt", self._srv_set_prompt)
        )
        self.create_service(
            RegisterQuery,
            "~/register_query",
            g.service("register_query", self._srv_register_query),
        )
        self.create_timer(s.diagnostics_period, g.call("diagnostics", self._publish_diagnostics))
        if s.no_frame_warning > 0:
            self._no_frame_timer = self.create_timer(
                s.no_frame_warning, g.call("no-frame check", self._check_no_frames)
            )
        self._publish_label_info()
        if s.web_port:
            self._start_web(s)
        self._worker = threading.Thread(target=self._work, name="owl_inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: model {s.model} ({self.predictor.backend_summary()} on {s.device}), prompt "
            f"{s.prompt!r}, inputs "
            + ", ".join(f"{c.resolved_topic} -> {c.prefix or '.'}/" for c in self.cameras)
        )

    # ----- start-up -------------------------------------------------------------------------
    def _load_predictor(self, s: Settings) -> TreePredictor:
        try:
            return TreePredictor.from_pretrained(
                model=s.model,
                clip_model=s.clip_model or None,
                device=s.device,
                dtype=s.dtype,
                backend=s.backend,
                config=s.predictor_config(),
                cache_dir=s.cache_dir or None,
                precision=s.precision,
                triton=triton_options(s),
            )
        except Exception as exc:  # ModelLoadError, BackendError, torch errors: all fatal here
            raise StartupError(f"could not load the models: {exc}") from exc

    def _load_queries(self, path: str) -> None:
        from pathlib import Path

        if Path(path).exists():
            try:
                self.predictor.load_queries(path)
            except Exception as exc:
                raise StartupError(f"queries_file {path}: {exc}") from exc

    def _make_camera(self, index: int, topic: str, prefix: str) -> Camera:
        s = self._settings
        cam = Camera(index, topic, prefix, is_compressed_topic(topic), CameraStats(topic))
        msg_type = CompressedImage if cam.compressed else Image
        qos = input_qos(s.input_reliability, s.input_depth)
        on_frame = self._guard.call(f"frame callback of {topic}", self._on_frame)
        sub = self.create_subscription(msg_type, topic, lambda m, c=cam: on_frame(c, m), qos)
        cam.resolved_topic = sub.topic_name
        cam.stats.topic = sub.topic_name
        pubs = {
            "detections": (Detection2DArray, _OUT_QOS),
            "tree": (TreeDetectionArray, _OUT_QOS),
            "classification": (Classification, _OUT_QOS),
            "label_info": (LabelInfo, _LATCHED_QOS),
            "annotated_image": (Image, QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)),
        }
        for name, (kind, out_qos) in pubs.items():
            cam.publishers[name] = self.create_publisher(kind, output_topic(prefix, name), out_qos)
        if s.depth_topics:
            self._make_depth_input(cam, qos)
        return cam

    def _make_tracking(self, s: Settings) -> Tracking | None:
        """Track ids per camera when `tracking` is on (imports the tracker library here)."""
        if not s.tracking:
            return None
        config = TrackingConfig(
            max_missed_frames=s.track_max_missed_frames,
            classification_smoothing=s.classification_smoothing,
        )
        try:
            return Tracking(config)
        except ImportError as exc:
            raise StartupError(
                f"tracking: true needs supervision ({exc}); pip install 'supervision>=0.30,<0.31'"
            ) from exc

    def _make_depth_input(self, cam: Camera, qos: QoSProfile) -> None:
        """Depth + CameraInfo subscriptions of one camera and its detections_3d publisher."""
        s = self._settings
        info = s.camera_info_topics[cam.index] if s.camera_info_topics else None
        self._depth[cam.index] = subscribe_depth(
            self, cam, s.depth_topics[cam.index], info, s.depth_tolerance, qos, _OUT_QOS
        )

    def _start_web(self, s: Settings) -> None:
        """The live page (opt-in web_port), fed by the selected camera (ros/web_bridge.py)."""
        from ros2_owl.ros.web_bridge import start_web_bridge

        try:
            self._web = start_web_bridge(self, s)
        except Exception as exc:  # a taken port, a bad host or camera: a start-up error
            raise StartupError(f"web page: {exc}") from exc
        cam = self._web.camera
        self.get_logger().info(f"live page on {self._web.server.url} ({cam.resolved_topic})")

    # ----- prompt state ---------------------------------------------------------------------
    def _build(self, s: Settings, reuse: Active | None = None) -> Active:
        """A new Active for these settings; re-encodes the prompt only when its inputs changed."""
        key = _prompt_key(s)
        if reuse is not None and reuse.key == key:
            state = reuse.state
        else:
            state = self.predictor.prepare(s.prompt, label_thresholds=s.label_threshold_map())
        return Active(state=state, config=s.predictor_config(), key=key)

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate, and build the new state now; a rejected change leaves everything as it was."""
        with self._prompt_lock:
            return self._check_parameters(params)

    def _check_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            reason = validate_parameter(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        candidate = self._settings.updated(params)
        problem = self.predictor.config_problem(candidate.predictor_config())
        if problem:
            return SetParametersResult(successful=False, reason=problem)
        try:
            active = self._build(candidate, reuse=self._active)
        except (PromptError, ValueError) as exc:
            return SetParametersResult(
                successful=False, reason=caret_message(candidate.prompt, exc)
            )
        self._pending = (candidate, active)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        with self._prompt_lock:
            self._swap_pending()

    def _swap_pending(self) -> None:
        if self._pending is None:
            return
        candidate, active = self._pending
        self._pending = None
        prompt_changed = active.state is not self._active.state
        threshold_changed = candidate.threshold != self._settings.threshold
        self._settings, self._active = candidate, active
        if prompt_changed or threshold_changed:  # LabelInfo carries both
            self._publish_label_info()
        if prompt_changed:
            self.get_logger().info(f"prompt now {candidate.prompt!r}")

    @property
    def active(self) -> Active:
        """The prompt state and per-frame config in force (one reference, swapped whole)."""
        return self._active

    @property
    def settings(self) -> Settings:
        return self._settings

    def apply_prompt(self, prompt: str, overrides: dict[str, float] | None = None) -> PromptChange:
        """Validate, build and swap a prompt (+ per-label thresholds), then set the `prompt` /
        `label_thresholds` parameters: the one path of ~/set_prompt and the live page."""
        label_thresholds = None if overrides is None else tuple(format_label_thresholds(overrides))
        bad = label_thresholds and validate_parameter("label_thresholds", label_thresholds)
        if bad:
            return PromptChange(False, bad)
        with self._prompt_lock:  # the page's thread and the executor never interleave a change
            s = self._settings
            candidate = replace(
                s,
                prompt=prompt,
                label_thresholds=s.label_thresholds
                if label_thresholds is None
                else label_thresholds,
            )
            try:
                reason = validate_parameter("prompt", candidate.prompt)
                if reason:
                    raise ValueError(reason)
                active = self._build(candidate, reuse=self._active)
            except (PromptError, ValueError) as exc:
                column = getattr(exc, "column", None)
                return PromptChange(False, caret_message(prompt, exc), column)
            self._settings, self._active = candidate, active  # the swap frames see
            changes = [Parameter("prompt", value=candidate.prompt)]
            if label_thresholds is not None:
                changes.append(
                    Parameter(
                        "label_thresholds", Parameter.Type.STRING_ARRAY, list(label_thresholds)
                    )
                )
            result = self.set_parameters_atomically(changes)  # same key: no second build
            self._publish_label_info()
        message = "ok" if result.successful else f"ok; parameter not updated: {result.reason}"
        return PromptChange(True, message, None, active)

    def _srv_set_prompt(self, req: SetPrompt.Request, resp: SetPrompt.Response):
        overrides = {t.label: float(t.threshold) for t in req.thresholds}
        change = self.apply_prompt(req.prompt, overrides if req.thresholds else None)
        resp.success, resp.message = change.ok, change.message
        if not change.ok:
            return resp
        tree = change.active.state.tree
        resp.warnings = [f"column {w.column}: {w.message}" for w in tree.warnings]
        unused = [k for k in overrides if k not in tree.label_texts[1:]]
        if unused:
            note = (
                f"thresholds for labels that are not in the prompt: {unused!r:.200}; they are "
                "kept in label_thresholds and apply when a prompt has those labels"
            )
            resp.message += f"; warning: {note}"
            resp.warnings.append(note)
        resp.labels = list(tree.label_texts)
        resp.nodes = messages.tree_nodes(tree)
        resp.tree_json = tree.to_json()
        self.get_logger().info(f"prompt set by service: {req.prompt!r}")
        return resp

    def _srv_register_query(self, req: RegisterQuery.Request, resp: RegisterQuery.Response):
        name = req.name.strip().lstrip("$")
        try:
            if not name:
                raise ValueError("the query name must not be empty")
            image = message_to_rgb(req.image)
            h, w = image.shape[:2]
            whole = req.bbox.size_x == 0 and req.bbox.size_y == 0  # "no box": the model's rule
            box = None if whole else messages.corners_from_bbox(req.bbox)
            with self._encoder_lock:
                self.predictor.register_query(name, image, box)
            if self._settings.queries_file:
                self.predictor.save_queries(self._settings.queries_file)
            if f"${name}" in self._settings.prompt:  # the state holds the old query embedding
                self._active = replace(self._build(self._settings), key=self._active.key)
        except (ImageConversionError, PromptError, ValueError, OSError) as exc:
            resp.success, resp.message = False, f"query {name!r} not registered: {exc}"
            return resp
        resp.success, resp.message = True, f"registered ${name} from a {w}x{h} image"
        return resp

    def _publish_label_info(self) -> None:
        header = Header(stamp=self.get_clock().now().to_msg())
        msg = messages.label_info(self._active.state.tree, self._settings.threshold, header)
        for cam in self.cameras:
            cam.publishers["label_info"].publish(msg)

    # ----- frames -------------------------------------------------------------------------
    def _on_frame(self, cam: Camera, msg) -> None:
        """Executor thread: count, rate-limit and post to the mailbox; never waits for the model."""
        now = time.monotonic()
        cam.stats.frame_received(now)
        rate = self._settings.max_rate
        if rate > 0 and now - cam.last_accepted < 1.0 / rate:
            cam.stats.frame_rate_limited()
            return
        cam.last_accepted = now
        self._mailbox.put(cam, msg, now)

    def _work(self) -> None:
        """The inference thread: the newest frame of every waiting camera, encoded together
        (predict_batch), then decoded and published per camera in the order they arrived."""
        while not self._stop.is_set():
            items = self._mailbox.take_batch(len(self.cameras), timeout=0.5)
            if not items:
                continue
            try:
                self._process_batch(items)
            except Exception as exc:  # never let one batch kill the worker
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down (Ctrl-C): the publishers are gone, nothing failed
                for item in items:
                    item.camera.stats.frame_error(f"{type(exc).__name__}: {exc}")
                    self._warn_throttled(
                        item.camera, f"inference failed: {type(exc).__name__}: {exc}"
                    )

    def _process_batch(self, items) -> None:
        active = self._active  # one read: these frames use this state to the end
        frames = []
        for item in items:
            try:
                frames.append((item, message_to_rgb(item.msg)))
            except ImageConversionError as exc:
                item.camera.stats.frame_bad(str(exc))
                self._warn_throttled(item.camera, f"dropped a bad frame: {exc}")
        if not frames:
            return
        t0 = time.monotonic()
        try:
            with self._encoder_lock:
                results = self.predictor.predict_batch(
                    [image for _, image in frames], [active.state] * len(frames), active.config
                )
        except ValueError:  # ImageError: one image is refused; run them one by one to say which
            for item, image in frames:
                self._process(item.camera, item.msg, item.received, image, active)
            return
        inference_ms = (time.monotonic() - t0) * 1000.0
        for (item, image), result in zip(frames, results, strict=True):
            self._publish(item.camera, item.msg, item.received, image, result, inference_ms)

    def _process(self, cam: Camera, msg, received: float, image, active) -> None:
        t0 = time.monotonic()
        try:
            with self._encoder_lock:
                result = self.predictor.predict(image, active.state, active.config)
        except ValueError as exc:  # ImageError: the predictor refuses this image
            cam.stats.frame_bad(str(exc))
            self._warn_throttled(cam, f"dropped a bad frame: {exc}")
            return
        self._publish(cam, msg, received, image, result, (time.monotonic() - t0) * 1000.0)

    def _publish(self, cam: Camera, msg, received: float, image, result, inference_ms) -> None:
        """One camera's outputs; its latency runs from its own frame's arrival."""
        header = msg.header
        pubs = cam.publishers
        tracking = self._tracking is not None
        if tracking:
            result = self._tracking.update(cam.resolved_topic, result)
        pubs["detections"].publish(messages.detection_array(result, header, tracking))
        if cam.index in self._depth:
            self._publish_3d(cam, result, header)
        pubs["tree"].publish(messages.tree_array(result, header))
        classification = messages.image_classification(result, header)
        if classification is not None:
            pubs["classification"].publish(classification)
        annotated = pubs["annotated_image"]
        if self._settings.publish_annotated and annotated.get_subscription_count() > 0:
            annotated.publish(rgb_to_image_msg(draw_result(image, result), header))
        now = time.monotonic()
        cam.stats.frame_done((now - received) * 1000.0, inference_ms, now)
        if self._web is not None:  # O(1): the page draws and sends on its own threads
            self._web.frame_done(cam, image, result, received, inference_ms)

    def _publish_3d(self, cam: Camera, result, header) -> None:
        """detections_3d for a frame paired with depth; unpaired frames are only counted."""
        boxes = [d.box for d in result.detections]
        boxes_3d = self._depth[cam.index].boxes_3d(header, boxes, result.image_size)
        if boxes_3d is not None:
            msg = detection_3d_array(result, boxes_3d, header, self._tracking is not None)
            cam.publishers["detections_3d"].publish(msg)

    def _camera_extras(self, cam: Camera) -> dict:
        """Tracking and depth counters of one camera for its diagnostics status."""
        extra: dict = {}
        if self._tracking is not None:
            extra["active_tracks"] = self._tracking.active_tracks.get(cam.resolved_topic, 0)
        if cam.index in self._depth:
            extra.update(self._depth[cam.index].values())
        return extra

    def _warn_throttled(self, cam: Camera, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        key = cam.resolved_topic
        if now - self._warn_times.get(key, float("-inf")) >= period:
            self._warn_times[key] = now
            self.get_logger().warning(
                f"{cam.resolved_topic}: {text} (repeats are muted {period:g} s)"
            )

    # ----- monitoring ---------------------------------------------------------------------
    def _check_no_frames(self) -> None:
        self._no_frame_timer.cancel()
        s = self._settings
        for cam in self.cameras:
            if not cam.stats.received:
                publishers = self.get_publishers_info_by_topic(cam.resolved_topic)
                self.get_logger().warning(
                    no_frame_message(
                        cam, s.no_frame_warning, s.input_reliability, s.input_depth, publishers
                    )
                )

    def _publish_diagnostics(self) -> None:
        name = self.get_fully_qualified_name()
        s = self._settings
        statuses = [
            node_status(
                name,
                model=s.model,
                clip_model=s.clip_model or "none",
                backend=s.backend,
                backend_choice=self.predictor.backend_summary(),
                device=s.device,
                prompt=s.prompt,
                callback_errors=self._guard.errors,
                last_callback_error=self._guard.last_error or "none",
                **encoder_facts(self.predictor.owl_encoder),
            )
        ]
        for cam in self.cameras:
            snap = cam.stats.snapshot()
            previous = self._previous_stats.get(cam.index)
            extra = self._camera_extras(cam)
            statuses.append(camera_status(name, snap, previous, s.no_frame_warning, extra))
            self._previous_stats[cam.index] = snap
        self._diag_pub.publish(build_diagnostics(self.get_clock().now().to_msg(), statuses))

    def destroy_node(self) -> None:
        if getattr(self, "_web", None) is not None:
            self._web.stop()
        self._stop.set()
        self._mailbox.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=10)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run ros2_owl owl_node`: exit 2 with a clear message on bad setup."""
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = OwlNode()
        except StartupError as exc:
            print(f"owl_node: cannot start: {exc}", file=sys.stderr, flush=True)
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C under `ros2 launch` reaches the node twice (from the terminal and forwarded by
        # launch): a second SIGINT must not interrupt the teardown with a KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
