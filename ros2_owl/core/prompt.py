"""The tree prompt language: `[a person [a face] (standing, sitting)]` parsed into a Tree.

This module is the public face: `parse_prompt`, `Tree` (NanoOWL's dict, JSON, a canonical
prompt), `tree_from_dict`, and the rules a tree must meet to run (`check_runnable`). The
grammar itself (scanner, label rules, limits) is ros2_owl.core.prompt_parser; its types are
re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .prompt_parser import (
    CLASSIFY,
    DETECT,
    MASK_MARKER,
    MAX_DEPTH,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_PROMPT_CHARS,
    QUERY_NAME,
    STRUCTURE,
    Label,
    Op,
    Parser,
    Problem,
    PromptError,
    PromptWarning,
    TreeNode,
    is_blank,
    read_label,
)
from .settings import check_fraction
from .thresholds import resolve

__all__ = [
    "CLASSIFY",
    "DETECT",
    "MAX_DEPTH",
    "MAX_LABELS",
    "MAX_LABEL_CHARS",
    "MASK_MARKER",
    "MAX_PROMPT_CHARS",
    "QUERY_NAME",
    "Label",
    "Op",
    "PromptError",
    "PromptWarning",
    "Tree",
    "TreeNode",
    "caret_message",
    "check_runnable",
    "is_blank",
    "parse_prompt",
    "tree_from_dict",
]


def check_threshold(value: Any, what: str) -> float:
    """Thresholds are probabilities: a real number in [0, 1]."""
    return check_fraction(value, what)


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

    def mask_labels(self) -> tuple[int, ...]:
        """Detect labels marked `{mask}`: their detections get instance masks."""
        return tuple(label.index for label in self.labels if label.mask)

    def query_labels(self) -> tuple[int, ...]:
        """Labels that name a registered reference image (`$name`)."""
        return tuple(label.index for label in self.labels if label.is_image_query)

    def effective_threshold(
        self, label_index: int, default: float, overrides: Mapping[str, float] | None = None
    ) -> float:
        """The prompt's `@` value, else overrides[label text], else default (core/thresholds.py)."""
        default = check_threshold(default, "default threshold")
        for key, value in (overrides or {}).items():
            check_threshold(value, f"threshold for label {key!r}")
        if not 0 <= label_index < len(self.labels):
            raise IndexError(f"label index {label_index} is not in 0..{len(self.labels) - 1}")
        return resolve(self.labels[label_index], default, overrides)[0]

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
        if self.mask_labels():
            out["masks"] = list(self.mask_labels())
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
            if lb.mask:
                text += " " + MASK_MARKER
            return "".join([text] + [" " + group(n) for n in self.nodes_for_input(index)])

        def group(node: TreeNode) -> str:
            opener = "[" if node.op == DETECT else "("
            inner = ", ".join(label(o) for o in node.outputs)
            return opener + inner + ("]" if opener == "[" else ")")

        return " ".join(group(n) for n in self.nodes_for_input(0))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tree:
        """Validate a NanoOWL-style dict (numbered as parse_prompt numbers it) into a Tree."""
        return tree_from_dict(data)


def parse_prompt(text: str) -> Tree:
    """Parse a tree prompt; every malformed string raises PromptError with a column."""
    if not isinstance(text, str):
        raise TypeError(f"prompt must be a str, got {type(text).__name__}")
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(
            f"prompt of {len(text)} characters is too long: the limit is {MAX_PROMPT_CHARS}",
            MAX_PROMPT_CHARS,
        )
    return Tree(*Parser(text).parse())


def _index_key(key: Any, labels: list[str], what: str) -> int:
    """JSON turns int keys into strings; accept both."""
    if isinstance(key, str) and key.isdecimal():
        key = int(key)
    if isinstance(key, bool) or not isinstance(key, int) or not 0 < key < len(labels):
        raise ValueError(f"{what}: key {key!r} is not a label index in 1..{len(labels) - 1}")
    return key


def _nodes_from_dicts(raw_nodes, label_count: int) -> tuple[list[TreeNode], dict[int, int]]:
    """Checked TreeNodes and which node yields each label (label index -> node index)."""
    nodes: list[TreeNode] = []
    owner: dict[int, int] = {}
    for k, nd in enumerate(raw_nodes):
        if not isinstance(nd, Mapping) or set(nd) != {"op", "input", "outputs"}:
            raise ValueError(f"node {k} must be a mapping with keys 'op', 'input', 'outputs'")
        op, inp, outs = nd["op"], nd["input"], nd["outputs"]
        if op not in (DETECT, CLASSIFY):
            raise ValueError(f"node {k}: op must be 'detect' or 'classify', got {op!r}")
        if isinstance(inp, bool) or not isinstance(inp, int) or not (inp == 0 or inp in owner):
            raise ValueError(
                f"node {k}: input {inp!r} must be 0 (the image) or an output of an earlier node"
            )
        if not isinstance(outs, list | tuple) or not outs:
            raise ValueError(f"node {k}: outputs must be a non-empty list of label indices")
        for o in outs:
            if isinstance(o, bool) or not isinstance(o, int) or not 0 < o < label_count:
                raise ValueError(f"node {k}: output {o!r} is not a label index")
            if o in owner:
                raise ValueError(f"label {o} is an output of both node {owner[o]} and node {k}")
            owner[o] = k
        nodes.append(TreeNode(op, inp, tuple(outs)))
    return nodes, owner


def _labels_from_dict(data, labels: list[str], nodes, owner) -> list[Label]:
    """Checked Labels with their thresholds and query names (label rules as the parser's)."""
    thresholds = data.get("thresholds") or {}
    queries = data.get("queries") or {}
    if not isinstance(thresholds, Mapping) or not isinstance(queries, Mapping):
        raise ValueError("'thresholds' and 'queries' must be mappings keyed by label index")
    masks = data.get("masks") or []
    if not isinstance(masks, list | tuple):
        raise ValueError("'masks' must be a list of label indices")
    masked = {_index_key(key, labels, "'masks'") for key in masks}
    values: dict[int, float] = {}
    for key, value in thresholds.items():
        index = _index_key(key, labels, "'thresholds'")
        values[index] = check_threshold(value, f"threshold of label {index} {labels[index]!r}")
    built = [Label(0, "image")]
    for index, text in enumerate(labels[1:], start=1):
        if index not in owner:
            raise ValueError(f"label {index} {text!r} is not an output of any node")
        op = nodes[owner[index]].op
        bad = next((c for c in STRUCTURE + "@{}" if c in text), None)
        if text != text.strip() or bad:
            why = f"reserved character {bad!r}" if bad else "surrounding white space"
            raise ValueError(f"label {index} {text!r}: {why}")
        try:
            _, _, query, _ = read_label(text, op)
        except Problem as p:
            raise ValueError(f"label {index} {text!r}: {p.what}: {p.advice}") from None
        if index in values and op == CLASSIFY:
            raise ValueError(f"label {index} {text!r}: classify labels take no threshold")
        if index in masked and op == CLASSIFY:
            raise ValueError(f"label {index} {text!r}: classify labels take no {MASK_MARKER}")
        built.append(Label(index, text, -1, values.get(index), query, index in masked))
    for key, name in queries.items():
        index = _index_key(key, labels, "'queries'")
        if built[index].query_name != name:
            raise ValueError(f"'queries': label {index} is {labels[index]!r}, not '${name}'")
    return built


def tree_from_dict(data: Any) -> Tree:
    """Structural checks, label checks, then a re-parse of the canonical prompt."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a tree must be a mapping with 'nodes' and 'labels', got {data!r:.80}")
    extra = set(data) - {"nodes", "labels", "thresholds", "queries", "masks"}
    if extra or "nodes" not in data or "labels" not in data:
        raise ValueError(
            f"a tree needs keys 'nodes' and 'labels' (optional 'thresholds', 'queries', "
            f"'masks'); "
            f"got {sorted(map(str, data))}"
        )
    labels, raw_nodes = data["labels"], data["nodes"]
    if not isinstance(labels, list | tuple) or not all(isinstance(t, str) for t in labels):
        raise ValueError("'labels' must be a list of strings")
    labels = list(labels)
    if not labels or labels[0] != "image":
        raise ValueError("'labels' must start with 'image', the root region")
    if not isinstance(raw_nodes, list | tuple) or not raw_nodes:
        raise ValueError("'nodes' must be a non-empty list")
    nodes, owner = _nodes_from_dicts(raw_nodes, len(labels))
    built = _labels_from_dict(data, labels, nodes, owner)
    draft = Tree(tuple(nodes), tuple(built))
    prompt = draft.to_prompt()
    try:
        tree = Tree(*Parser(prompt).parse())  # no length cap: spacing may differ from the original
    except PromptError as e:
        raise ValueError(f"invalid tree: {e.message} (in its prompt {prompt!r})") from None
    if tree != draft:
        raise ValueError(
            "nodes and labels must be numbered in prompt order (as parse_prompt numbers "
            f"{prompt!r}: {tree.to_dict()})"
        )
    return tree


def check_runnable(tree: Tree) -> Tree:
    """The rule a tree must meet to run (parsing accepts it, as NanoOWL does): no group nested
    under a classify label, which has no region of its own. PromptError with its column."""
    classify_outputs = set(tree.classify_labels())
    for node in tree.nodes:
        if node.input in classify_outputs:
            raise PromptError(
                f"group at column {node.column} is nested under classify label "
                f"'{tree.labels[node.input].text}': a classify label has no region of its own; "
                "attach the group to a detect label instead, e.g. '[a room [a lamp] "
                "(indoors, outdoors)]'",
                node.column,
            )
    return tree


ERROR_CONTEXT = 60  # characters of the prompt shown on each side of an error's column


def caret_message(prompt: str, error: Exception, context: int = ERROR_CONTEXT) -> str:
    """The error's message, then the prompt around its column with a caret under the column.

    The one formatter of prompt errors (service, parameter refusal, CLI, start-up): only
    `context` characters on each side are shown ("..." marks a cut), so a huge prompt never
    comes back whole; characters that would break the caret's alignment (line breaks, tabs,
    invisible characters) are shown as spaces. Errors without a column: the message only.
    """
    column = getattr(error, "column", None)
    if not isinstance(prompt, str) or not isinstance(column, int) or not 0 <= column <= len(prompt):
        return str(error)
    start, end = max(0, column - context), min(len(prompt), column + context + 1)
    head = "..." if start > 0 else ""
    tail = "..." if end < len(prompt) else ""
    shown = "".join(ch if ch.isprintable() else " " for ch in prompt[start:end])
    return f"{error}\n  {head}{shown}{tail}\n  {' ' * (len(head) + column - start)}^"
