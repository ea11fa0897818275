"""OwlNode: camera frames in, tree detections out; a managed (lifecycle) node.

configure loads the models and encodes the prompt, activate subscribes and starts the frame
pipeline, deactivate stops both (models and prompt stay), cleanup frees the models, shutdown
ends it from any state. With `autostart: true` (the default) the node drives itself to active
at construction, as a plain node starts. The node owns its parts: the FrameSession (models,
prompt, tracker, stats; runtime/session.py) from configure, the FramePipeline (threads;
ros/pipeline.py) while active, the NodeMonitor (diagnostics, warnings; ros/node_monitoring.py)
and the PromptController (the live state's one write path: parameters, services, the page;
ros/live_state.py); the robot outputs and ~/detect come in through ros/robot_hooks.py.
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
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image

from ros2_owl.core.encoder_upgrade import cancel_upgrade, exit_if_upgrading, start_upgrade
from ros2_owl.core.predictor import TreePredictor
from ros2_owl.core.prompt import PromptError, caret_message
from ros2_owl.core.settings import Settings
from ros2_owl.ros.cameras import (
    Camera,
    input_qos,
    is_compressed_topic,
    output_prefixes,
    output_publishers,
    output_topic,
)
from ros2_owl.ros.detect_service import MAX_WAITING
from ros2_owl.ros.executor import OwlExecutor
from ros2_owl.ros.guard import CallbackGuard, one_line
from ros2_owl.ros.live_state import PromptChange, PromptController
from ros2_owl.ros.node_monitoring import NodeMonitor
from ros2_owl.ros.params import declare_parameters, read_settings
from ros2_owl.ros.pipeline import FrameOutputs, FramePipeline, Live
from ros2_owl.ros.robot_hooks import make_robot_outputs, start_detect_service
from ros2_owl.ros.spatial import depth_to_array, subscribe_depth
from ros2_owl.ros.startup import StartupError, init_ros
from ros2_owl.runtime.session import FrameSession, load_predictor, load_segmenter
from ros2_owl.runtime.spatial import CameraDepth
from ros2_owl.srv import RegisterQuery, SetPrompt

__all__ = ["OwlNode", "PromptChange", "StartupError", "main"]

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


class OwlNode(LifecycleNode):
    """Runs a TreePredictor on one or more cameras; see README for topics, parameters, states."""

    def __init__(self, *, predictor: TreePredictor | None = None, **node_kwargs: Any):
        super().__init__("owl_node", **node_kwargs)
        self._given_predictor = predictor
        self.session: FrameSession | None = None  # the frame path: predictor, prompt, tracker
        self.cameras: list[Camera] = []
        self._pipeline: FramePipeline | None = None
        self._outputs = FrameOutputs()
        self._while_active: list[Any] = []  # subscriptions and timers of the active state
        self._phase = "unconfigured"
        # image encoders may not be re-entrant (one TensorRT execution context): the session's
        # inference and a query registration on the executor thread take turns
        self.encoder_lock = threading.Lock()
        self._guard = CallbackGuard(self.get_logger())  # no callback exception ends spin()
        self.monitor = NodeMonitor(self, self._guard)  # diagnostics, warnings
        self._quiet_configure = False  # autostart: main() prints the one line instead
        self._detect = None  # ~/detect (ros/detect_service.py), made with the other services
        self.last_error = ""
        try:
            declare_parameters(self)
        except Exception as exc:  # a --params-file value of the wrong type or out of range
            self.destroy_node()
            raise StartupError(f"invalid parameter value: {exc}") from exc
        self.prompts = PromptController(self, read_settings(self))  # the live state
        g = self._guard
        self.prompts.watch_parameters(g)
        self._detect = start_detect_service(self)  # before autostart: "ready" ends the start
        if self.prompts.live.settings.autostart:
            reason = self.start()
            if reason:
                self.destroy_node()  # no half-built node left for rclpy.shutdown()
                raise StartupError(reason)
        # after autostart: with it, ~/set_prompt appearing means the node is active
        services = {"set_prompt": (SetPrompt, self.prompts.srv_set_prompt)}
        services["register_query"] = (RegisterQuery, self.prompts.srv_register_query)
        for name, (kind, handler) in services.items():
            self.create_service(kind, f"~/{name}", g.service(name, handler))

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

    def apply_prompt(self, prompt: str, overrides: dict[str, float] | None = None) -> PromptChange:
        """Encode, commit and write back a new prompt (the page's and the service's path)."""
        return self.prompts.apply_prompt(prompt, overrides)

    @property
    def active(self) -> Live:
        """The live state in force (settings, encoded prompt, per-frame config): one reference."""
        return self.prompts.live

    @property
    def predictor(self) -> TreePredictor | None:
        """The configured session's predictor (None while unconfigured)."""
        return self.session.predictor if self.session is not None else None

    @property
    def depth_inputs(self) -> dict[int, CameraDepth]:
        """camera index -> its depth input in the session (empty without depth_topics)."""
        depth = self.session.depth if self.session is not None else {}
        return {c.index: depth[c.resolved_topic] for c in self.cameras if c.resolved_topic in depth}

    @property
    def robot_outputs(self):
        """target frame, markers, annotations, prompt topic (ros/robot_outputs.py) or None."""
        return self._outputs.robot

    @property
    def settings(self) -> Settings:
        return self.prompts.live.settings

    @property
    def phase(self) -> str:
        """unconfigured, inactive, active or finalized: what the node holds, set once a
        transition's work is done (rclpy's own state is private, and mid-transition it reads
        'configuring' etc. while services must still answer for what the node holds)."""
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
        s = self.prompts.live.settings
        problems = s.validate()
        if problems:
            raise ConfigureError("invalid parameters: " + "; ".join(problems))
        try:
            prefixes = output_prefixes(s.image_topics, s.camera_names)
        except ValueError as exc:
            raise ConfigureError(str(exc)) from exc
        self.session = self._make_session(s)
        try:
            live = self.prompts.prepare(s)
        except (PromptError, ValueError) as exc:
            raise ConfigureError(f"prompt parameter: {caret_message(s.prompt, exc)}") from exc
        self._outputs = FrameOutputs(robot=make_robot_outputs(self, s, ConfigureError))
        self.cameras = [self._make_camera(i, t, prefixes[i]) for i, t in enumerate(s.image_topics)]
        self.monitor.open()
        self.prompts.commit(live)
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
        s, g = self.prompts.live.settings, self._guard
        self._pipeline = FramePipeline(
            self.session,
            self.cameras,
            lambda: self.prompts.live,
            self.monitor.warn,
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
            depth = self.session.depth.get(cam.resolved_topic)
            if depth is not None:
                info = s.camera_info_topics[cam.index] if s.camera_info_topics else None
                depth_topic = s.depth_topics[cam.index]
                handles += subscribe_depth(self, cam, depth, depth_topic, info, qos)
        handles.append(
            self.create_timer(s.diagnostics_period, g.call("diagnostics", self.monitor.publish))
        )
        if s.no_frame_warning > 0:
            self.monitor.no_frame_timer = self.create_timer(
                s.no_frame_warning, g.call("no-frame check", self.monitor.check_no_frames)
            )
            handles.append(self.monitor.no_frame_timer)
        self._while_active = handles
        self._phase = "active"
        self.prompts.publish_label_info()
        start_upgrade(self.predictor, self.get_logger().info)  # on this thread: its priority
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
        self._while_active, self.monitor.no_frame_timer = [], None
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None

    def _release(self) -> None:
        """Back to unconfigured: publishers gone, models and the encoded prompt freed."""
        self._stop_frames()
        if self._outputs.web is not None:
            self._outputs.web.stop()
        if self._outputs.robot is not None:
            self._outputs.robot.close()
        if self._detect is not None:
            self._detect.frames.clear()
        self._outputs = FrameOutputs()
        for cam in self.cameras:
            for pub in cam.publishers.values():
                self.destroy_lifecycle_publisher(pub)
        self.cameras = []
        cancel_upgrade(self.predictor)
        self.session = None
        self.monitor.close()
        self.prompts.commit(Live(self.prompts.live.settings))  # keeps only the settings
        self._phase = "unconfigured"
        _release_freed_memory()

    # ----- configure pieces -------------------------------------------------------------------
    def _make_session(self, s: Settings) -> FrameSession:
        """The frame path of these settings: models (or the given predictor), queries, tracker."""
        try:
            predictor = self._given_predictor or load_predictor(s, upgrade=s.backend_upgrade)
            segmenter = load_segmenter(s)
        except Exception as exc:  # ModelLoadError, BackendError, torch errors
            raise ConfigureError(f"could not load the models: {one_line(exc, 2000)}") from exc
        problem = predictor.config_problem(s.predictor_config())
        if problem:  # e.g. region_resolution adaptive with backend triton
            raise ConfigureError(f"invalid parameters: {problem}")
        try:
            session = FrameSession(predictor, s, lock=self.encoder_lock, segmenter=segmenter)
        except ImportError as exc:  # tracking without supervision
            raise ConfigureError(str(exc)) from exc
        try:
            session.load_queries(missing_ok=True)  # register_query creates the file
        except Exception as exc:
            raise ConfigureError(f"queries_file {s.queries_file}: {exc}") from exc
        return session

    def _make_camera(self, index: int, topic: str, prefix: str) -> Camera:
        """A camera's lifecycle publishers (its subscriptions come at activate)."""
        s = self.prompts.live.settings
        resolved = self.resolve_topic_name(topic)
        stats = self.session.camera_stats(resolved)
        cam = Camera(
            index, topic, prefix, is_compressed_topic(topic), stats, resolved_topic=resolved
        )
        outputs = output_publishers(with_depth=bool(s.depth_topics))
        if s.depth_topics:
            self.session.add_depth(resolved, CameraDepth(s.depth_tolerance, depth_to_array))
        for name, (kind, qos) in outputs.items():
            topic_name = output_topic(prefix, name)
            cam.publishers[name] = self.create_lifecycle_publisher(kind, topic_name, qos)
        if self._outputs.robot is not None:  # markers, image_annotations (opt-in)
            self._outputs.robot.add_camera(self, cam, output_topic)
        return cam

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
        if self._detect is not None:  # ~/detect runs on the newest frame, rate limit or not
            self._detect.frames.put(cam.index, msg)
        rate = self.prompts.live.settings.max_rate
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
        if getattr(self, "_detect", None) is not None:
            self._detect.close()
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
        # callbacks run on this thread; only ~/detect's waits run beside it (ros/executor.py)
        executor = OwlExecutor(detached_threads=MAX_WAITING + 1)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C under `ros2 launch` reaches the node twice (from the terminal and forwarded by
        # launch): a second SIGINT must not interrupt the teardown with a KeyboardInterrupt.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        predictor = node.predictor if node is not None else None
        cancel_upgrade(predictor)
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    exit_if_upgrading(predictor, 0)
    return 0
