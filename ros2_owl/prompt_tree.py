"""The parsed form of a tree prompt: labels, groups (nodes), warnings, and the Tree that turns
back into NanoOWL's dict, JSON or a canonical prompt. Parsing lives in ros2_owl.prompt."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from numbers import Real
from typing import Any, Literal

DETECT: Literal["detect"] = "detect"
CLASSIFY: Literal["classify"] = "classify"
Op = Literal["detect", "classify"]


class PromptError(ValueError):
    """A prompt the parser rejects, with the 0-based column so a UI can point at it."""

    def __init__(self, message: str, column: int):
        super().__init__(message)
        self.message = message
        self.column = column

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.message, self.column))


@dataclass(frozen=True)
class PromptWarning:
    """Something valid but probably not what the user meant, reported back with the tree."""

    column: int
    message: str


@dataclass(frozen=True)
class Label:
    """One label; columns are ignored by equality so a re-parsed canonical prompt compares equal."""

    index: int
    text: str
    column: int = field(default=-1, compare=False)
    threshold: float | None = None
    query_name: str | None = None

    @property
    def is_image_query(self) -> bool:
        """True when the label names a registered reference image (`$name`) instead of text."""
        return self.query_name is not None


@dataclass(frozen=True)
class TreeNode:
    """One group: `op` runs on the regions of label `input` and yields the labels `outputs`."""

    op: Op
    input: int
    outputs: tuple[int, ...]
    column: int = field(default=-1, compare=False)


def check_threshold(value: Any, what: str) -> float:
    """Thresholds are probabilities: a real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be a number between 0 and 1, got {value!r}")
    return float(value) + 0.0


def _format_threshold(value: float) -> str:
    """Positional decimal (never '1e-05') that float() reads back to the same value."""
    text = format(Decimal(repr(float(value))), "f")
    return text if "." in text else text + ".0"


@dataclass(frozen=True)
class Tree:
    """A parsed prompt; nodes are in order of their opening bracket, labels[0] is 'image'."""

    nodes: tuple[TreeNode, ...]
    labels: tuple[Label, ...]
    warnings: tuple[PromptWarning, ...] = field(default=(), compare=False)

    @property
    def label_texts(self) -> tuple[str, ...]:
        return tuple(label.text for label in self.labels)

    def detect_nodes(self) -> tuple[TreeNode, ...]:
        return tuple(n for n in self.nodes if n.op == DETECT)

    def classify_nodes(self) -> tuple[TreeNode, ...]:
        return tuple(n for n in self.nodes if n.op == CLASSIFY)

    def nodes_for_input(self, label_index: int) -> tuple[TreeNode, ...]:
        """Groups that run on the regions of this label, in prompt order."""
        return tuple(n for n in self.nodes if n.input == label_index)

    def children(self, label_index: int) -> tuple[int, ...]:
        return tuple(o for n in self.nodes_for_input(label_index) for o in n.outputs)

    def node_index_of(self, label_index: int) -> int | None:
        """Index into `nodes` of the group that yields this label (None for the root)."""
        for i, n in enumerate(self.nodes):
            if label_index in n.outputs:
                return i
        return None

    def parent(self, label_index: int) -> int | None:
        """The label whose regions this label is found in (None for the root)."""
        i = self.node_index_of(label_index)
        return None if i is None else self.nodes[i].input

    def label_depth(self, label_index: int) -> int:
        """Number of groups between the root and this label (labels of a root group are 1)."""
        depth, index = 0, label_index
        while (index := self.parent(index)) is not None:
            depth += 1
        return depth

    def depth(self) -> int:
        return max((self.label_depth(i) for i in range(len(self.labels))), default=0)

    def detect_labels(self) -> tuple[int, ...]:
        return tuple(sorted(o for n in self.detect_nodes() for o in n.outputs))

    def classify_labels(self) -> tuple[int, ...]:
        return tuple(sorted(o for n in self.classify_nodes() for o in n.outputs))

    def query_labels(self) -> tuple[int, ...]:
        """Labels that name a registered reference image (`$name`)."""
        return tuple(label.index for label in self.labels if label.is_image_query)

    def effective_threshold(
        self, label_index: int, default: float, overrides: Mapping[str, float] | None = None
    ) -> float:
        """The prompt's `@` value, else overrides[label text], else default."""
        default = check_threshold(default, "default threshold")
        for key, value in (overrides or {}).items():
            check_threshold(value, f"threshold for label {key!r}")
        if not 0 <= label_index < len(self.labels):
            raise IndexError(f"label index {label_index} is not in 0..{len(self.labels) - 1}")
        label = self.labels[label_index]
        if label.threshold is not None:
            return label.threshold
        if overrides and label.text in overrides:
            return float(overrides[label.text]) + 0.0
        return default

    def detect_thresholds(
        self, default: float, overrides: Mapping[str, float] | None = None
    ) -> dict[int, float]:
        """Effective threshold of every detect label, keyed by label index."""
        return {i: self.effective_threshold(i, default, overrides) for i in self.detect_labels()}

    def to_dict(self) -> dict[str, Any]:
        """NanoOWL's tree dict, plus 'thresholds' / 'queries' only when the prompt has them."""
        out: dict[str, Any] = {
            "nodes": [
                {"op": n.op, "input": n.input, "outputs": list(n.outputs)} for n in self.nodes
            ],
            "labels": list(self.label_texts),
        }
        thresholds = {lb.index: lb.threshold for lb in self.labels if lb.threshold is not None}
        if thresholds:
            out["thresholds"] = thresholds
        queries = {lb.index: lb.query_name for lb in self.labels if lb.query_name is not None}
        if queries:
            out["queries"] = queries
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Tree:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ValueError(f"tree JSON is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def to_prompt(self) -> str:
        """Canonical prompt, e.g. `[a person@0.3, a car (black)]`; it parses back to this tree."""

        def label(index: int) -> str:
            lb = self.labels[index]
            text = lb.text
            if lb.threshold is not None:
                text += "@" + _format_threshold(lb.threshold)
            return "".join([text] + [" " + group(n) for n in self.nodes_for_input(index)])

        def group(node: TreeNode) -> str:
            opener = "[" if node.op == DETECT else "("
            inner = ", ".join(label(o) for o in node.outputs)
            return opener + inner + ("]" if opener == "[" else ")")

        return " ".join(group(n) for n in self.nodes_for_input(0))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tree:
        """Validate a NanoOWL-style dict (numbered as parse_prompt numbers it) into a Tree."""
        from .prompt import tree_from_dict  # the validator re-parses: it lives with the parser

        return tree_from_dict(data)
