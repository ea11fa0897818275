"""OwlNode: camera frames in, tree detections out; a managed (lifecycle) node.

configure loads the models and encodes the prompt, activate subscribes and starts the frame
pipeline, deactivate stops both (models and prompt stay), cleanup frees the models, shutdown
ends it from any state. With `autostart: true` (the default) the node drives itself to active
at construction, as a plain node starts. Frames run in ros/pipeline.py, the live state's one write
path (parameters, services, the page) is ros/live_state.py, diagnostics ros/node_monitoring.py.
About 430 lines: the state machine's transitions and what each one creates or frees belong
together, so a reader sees in one place what every state holds.
"""

from __future__ import annotations

import ctypes
import gc
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Classification, Detection2DArray, Detection3DArray, LabelInfo

from ros2_owl.backends.triton_backend import triton_options
from ros2_owl.encoder_upgrade import free_unused
from ros2_owl.msg import TreeDetectionArray
from ros2_owl.predictor import TreePredictor
from ros2_owl.prompt import PromptError, caret_message
from ros2_owl.ros.cameras import (
    Camera,
    input_qos,
    is_compressed_topic,
    output_prefixes,
    output_topic,
)
from ros2_owl.ros.diagnostics import (
    CameraStats,
)
from ros2_owl.ros.guard import CallbackGuard, one_line
from ros2_owl.ros.live_state import LiveStateMixin, PromptChange
from ros2_owl.ros.node_monitoring import MonitoringMixin
from ros2_owl.ros.params import declare_parameters, read_settings
from ros2_owl.ros.pipeline import FrameOutputs, FramePipeline, Live
from ros2_owl.ros.spatial import DepthInput, subscribe_depth
from ros2_owl.ros.startup import StartupError, init_ros
from ros2_owl.settings import Settings
from ros2_owl.srv import RegisterQuery, SetPrompt
from ros2_owl.tracking import Tracking, TrackingConfig

__all__ = ["OwlNode", "PromptChange", "StartupError", "main"]

_OUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
_LATCHED_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
_OUTPUTS = {
    "detections": (Detection2DArray, _OUT_QOS),
    "tree": (TreeDetectionArray, _OUT_QOS),
    "classification": (Classification, _OUT_QOS),
    "label_info": (LabelInfo, _LATCHED_QOS),
    "annotated_image": (Image, QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)),
}
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ConfigureError(RuntimeError):
    """configure failed; the one-line message says why (the node stays unconfigured)."""


def _release_freed_memory() -> None:
    """Give freed model memory back to the system (glibc keeps freed heap otherwise)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class OwlNode(LiveStateMixin, MonitoringMixin, LifecycleNode):
    """Runs a TreePredictor on one or more cameras; see README for topics, parameters, states."""

    def __init__(self, *, predictor: TreePredictor | None = None, **node_kwargs: Any):
        super().__init__("owl_node", **node_kwargs)
        self._given_predictor = predictor
        self.predictor: TreePredictor | None = None
        self.cameras: list[Camera] = []
        self._pipeline: FramePipeline | None = None
        self._outputs = FrameOutputs()
        self._while_active: list[Any] = []  # subscriptions and timers of the active state
        self._no_frame_timer = None
        self._diag_pub = None
        self._phase = "unconfigured"
        self._pending: Live | None = None
        self._prepared: Live | None = None  # encoded by apply_prompt, reused by on-set
        self._prompt_lock = threading.RLock()  # one prompt write at a time (service, page, params)
        # image encoders may not be re-entrant (one TensorRT execution context): the pipeline's
        # predict and a query registration on the executor thread take turns
        self._encoder_lock = threading.Lock()
        self._warn_times: dict[str, float] = {}
        self._previous_stats: dict[int, Any] = {}
        self._guard = CallbackGuard(self.get_logger())  # no callback exception ends spin()
        self._quiet_configure = False  # autostart: main() prints the one line instead
        self.last_error = ""
        try:
            declare_parameters(self)
        except Exception as exc:  # a --params-file value of the wrong type or out of range
            self.destroy_node()
            raise StartupError(f"invalid parameter value: {exc}") from exc
        self._live = Live(read_settings(self))
        g = self._guard
        self._watch_parameters(g)
        if self._live.settings.autostart:
            reason = self.start()
            if reason:
                self.destroy_node()  # no half-built node left for rclpy.shutdown()
                raise StartupError(reason)
        # after autostart: with it, ~/set_prompt appearing means the node is active
        self.create_service(
            SetPrompt, "~/set_prompt", g.service("set_prompt", self._srv_set_prompt)
        )
        self.create_service(
            RegisterQuery, "~/register_query", g.service("register_query", self._srv_register_query)
        )

    def start(self) -> str:
        """configure + activate (autostart); returns why it failed, or '' when active."""
        self._quiet_configure = True
        try:
            if self.trigger_configure() != SUCCESS:
                return self.last_error or "configure failed"
        finally:
            self._quiet_configure = False
        if self.trigger_activate() != SUCCESS:
            return self.last_error or "activate failed"
        return ""

    @property
    def active(self) -> Live:
        """The live state in force (settings, encoded prompt, per-frame config): one reference."""
        return self._live

    @property
    def settings(self) -> Settings:
        return self._live.settings

    @property
    def phase(self) -> str:
        """unconfigured, inactive, active or finalized."""
        return self._phase

    # ----- lifecycle transitions --------------------------------------------------------------
    def _transition(self, name: str, step, undo) -> TransitionCallbackReturn:
        """Run one transition's work: a ConfigureError fails it with its one-line reason, any
        other exception (a bug) is counted by the guard; `undo` restores the state the failed
        transition returns to, and the node stays up."""
        try:
            step()
        except ConfigureError as exc:
            self.last_error = str(exc)
        except Exception as exc:
            self.last_error = f"internal error: {self._guard.failed(name, exc)}"
        else:
            return SUCCESS
        undo()
        if not self._quiet_configure:
            self.get_logger().error(f"{name} failed: {self.last_error}")
        return FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("configure", self._configure, self._release)

    def _configure(self) -> None:
        s = self._live.settings
        problems = s.validate()
        if problems:
            raise ConfigureError("invalid parameters: " + "; ".join(problems))
        try:
            prefixes = output_prefixes(s.image_topics, s.camera_names)
        except ValueError as exc:
            raise ConfigureError(str(exc)) from exc
        if self._given_predictor is not None:
            self.predictor = self._given_predictor
        else:  # ours: torch image encoders a runtime backend replaced are freed
            self.predictor = self._load_predictor(s)
            free_unused(self.predictor)
        problem = self.predictor.config_problem(s.predictor_config())
        if problem:  # e.g. region_resolution adaptive with backend triton
            raise ConfigureError(f"invalid parameters: {problem}")
        if s.queries_file and Path(s.queries_file).exists():
            try:
                self.predictor.load_queries(s.queries_file)
            except Exception as exc:
                raise ConfigureError(f"queries_file {s.queries_file}: {exc}") from exc
        try:
            live = self._prepare(s)
        except (PromptError, ValueError) as exc:
            raise ConfigureError(f"prompt parameter: {caret_message(s.prompt, exc)}") from exc
        self._outputs = FrameOutputs(tracking=self._make_tracking(s))
        self.cameras = [self._make_camera(i, t, prefixes[i]) for i, t in enumerate(s.image_topics)]
        self._diag_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self._commit(live)
        if s.web_port:
            self._start_web(s)
        self._phase = "inactive"

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # lifecycle publishers first: frames may come at once
        if result != SUCCESS:
            return result
        result = self._transition("activate", self._activate, self._back_to_inactive)
        if result != SUCCESS:
            super().on_deactivate(state)  # the publishers go quiet again
        return result

    def _activate(self) -> None:
        s, g = self._live.settings, self._guard
        self._pipeline = FramePipeline(
            self.predictor,
            self.cameras,
            lambda: self._live,
            self._encoder_lock,
            self._warn_throttled,
            self._outputs,
            self.context.ok,
        )
        qos = input_qos(s.input_reliability, s.input_depth)
        handles: list[Any] = []
        for cam in self.cameras:
            on_frame = g.call(f"frame callback of {cam.topic}", self._on_frame)
            msg_type = CompressedImage if cam.compressed else Image
            handles.append(
                self.create_subscription(
                    msg_type, cam.topic, lambda m, c=cam, f=on_frame: f(c, m), qos
                )
            )
            if cam.index in self._outputs.depth:
                info = s.camera_info_topics[cam.index] if s.camera_info_topics else None
                depth_topic = s.depth_topics[cam.index]
                handles += subscribe_depth(
                    self, cam, self._outputs.depth[cam.index], depth_topic, info, qos
                )
        handles.append(
            self.create_timer(
                s.diagnostics_period, g.call("diagnostics", self._publish_diagnostics)
            )
        )
        if s.no_frame_warning > 0:
            self._no_frame_timer = self.create_timer(
                s.no_frame_warning, g.call("no-frame check", self._check_no_frames)
            )
            handles.append(self._no_frame_timer)
        self._while_active = handles
        self._phase = "active"
        self._publish_label_info()
        self._start_upgrade()
        self.get_logger().info(
            f"ready: model {s.model} ({self.predictor.backend_summary()} on {s.device}), prompt "
            f"{s.prompt!r}, inputs "
            + ", ".join(f"{c.resolved_topic} -> {c.prefix or '.'}/" for c in self.cameras)
        )

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._back_to_inactive()
        self.get_logger().info("inactive: no frames taken, models and prompt kept")
        return super().on_deactivate(state)

    def _back_to_inactive(self) -> None:
        self._stop_frames()
        self._phase = "inactive"

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: models freed")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._phase = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS  # back to unconfigured, ready for another configure

    def _stop_frames(self) -> None:
        """No subscription, timer or thread left: an inactive node spends no CPU on frames."""
        for handle in self._while_active:
            if isinstance(handle, Timer):
                self.destroy_timer(handle)
            else:
                self.destroy_subscription(handle)
        self._while_active, self._no_frame_timer = [], None
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None

    def _release(self) -> None:
        """Back to unconfigured: publishers gone, models and the encoded prompt freed."""
        self._stop_frames()
        if self._outputs.web is not None:
            self._outputs.web.stop()
        self._outputs = FrameOutputs()
        for cam in self.cameras:
            for pub in cam.publishers.values():
                self.destroy_lifecycle_publisher(pub)
        self.cameras = []
        if self._diag_pub is not None:
            self.destroy_lifecycle_publisher(self._diag_pub)
            self._diag_pub = None
        if self.predictor is not None and self.predictor.upgrade is not None:
            self.predictor.upgrade.cancel()
        self.predictor = None
        self._previous_stats.clear()
        self._commit(Live(self._live.settings))  # drops the encoded state, keeps the settings
        self._phase = "unconfigured"
        _release_freed_memory()

    # ----- configure pieces -------------------------------------------------------------------
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
                upgrade=s.backend_upgrade,
            )
        except Exception as exc:  # ModelLoadError, BackendError, torch errors
            raise ConfigureError(f"could not load the models: {one_line(exc, 2000)}") from exc

    def _start_upgrade(self) -> None:
        """backend auto still measuring: the frames run on torch meanwhile (backends/upgrade.py);
        started here, on the node's own thread, so its threads keep the node's priority."""
        upgrade = self.predictor.upgrade
        if upgrade is not None and upgrade.status.state == "pending":
            upgrade.log = self.get_logger().info
            upgrade.start()

    def _make_camera(self, index: int, topic: str, prefix: str) -> Camera:
        """A camera's lifecycle publishers (its subscriptions come at activate)."""
        s = self._live.settings
        cam = Camera(index, topic, prefix, is_compressed_topic(topic), CameraStats(topic))
        cam.resolved_topic = cam.stats.topic = self.resolve_topic_name(topic)
        outputs = dict(_OUTPUTS)
        if s.depth_topics:
            outputs["detections_3d"] = (Detection3DArray, _OUT_QOS)
            self._outputs.depth[index] = DepthInput(s.depth_tolerance)
        for name, (kind, qos) in outputs.items():
            topic_name = output_topic(prefix, name)
            cam.publishers[name] = self.create_lifecycle_publisher(kind, topic_name, qos)
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
            raise ConfigureError(
                f"tracking: true needs supervision ({exc}); pip install 'supervision>=0.30,<0.31'"
            ) from exc

    def _start_web(self, s: Settings) -> None:
        """The live page (opt-in web_port) on every camera; pages start on web_camera."""
        from ros2_owl.ros.web_bridge import start_web_bridge

        try:
            web = start_web_bridge(self, s)
        except Exception as exc:  # a taken port, a bad host or camera: a configure error
            raise ConfigureError(f"web page: {exc}") from exc
        self._outputs.web = web
        more = f", {len(self.cameras)} cameras to choose from" if len(self.cameras) > 1 else ""
        self.get_logger().info(f"live page on {web.server.url} ({web.camera.resolved_topic}{more})")

    # ----- frames (executor thread: count, rate-limit, hand over; never wait for the model) --
    def _on_frame(self, cam: Camera, msg) -> None:
        now = time.monotonic()
        cam.stats.frame_received(now)
        rate = self._live.settings.max_rate
        if rate > 0 and now - cam.last_accepted < 1.0 / rate:
            cam.stats.frame_rate_limited()
            return
        cam.last_accepted = now
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.post(cam, msg, now)

    def destroy_node(self) -> None:
        if getattr(self, "_pipeline", None) is not None:
            self._pipeline.stop()
            self._pipeline = None
        web = getattr(self, "_outputs", None) and self._outputs.web
        if web is not None:
            web.stop()
            self._outputs.web = None
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run ros2_owl owl_node`: exit 2 with a clear message on bad setup."""
    node = None
    try:
        try:
            init_ros(args)
            node = OwlNode()
        except StartupError as exc:
            print(f"owl_node: cannot start: {exc}", file=sys.stderr, flush=True)
            return 2
        if node.phase == "unconfigured":
            node.get_logger().info(
                "unconfigured (autostart: false): waiting for `ros2 lifecycle set "
                f"{node.get_fully_qualified_name()} configure`"
            )
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
