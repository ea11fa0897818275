"""The tree prompt language: `[a person [a face] (standing, sitting)]` parsed into a Tree.

`[...]` detects its comma-separated labels inside the current region, `(...)` classifies the
current region among its labels, and groups written after a label run on that label's regions.
Label numbering and node order match NanoOWL's `Tree.from_prompt`; everything NanoOWL accepts
silently or crashes on is a PromptError with a 0-based column. Grammar: README, "The tree
prompt language". The Tree types live in ros2_owl.prompt_tree and are re-exported here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .prompt_tree import (
    CLASSIFY,
    DETECT,
    Label,
    Op,
    PromptError,
    PromptWarning,
    Tree,
    TreeNode,
    check_threshold,
)

MAX_PROMPT_CHARS = 1000  # whole prompt, in characters
MAX_LABELS = 64  # labels besides the root 'image' (each is text encoding + per-region work)
MAX_DEPTH = 4  # nesting levels of groups; every level is another crop-and-encode pass
MAX_LABEL_CHARS = 100  # one label's text; the predictor re-checks the 16-token encoder limit
ERROR_CONTEXT = 60  # characters of the prompt shown on each side of an error's column
_INVISIBLE = frozenset(("Cf", "Zs", "Zl", "Zp"))  # format and space characters


_OPS = {"[": DETECT, "(": CLASSIFY}
_CLOSER = {"[": "]", "(": ")"}
_OPENER = {"]": "[", ")": "("}
_STRUCTURE = "[](),"
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_QUERY_NAME = re.compile(r"[A-Za-z0-9_-]+")
_EXAMPLE = "e.g. '[a person [a face], a car (red, blue)]'"

__all__ = [
    "CLASSIFY",
    "DETECT",
    "MAX_DEPTH",
    "MAX_LABELS",
    "MAX_LABEL_CHARS",
    "MAX_PROMPT_CHARS",
    "Label",
    "PromptError",
    "PromptWarning",
    "Tree",
    "TreeNode",
    "format_prompt_error",
    "is_blank",
    "parse_prompt",
]


def is_blank(text: str) -> bool:
    """True when `text` shows nothing: only white space and Unicode format/space characters
    (e.g. U+200B ZERO WIDTH SPACE), which encode to a label nobody can read or type."""
    return all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE for ch in text)


def format_prompt_error(prompt: str, error: Exception, context: int = ERROR_CONTEXT) -> str:
    """An error's message, then the prompt around its column with a caret under the column.

    Only `context` characters on each side are shown ("..." marks the cut), so a huge prompt
    never comes back whole; characters that would break the caret's alignment (line breaks,
    tabs, invisible characters) are shown as spaces. Errors without a column: the message only.
    """
    column = getattr(error, "column", None)
    if not isinstance(prompt, str) or not isinstance(column, int) or not 0 <= column <= len(prompt):
        return str(error)
    start, end = max(0, column - context), min(len(prompt), column + context + 1)
    head = "..." if start > 0 else ""
    tail = "..." if end < len(prompt) else ""
    shown = "".join(ch if ch.isprintable() else " " for ch in prompt[start:end])
    return f"{error}\n  {head}{shown}{tail}\n  {' ' * (len(head) + column - start)}^"


class _Problem(Exception):
    """A label-level fault, located by offset so both the parser and from_dict can word it."""

    def __init__(self, offset: int, what: str, advice: str):
        super().__init__(what)
        self.offset, self.what, self.advice = offset, what, advice


def _read_label(segment: str, op: Op) -> tuple[str, float | None, str | None, int]:
    """Split a label's raw text into (text, threshold, query name, text offset)."""
    body, threshold = segment, None
    at = segment.find("@")
    if at >= 0:
        body = segment[:at]
        second = segment.find("@", at + 1)
        if second >= 0:
            raise _Problem(second, "second '@'", "a label takes one threshold at its end")
        if op == CLASSIFY:
            raise _Problem(
                at,
                f"threshold on classify label {body.strip()!r}",
                "classify groups pick the best label and take no threshold; remove the '@' part",
            )
        raw = segment[at + 1 :]
        value = raw.strip()
        offset = at + 1 + len(raw) - len(raw.lstrip())
        if not value:
            raise _Problem(at, "missing threshold after '@'", "write e.g. 'a person@0.3'")
        if not _NUMBER.fullmatch(value):
            raise _Problem(
                offset,
                f"malformed threshold {value!r}",
                "'@' is reserved: it must be followed by a number between 0 and 1 at the end "
                "of a label, e.g. 'a person@0.3'",
            )
        threshold = float(value) + 0.0
        if not 0.0 <= threshold <= 1.0:
            raise _Problem(offset, f"threshold {value} out of range", "use a number from 0 to 1")
    text = body.strip()
    offset = len(body) - len(body.lstrip())
    if is_blank(text):
        what = "empty label before '@'" if at >= 0 else "empty label"
        raise _Problem(0, what, f"write a label between brackets and commas, {_EXAMPLE}")
    if len(text) > MAX_LABEL_CHARS:
        raise _Problem(
            offset,
            f"label of {len(text)} characters",
            f"a label may have at most {MAX_LABEL_CHARS} characters; shorten it",
        )
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in ("Cc", "Cs") and not ch.isspace():
            raise _Problem(offset + i, f"control character {ch!r}", "remove it from the label")
    query = None
    if text.startswith("$"):
        query = text[1:]
        if not _QUERY_NAME.fullmatch(query):
            raise _Problem(
                offset,
                f"invalid reference-image label {text!r}",
                "write '$' and a name of letters, digits, '_' or '-', e.g. '$my_mug'",
            )
        if op == CLASSIFY:
            raise _Problem(
                offset,
                f"reference-image label {text!r} in a classify group",
                "'$name' labels are only allowed in detect groups '[...]'",
            )
    elif "$" in text:
        raise _Problem(
            offset + text.index("$"),
            "reserved character '$'",
            "'$' may only start a reference-image label such as '[$my_mug]'",
        )
    return text, threshold, query, offset


def _same_key(text: str) -> str:
    """Labels that differ only in case or spacing encode the same, so count them as duplicates."""
    return " ".join(text.casefold().split())


@dataclass
class _Group:
    """Parser state for one open bracket."""

    opener: str
    column: int
    node: int
    label: int  # index of the label being written
    start: int  # column where that label's text begins
    text_end: int | None = None  # set once the label's first nested group opens
    seen: dict[str, int] = field(default_factory=dict)


class _Parser:
    """Single left-to-right scan; see the module docstring for the grammar."""

    def __init__(self, text: str):
        self.text = text
        self.nodes: list[tuple[Op, int, list[int], int]] = []
        self.labels: dict[int, Label] = {0: Label(0, "image")}
        self.stack: list[_Group] = []
        self.warnings: list[PromptWarning] = []
        self.root = "start"  # 'start' | 'group' | 'comma' (what the root level saw last)
        self.root_comma = -1

    def fail(self, column: int, message: str) -> PromptError:
        return PromptError(message, column)

    def parse(self) -> Tree:
        for i, ch in enumerate(self.text):
            if ch in _OPS:
                self.open(i, ch)
            elif ch in _OPENER:
                self.close(i, ch)
            elif ch == ",":
                self.comma(i)
            elif not ch.isspace():
                self.check_text(i)
        if self.stack:
            g = self.stack[-1]
            raise self.fail(
                g.column,
                f"unclosed '{g.opener}' opened at column {g.column}: "
                f"add a matching '{_CLOSER[g.opener]}'",
            )
        if self.root == "start":
            raise self.fail(0, f"empty prompt: write at least one group, {_EXAMPLE}")
        if self.root == "comma":
            raise self.fail(
                self.root_comma,
                f"trailing ',' at column {self.root_comma} after the last group: remove it",
            )
        nodes = tuple(TreeNode(op, inp, tuple(out), col) for op, inp, out, col in self.nodes)
        labels = tuple(self.labels[i] for i in range(len(self.labels)))
        return Tree(nodes, labels, tuple(self.warnings))

    def new_label(self, column: int) -> int:
        index = len(self.labels)
        if index > MAX_LABELS:
            raise self.fail(
                column,
                f"too many labels at column {column}: a prompt may have at most {MAX_LABELS} labels",
            )
        self.labels[index] = Label(index, "")  # placeholder until its text is known
        return index

    def finish_label(self, g: _Group, end: int) -> None:
        g.text_end = end
        op = self.nodes[g.node][0]
        try:
            text, threshold, query, offset = _read_label(self.text[g.start : end], op)
        except _Problem as p:
            column = g.start + p.offset
            if p.what == "empty label" and end < len(self.text) and self.text[end] in _OPS:
                p.advice = (
                    "a group must follow a label's text, e.g. '[a person [a face]]'; to give one "
                    "label several groups write them one after another: "
                    "'[a person [a face] (sad, happy)]'"
                )
            raise self.fail(column, f"{p.what} at column {column}: {p.advice}") from None
        column = g.start + offset
        key = _same_key(text)
        if key in g.seen:
            raise self.fail(
                column,
                f"duplicate label {text!r} at column {column}: the group opened at column "
                f"{g.column} already has it at column {g.seen[key]}; labels in a group must differ",
            )
        g.seen[key] = column
        self.labels[g.label] = Label(g.label, text, column, threshold, query)

    def open(self, i: int, ch: str) -> None:
        parent = self.stack[-1] if self.stack else None
        if parent is not None and parent.text_end is None:
            self.finish_label(parent, i)
        if len(self.stack) >= MAX_DEPTH:
            raise self.fail(
                i, f"group at column {i} is nested too deep: at most {MAX_DEPTH} levels of groups"
            )
        index = self.new_label(i)
        self.nodes.append((_OPS[ch], parent.label if parent else 0, [index], i))
        self.stack.append(_Group(ch, i, len(self.nodes) - 1, index, i + 1))
        if parent is None:
            self.root = "group"

    def close(self, i: int, ch: str) -> None:
        if not self.stack:
            raise self.fail(i, f"unexpected '{ch}' at column {i}: no group is open")
        g = self.stack[-1]
        if g.opener != _OPENER[ch]:
            raise self.fail(
                i,
                f"unexpected '{ch}' at column {i}: the open group is '{g.opener}' "
                f"(opened at column {g.column}); close it with '{_CLOSER[g.opener]}' first",
            )
        if g.text_end is None:
            self.finish_label(g, i)
        self.stack.pop()
        op, _, outputs, _ = self.nodes[g.node]
        if op == CLASSIFY and len(outputs) == 1:
            text = self.labels[outputs[0]].text
            self.warnings.append(
                PromptWarning(
                    g.column,
                    f"classify group at column {g.column} has a single label {text!r}: a softmax "
                    f"over one label is always 1.0; add an alternative, e.g. '({text}, other)'",
                )
            )
        if not self.stack:
            self.root = "group"

    def comma(self, i: int) -> None:
        if not self.stack:
            if self.root != "group":
                where = "before the first group" if self.root == "start" else "after another ','"
                raise self.fail(i, f"unexpected ',' at column {i} {where}: remove it")
            self.root, self.root_comma = "comma", i
            return
        g = self.stack[-1]
        if g.text_end is None:
            self.finish_label(g, i)
        index = self.new_label(i)
        self.nodes[g.node][2].append(index)
        g.label, g.start, g.text_end = index, i + 1, None

    def check_text(self, i: int) -> None:
        end = i
        while end < len(self.text) and self.text[end] not in _STRUCTURE:
            end += 1
        snippet = self.text[i:end].rstrip()
        if len(snippet) > 40:  # the message names the text; the caret window shows the rest
            snippet = snippet[:37] + "..."
        if not self.stack:
            raise self.fail(
                i,
                f"text {snippet!r} at column {i} is outside any group: put labels in '[...]' "
                f"to detect or '(...)' to classify, {_EXAMPLE}",
            )
        g = self.stack[-1]
        if g.text_end is not None:
            label = self.labels[g.label].text
            joined = label + snippet if snippet.startswith("@") else f"{label} {snippet}"
            raise self.fail(
                i,
                f"text {snippet!r} at column {i} comes after a nested group of label {label!r}: "
                f"a label's text (and @threshold) must come before its groups; "
                f"write '{joined} (...)' instead of '{label} (...) {snippet}'",
            )


def parse_prompt(text: str) -> Tree:
    """Parse a tree prompt; every malformed string raises PromptError with a column."""
    if not isinstance(text, str):
        raise TypeError(f"prompt must be a str, got {type(text).__name__}")
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(
            f"prompt of {len(text)} characters is too long: the limit is {MAX_PROMPT_CHARS}",
            MAX_PROMPT_CHARS,
        )
    return _Parser(text).parse()


def _index_key(key: Any, labels: list[str], what: str) -> int:
    """JSON turns int keys into strings; accept both."""
    if isinstance(key, str) and key.isdecimal():
        key = int(key)
    if isinstance(key, bool) or not isinstance(key, int) or not 0 < key < len(labels):
        raise ValueError(f"{what}: key {key!r} is not a label index in 1..{len(labels) - 1}")
    return key


def tree_from_dict(data: Any) -> Tree:
    """Structural checks, label checks, then a re-parse of the canonical prompt."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a tree must be a mapping with 'nodes' and 'labels', got {data!r:.80}")
    extra = set(data) - {"nodes", "labels", "thresholds", "queries"}
    if extra or "nodes" not in data or "labels" not in data:
        raise ValueError(
            f"a tree needs keys 'nodes' and 'labels' (optional 'thresholds', 'queries'); "
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
            if isinstance(o, bool) or not isinstance(o, int) or not 0 < o < len(labels):
                raise ValueError(f"node {k}: output {o!r} is not a label index")
            if o in owner:
                raise ValueError(f"label {o} is an output of both node {owner[o]} and node {k}")
            owner[o] = k
        nodes.append(TreeNode(op, inp, tuple(outs)))
    thresholds = data.get("thresholds") or {}
    queries = data.get("queries") or {}
    if not isinstance(thresholds, Mapping) or not isinstance(queries, Mapping):
        raise ValueError("'thresholds' and 'queries' must be mappings keyed by label index")
    values: dict[int, float] = {}
    for key, value in thresholds.items():
        index = _index_key(key, labels, "'thresholds'")
        values[index] = check_threshold(value, f"threshold of label {index} {labels[index]!r}")
    built = [Label(0, "image")]
    for index, text in enumerate(labels[1:], start=1):
        if index not in owner:
            raise ValueError(f"label {index} {text!r} is not an output of any node")
        op = nodes[owner[index]].op
        bad = next((c for c in _STRUCTURE + "@" if c in text), None)
        if text != text.strip() or bad:
            why = f"reserved character {bad!r}" if bad else "surrounding white space"
            raise ValueError(f"label {index} {text!r}: {why}")
        try:
            _, _, query, _ = _read_label(text, op)
        except _Problem as p:
            raise ValueError(f"label {index} {text!r}: {p.what}: {p.advice}") from None
        if index in values and op == CLASSIFY:
            raise ValueError(f"label {index} {text!r}: classify labels take no threshold")
        built.append(Label(index, text, -1, values.get(index), query))
    for key, name in queries.items():
        index = _index_key(key, labels, "'queries'")
        if built[index].query_name != name:
            raise ValueError(f"'queries': label {index} is {labels[index]!r}, not '${name}'")
    draft = Tree(tuple(nodes), tuple(built))
    prompt = draft.to_prompt()
    try:
        tree = _Parser(prompt).parse()  # no length cap: spacing may differ from the original
    except PromptError as e:
        raise ValueError(f"invalid tree: {e.message} (in its prompt {prompt!r})") from None
    if tree != draft:
        raise ValueError(
            "nodes and labels must be numbered in prompt order (as parse_prompt numbers "
            f"{prompt!r}: {tree.to_dict()})"
        )
    return tree
