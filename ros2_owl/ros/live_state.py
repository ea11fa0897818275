"""The one write path of owl_node's live state (settings + encoded prompt, one `Live`).

Parameter changes, ~/set_prompt, ~/register_query and the live page all end in `commit`, on
whichever thread made the change, under one lock; the frame pipeline reads the snapshot once per
batch. Parameters commit from rclpy's post-set callback (Iron and later) or, on Humble's rclpy,
from the end of the on-set callback (`watch_parameters`). Each change is checked (state, range, prompt syntax) and encoded before it commits, so a
refused one leaves everything as it was. OwlNode (ros/node.py) owns one PromptController.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from ros2_owl.core.prompt import PromptError, caret_message, parse_prompt
from ros2_owl.core.settings import SCHEMA, Settings, format_label_thresholds
from ros2_owl.io.images import ImageConversionError, message_to_rgb
from ros2_owl.ros import messages
from ros2_owl.ros.params import validate_parameter
from ros2_owl.ros.pipeline import Live
from ros2_owl.srv import RegisterQuery, SetPrompt

__all__ = ["PromptChange", "PromptController"]


@dataclass(frozen=True)
class PromptChange:
    """The answer to one prompt change (service or page): refused ones say why and where."""

    ok: bool
    message: str
    column: int | None = None
    active: Live | None = None  # the live state now in force when ok


def _prompt_key(s: Settings) -> tuple:
    """What the encoded state depends on; the default threshold lives in PredictorConfig."""
    return (s.prompt, s.label_thresholds)


class PromptController:
    """The live state of one OwlNode and its one write path: commit, prepare, the parameter
    callbacks, the prompt and query services. The node owns it; it reads the node's lifecycle
    phase, predictor and cameras and uses the node's rclpy methods."""

    def __init__(self, node: Any, settings: Settings) -> None:
        self._node = node
        self.live = Live(settings)
        self._pending: Live | None = None
        self._prepared: Live | None = None  # encoded by apply_prompt, reused by on-set
        self._lock = threading.RLock()  # one prompt write at a time (service, page, params)

    def commit(self, live: Live) -> None:
        """Every change of settings or prompt state lands here; the pipeline reads `_live` once
        per batch and so sees either the old snapshot or the new one."""
        with self._lock:  # transitions, parameters, services and the page, one at a time
            old = self.live
            self.live = live
            if live.state is None or self._node.phase != "active":
                return  # label_info goes out at activation
            if live.state is not old.state or live.settings.threshold != old.settings.threshold:
                self.publish_label_info()  # LabelInfo carries both

    def prepare(self, s: Settings, reuse: Live | None = None) -> Live:
        """A Live for these settings: encoded when models are loaded, else only parsed."""
        key = _prompt_key(s)
        if self._node.predictor is None:
            s.label_threshold_map()
            parse_prompt(s.prompt)  # PromptError with its column; encoded at configure
            return Live(s, key=key)
        if reuse is not None and reuse.state is not None and reuse.key == key:
            state = reuse.state
        else:
            self._node.session.check_masks(s.prompt)
            state = self._node.predictor.prepare(s.prompt, label_thresholds=s.label_threshold_map())
        return Live(s, state, s.predictor_config(), key)

    # ----- parameters and prompt: validated and encoded before anything changes ---------------
    def watch_parameters(self, guard) -> None:
        """Validate in the on-set callback, commit once rclpy has taken the values. Humble's
        rclpy (3.3) has no post-set callback: there the on-set callback commits as its last
        step, once every check passed; rclpy then stores the values (the one callback after
        ours, rclpy's TimeSource, accepts every change on Humble)."""
        self._after_set = guard.call("parameter update", self._after_set_parameters)
        self._commit_on_set = not hasattr(self._node, "add_post_set_parameters_callback")
        self._node.add_on_set_parameters_callback(guard.parameters(self._on_set_parameters))
        if self._commit_on_set:
            self._node.get_logger().info(
                "rclpy has no post-set parameter callback (Humble): parameter changes commit "
                "at the end of the on-set callback"
            )
        else:
            self._node.add_post_set_parameters_callback(self._after_set)

    def _refusal(self, names: list[str]) -> str | None:
        """Why these parameters cannot change in the current state (None: they can)."""
        if self._node.phase == "finalized":
            return "the node is shut down"
        if "autostart" in names:
            return "autostart is read at process start only"
        fixed = [n for n in names if n in SCHEMA and not SCHEMA[n].live]
        if fixed and self._node.phase != "unconfigured":
            steps = "deactivate, then cleanup" if self._node.phase == "active" else "cleanup"
            return (
                f"{', '.join(fixed)} can change only while the node is unconfigured (now "
                f"{self._node.phase}): ros2 lifecycle set {self._node.get_fully_qualified_name()} {steps}"
            )
        return None

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate and build the new live state now; a refusal leaves everything as it was."""
        with self._lock:
            reason = self._refusal([p.name for p in params])
            for p in params:
                reason = reason or validate_parameter(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            candidate = self.live.settings.updated(params)
            if self._node.predictor is not None:
                problem = self._node.predictor.config_problem(candidate.predictor_config())
                if problem:
                    return SetParametersResult(successful=False, reason=problem)
            try:
                pending = self.prepare(candidate, reuse=self._prepared or self.live)
            except (PromptError, ValueError) as exc:
                reason = caret_message(candidate.prompt, exc)
                return SetParametersResult(successful=False, reason=reason)
            self._pending = pending
            if self._commit_on_set:  # nothing after this callback can refuse the values
                self._after_set(params)
            return SetParametersResult(successful=True)

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        """Commit what the on-set callback prepared (the values are rclpy's now)."""
        with self._lock:
            if self._pending is None:
                return
            pending, self._pending = self._pending, None
            prompt_changed = pending.key != self.live.key
            self.commit(pending)
            if prompt_changed and self._prepared is None:  # apply_prompt's callers log theirs
                self._node.get_logger().info(f"prompt now {pending.settings.prompt!r}")

    def apply_prompt(self, prompt: str, overrides: dict[str, float] | None = None) -> PromptChange:
        """Check and encode a prompt (+ per-label thresholds), then set the `prompt` /
        `label_thresholds` parameters, whose callbacks commit it: the one path of ~/set_prompt
        and the live page, so a change is in the parameters exactly when it is in force."""
        label_thresholds = None if overrides is None else tuple(format_label_thresholds(overrides))
        with self._lock:  # the page's thread and the executor never interleave a change
            s = self.live.settings
            candidate = replace(
                s,
                prompt=prompt,
                label_thresholds=s.label_thresholds
                if label_thresholds is None
                else label_thresholds,
            )
            reason = (
                self._refusal(["prompt"])
                or (label_thresholds and validate_parameter("label_thresholds", label_thresholds))
                or validate_parameter("prompt", prompt)
            )
            try:
                if reason:
                    raise ValueError(reason)
                self._prepared = self.prepare(candidate, reuse=self.live)
            except (PromptError, ValueError) as exc:
                return PromptChange(False, caret_message(prompt, exc), getattr(exc, "column", None))
            changes = [Parameter("prompt", value=prompt)]
            if label_thresholds is not None:
                changes.append(
                    Parameter(
                        "label_thresholds", Parameter.Type.STRING_ARRAY, list(label_thresholds)
                    )
                )
            try:
                result = self._node.set_parameters_atomically(
                    changes
                )  # same key: no second encoding
            finally:
                self._prepared = None
            if not result.successful:
                return PromptChange(False, result.reason)
            return PromptChange(True, "ok", None, self.live)

    def srv_set_prompt(self, req: SetPrompt.Request, resp: SetPrompt.Response):
        overrides = {t.label: float(t.threshold) for t in req.thresholds}
        change = self.apply_prompt(req.prompt, overrides if req.thresholds else None)
        resp.success, resp.message = change.ok, change.message
        if not change.ok:
            return resp
        live = change.active
        tree = live.state.tree if live.state is not None else parse_prompt(req.prompt)
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
        self._node.get_logger().info(f"prompt set by service: {req.prompt!r}")
        return resp

    def srv_register_query(self, req: RegisterQuery.Request, resp: RegisterQuery.Response):
        name = req.name.strip().lstrip("$")
        try:
            if self._node.predictor is None:
                raise ValueError(
                    f"the node is {self._node.phase}: queries need the models; configure it first"
                )
            if not name:
                raise ValueError("the query name must not be empty")
            image = message_to_rgb(req.image)
            h, w = image.shape[:2]
            whole = req.bbox.size_x == 0 and req.bbox.size_y == 0  # "no box": the model's rule
            box = None if whole else messages.corners_from_bbox(req.bbox)
            with self._node.encoder_lock:
                self._node.predictor.register_query(name, image, box)
            with self._lock:
                live = self.live
                if live.settings.queries_file:
                    self._node.predictor.save_queries(live.settings.queries_file)
                if f"${name}" in live.settings.prompt:  # the state holds the old embedding
                    self.commit(self.prepare(live.settings))
        except (ImageConversionError, PromptError, ValueError, OSError) as exc:
            resp.success, resp.message = False, f"query {name!r:.80} not registered: {exc}"
            return resp
        resp.success, resp.message = True, f"registered ${name} from a {w}x{h} image"
        return resp

    def publish_label_info(self) -> None:
        live = self.live
        header = Header(stamp=self._node.get_clock().now().to_msg())
        msg = messages.label_info(live.state.tree, live.settings.threshold, header)
        for cam in self._node.cameras:
            cam.publishers["label_info"].publish(msg)
