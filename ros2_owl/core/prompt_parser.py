"""The tree prompt grammar: a one-pass scanner that turns text into groups and labels.

`[...]` detects its comma-separated labels inside the current region, `(...)` classifies the
current region among its labels, and groups written after a label run on that label's regions.
Label numbering and node order match NanoOWL's `Tree.from_prompt`; everything NanoOWL accepts
silently or crashes on is a PromptError with a 0-based column. Grammar: README, "The tree
prompt language". The public API (parse_prompt, Tree) is ros2_owl.core.prompt.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from .limits import is_fraction

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
    mask: bool = False  # `{mask}`: an instance mask for each of this label's detections

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


MAX_PROMPT_CHARS = 1000  # whole prompt, in characters
MAX_LABELS = 64  # labels besides the root 'image' (each is text encoding + per-region work)
MAX_DEPTH = 4  # nesting levels of groups; every level is another crop-and-encode pass
MAX_LABEL_CHARS = 100  # one label's text; the predictor re-checks the 16-token encoder limit
_INVISIBLE = frozenset(("Cf", "Zs", "Zl", "Zp"))  # Unicode format and space characters


def is_blank(text: str) -> bool:
    """True when `text` shows nothing: only white space and Unicode format/space characters
    (e.g. U+200B ZERO WIDTH SPACE), which encode to a label nobody can read or type."""
    return all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE for ch in text)


_OPS = {"[": DETECT, "(": CLASSIFY}
_CLOSER = {"[": "]", "(": ")"}
_OPENER = {"]": "[", ")": "("}
STRUCTURE = "[](),"
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
QUERY_NAME = re.compile(r"[A-Za-z0-9_-]+")
_EXAMPLE = "e.g. '[a person [a face], a car (red, blue)]'"


class Problem(Exception):
    """A label-level fault, located by offset so both the parser and from_dict can word it."""

    def __init__(self, offset: int, what: str, advice: str):
        super().__init__(what)
        self.offset, self.what, self.advice = offset, what, advice


def _read_threshold(segment: str, at: int, op: Op) -> float:
    """The `@threshold` that starts at offset `at` of a label's raw text."""
    second = segment.find("@", at + 1)
    if second >= 0:
        raise Problem(second, "second '@'", "a label takes one threshold at its end")
    if op == CLASSIFY:
        raise Problem(
            at,
            f"threshold on classify label {segment[:at].strip()!r}",
            "classify groups pick the best label and take no threshold; remove the '@' part",
        )
    raw = segment[at + 1 :]
    value = raw.strip()
    offset = at + 1 + len(raw) - len(raw.lstrip())
    if not value:
        raise Problem(at, "missing threshold after '@'", "write e.g. 'a person@0.3'")
    if not _NUMBER.fullmatch(value):
        raise Problem(
            offset,
            f"malformed threshold {value!r}",
            "'@' is reserved: it must be followed by a number between 0 and 1 at the end "
            "of a label, e.g. 'a person@0.3'",
        )
    threshold = float(value) + 0.0
    if not is_fraction(threshold):
        raise Problem(offset, f"threshold {value} out of range", "use a number from 0 to 1")
    return threshold


MASK_MARKER = "{mask}"


def split_marker(segment: str, op: Op) -> tuple[str, bool]:
    """A label's raw text without its trailing `{mask}` marker, and whether it had one.

    Braces are reserved: `{mask}` is the only marker, once, at the very end of a detect label
    (after its text and @threshold, before its nested groups)."""
    opening, closing = segment.find("{"), segment.find("}")
    if opening < 0 and closing < 0:
        return segment, False
    advice = f"braces are reserved: the only marker is {MASK_MARKER}, e.g. '[a mug {MASK_MARKER}]'"
    if closing < 0:
        raise Problem(opening, "unclosed '{'", advice)
    if opening < 0 or closing < opening:
        raise Problem(closing, "unmatched '}'", advice)
    marker = segment[opening : closing + 1]
    if marker != MASK_MARKER:
        raise Problem(opening, f"unknown marker {marker!r}", advice)
    rest = segment[closing + 1 :]
    if rest.strip():
        at = closing + 1 + len(rest) - len(rest.lstrip())
        raise Problem(
            at,
            f"text {rest.strip()!r} after {MASK_MARKER}",
            f"{MASK_MARKER} comes last in a label, after its text and @threshold",
        )
    if op == CLASSIFY:
        raise Problem(
            opening,
            f"{MASK_MARKER} on a classify label",
            "masks are for detected boxes: put it on a label of a detect group '[...]'",
        )
    return segment[:opening], True


def read_label(segment: str, op: Op) -> tuple[str, float | None, str | None, int]:
    """Split a label's raw text into (text, threshold, query name, text offset)."""
    at = segment.find("@")
    body = segment[:at] if at >= 0 else segment
    threshold = _read_threshold(segment, at, op) if at >= 0 else None
    text = body.strip()
    offset = len(body) - len(body.lstrip())
    if is_blank(text):
        what = "empty label before '@'" if at >= 0 else "empty label"
        raise Problem(0, what, f"write a label between brackets and commas, {_EXAMPLE}")
    if len(text) > MAX_LABEL_CHARS:
        raise Problem(
            offset,
            f"label of {len(text)} characters",
            f"a label may have at most {MAX_LABEL_CHARS} characters; shorten it",
        )
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in ("Cc", "Cs") and not ch.isspace():
            raise Problem(offset + i, f"control character {ch!r}", "remove it from the label")
    query = None
    if text.startswith("$"):
        query = text[1:]
        if not QUERY_NAME.fullmatch(query):
            raise Problem(
                offset,
                f"invalid reference-image label {text!r}",
                "write '$' and a name of letters, digits, '_' or '-', e.g. '$my_mug'",
            )
        if op == CLASSIFY:
            raise Problem(
                offset,
                f"reference-image label {text!r} in a classify group",
                "'$name' labels are only allowed in detect groups '[...]'",
            )
    elif "$" in text:
        raise Problem(
            offset + text.index("$"),
            "reserved character '$'",
            "'$' may only start a reference-image label such as '[$my_mug]'",
        )
    return text, threshold, query, offset


def same_key(text: str) -> str:
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


class Parser:
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

    def parse(self) -> tuple[tuple[TreeNode, ...], tuple[Label, ...], tuple[PromptWarning, ...]]:
        """(nodes, labels, warnings) of the whole text; PromptError at the first fault."""
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
        return nodes, labels, tuple(self.warnings)

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
            raw, mask = split_marker(self.text[g.start : end], op)
            text, threshold, query, offset = read_label(raw, op)
        except Problem as p:
            column = g.start + p.offset
            if p.what == "empty label" and end < len(self.text) and self.text[end] in _OPS:
                p.advice = (
                    "a group must follow a label's text, e.g. '[a person [a face]]'; to give one "
                    "label several groups write them one after another: "
                    "'[a person [a face] (sad, happy)]'"
                )
            raise self.fail(column, f"{p.what} at column {column}: {p.advice}") from None
        column = g.start + offset
        key = same_key(text)
        if key in g.seen:
            raise self.fail(
                column,
                f"duplicate label {text!r} at column {column}: the group opened at column "
                f"{g.column} already has it at column {g.seen[key]}; labels in a group must differ",
            )
        g.seen[key] = column
        self.labels[g.label] = Label(g.label, text, column, threshold, query, mask)

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
        while end < len(self.text) and self.text[end] not in STRUCTURE:
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
