"""Who owns the prompt: the page asks a PromptControl to change it and shows its answer.

`ros2-owl serve` uses PredictorPromptControl (below); the ROS node gives the page its own
control (ros/web_bridge.py) that goes through the node's ~/set_prompt path, so the page never
has a validation or swap rule of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.predictor import PredictorConfig, PromptState, TreePredictor
from ..core.prompt import PromptError
from ..core.thresholds import is_fixed_by_prompt

__all__ = [
    "LabelThreshold",
    "PredictorPromptControl",
    "PromptControl",
    "PromptOutcome",
    "PromptView",
    "prompt_view",
]


@dataclass(frozen=True)
class LabelThreshold:
    """One detect label of the current prompt and the threshold that applies to it."""

    label: str
    threshold: float
    fixed: bool  # set by '@' in the prompt, which wins over a slider


@dataclass(frozen=True)
class PromptView:
    """What the page shows about the prompt in force."""

    prompt: str
    labels: tuple[LabelThreshold, ...]
    default_threshold: float
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "labels": [
                {"label": x.label, "threshold": x.threshold, "fixed": x.fixed} for x in self.labels
            ],
            "default_threshold": self.default_threshold,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class PromptOutcome:
    """The answer to one change: refused ones carry the reason and, for prompts, the column."""

    ok: bool
    message: str
    view: PromptView
    column: int | None = None
    prompt: str = ""  # the text that was tried

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "prompt",
            "ok": self.ok,
            "message": self.message,
            "column": self.column,
            "prompt": self.prompt,
            "state": self.view.to_dict(),
        }


class PromptControl(Protocol):
    """The prompt owner seen from the page. Calls may block (text encoding): the server makes
    them on its own worker thread, one at a time, never on the inference thread."""

    def view(self) -> PromptView: ...

    def set_prompt(self, prompt: str) -> PromptOutcome: ...

    def set_label_threshold(self, label: str, value: float) -> PromptOutcome: ...


def prompt_view(state: PromptState, config: PredictorConfig) -> PromptView:
    """The page's view of a prompt state: each distinct detect label and its threshold."""
    tree = state.tree
    labels: dict[str, LabelThreshold] = {}
    for index in tree.detect_labels():
        text = tree.labels[index].text
        if text not in labels:
            fixed = is_fixed_by_prompt(tree.labels[index])
            labels[text] = LabelThreshold(text, float(state.threshold(index, config)), fixed)
    warnings = tuple(f"column {w.column}: {w.message}" for w in tree.warnings)
    return PromptView(state.prompt, tuple(labels.values()), float(config.threshold), warnings)


@dataclass
class _Live:
    state: PromptState
    label_thresholds: dict[str, float] = field(default_factory=dict)


class PredictorPromptControl:
    """The prompt of `ros2-owl serve`: an immutable PromptState swapped as one reference.

    A change builds the new state with predictor.prepare (which raises PromptError with the
    column for a bad prompt) before anything is swapped, so a refused change keeps the old one;
    the inference loop reads `state` once per frame and never sees half a change.
    """

    def __init__(
        self,
        predictor: TreePredictor,
        prompt: str,
        config: PredictorConfig,
        label_thresholds: Mapping[str, float] | None = None,
        check: Callable[[str], None] | None = None,
    ):
        self.predictor, self.config = predictor, config
        self.check = check or (lambda prompt: None)  # the session's prompt rules ({mask})
        overrides = dict(label_thresholds or {})
        self._live = _Live(predictor.prepare(prompt, label_thresholds=overrides), overrides)
        self._lock = threading.Lock()  # serialises changes; readers never take it

    @property
    def state(self) -> PromptState:
        """The state the next frame uses (one attribute read)."""
        return self._live.state

    def view(self) -> PromptView:
        return prompt_view(self._live.state, self.config)

    def set_prompt(self, prompt: str) -> PromptOutcome:
        with self._lock:
            return self._apply(prompt, self._live.label_thresholds)

    def set_label_threshold(self, label: str, value: float) -> PromptOutcome:
        with self._lock:
            live = self._live
            overrides = {**live.label_thresholds, label: float(value)}
            return self._apply(live.state.prompt, overrides)

    def _apply(self, prompt: str, overrides: dict[str, float]) -> PromptOutcome:
        try:
            self.check(prompt)
            state = self.predictor.prepare(prompt, label_thresholds=overrides)
        except PromptError as error:
            return PromptOutcome(False, str(error), self.view(), error.column, prompt)
        except ValueError as error:  # a threshold or an unknown $query
            return PromptOutcome(False, str(error), self.view(), None, prompt)
        self._live = _Live(state, overrides)  # the swap
        return PromptOutcome(True, "ok", self.view(), None, prompt)
