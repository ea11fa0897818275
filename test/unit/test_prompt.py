"""Tests for the tree prompt language: NanoOWL numbering, strict errors, thresholds, round trips."""

from __future__ import annotations

import json
import pickle
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ros2_owl.core.prompt import (
    MAX_DEPTH,
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_PROMPT_CHARS,
    Label,
    PromptError,
    PromptWarning,
    Tree,
    TreeNode,
    parse_prompt,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nanoowl_semantics(prompt: str) -> dict:
    """NanoOWL's documented numbering, written independently, to check conformance against.

    A bracket opens a node on the currently open label and allocates its first label; a comma
    allocates the next label of the innermost node; other characters go to the open label;
    labels are stripped at the end. Raises where NanoOWL raises (bad brackets, root comma).
    """
    labels = ["image"]
    nodes: list[dict] = []
    open_nodes: list[tuple[str, dict]] = []
    current = [0]
    for ch in prompt:
        if ch in "[(":
            labels.append("")
            node = {
                "op": "detect" if ch == "[" else "classify",
                "input": current[-1],
                "outputs": [len(labels) - 1],
            }
            nodes.append(node)
            open_nodes.append((ch, node))
            current.append(len(labels) - 1)
        elif ch in "])":
            if not open_nodes or open_nodes[-1][0] != {"]": "[", ")": "("}[ch]:
                raise RuntimeError(f"unexpected {ch}")
            open_nodes.pop()
            current.pop()
        elif ch == ",":
            if not open_nodes:
                raise IndexError("comma at root")
            labels.append("")
            open_nodes[-1][1]["outputs"].append(len(labels) - 1)
            current[-1] = len(labels) - 1
        else:
            labels[current[-1]] += ch
    if open_nodes:
        raise RuntimeError("unclosed group")
    return {"nodes": nodes, "labels": [s.strip() for s in labels]}


def d(op: str, inp: int, *outs: int) -> dict:
    return {"op": op, "input": inp, "outputs": list(outs)}


VALID = [
    (
        "[a person, a car(black)]",
        {
            "nodes": [d("detect", 0, 1, 2), d("classify", 2, 3)],
            "labels": ["image", "a person", "a car", "black"],
        },
    ),
    (
        "[a face](indoors, outdoors)",
        {
            "nodes": [d("detect", 0, 1), d("classify", 0, 2, 3)],
            "labels": ["image", "a face", "indoors", "outdoors"],
        },
    ),
    (
        "[a face], (indoors, outdoors)",
        {
            "nodes": [d("detect", 0, 1), d("classify", 0, 2, 3)],
            "labels": ["image", "a face", "indoors", "outdoors"],
        },
    ),
    (
        "(indoors, outdoors)",
        {"nodes": [d("classify", 0, 1, 2)], "labels": ["image", "indoors", "outdoors"]},
    ),
    (
        "[a face [a nose, an eye, a mouth]]",
        {
            "nodes": [d("detect", 0, 1), d("detect", 1, 2, 3, 4)],
            "labels": ["image", "a face", "a nose", "an eye", "a mouth"],
        },
    ),
    (
        "[a face (interested, yawning / bored)]",
        {
            "nodes": [d("detect", 0, 1), d("classify", 1, 2, 3)],
            "labels": ["image", "a face", "interested", "yawning / bored"],
        },
    ),
    (
        "[a person [a face, a hand] (standing, sitting)]",
        {
            "nodes": [d("detect", 0, 1), d("detect", 1, 2, 3), d("classify", 1, 4, 5)],
            "labels": ["image", "a person", "a face", "a hand", "standing", "sitting"],
        },
    ),
    (
        "[a [b [c [d]]]]",
        {
            "nodes": [d("detect", 0, 1), d("detect", 1, 2), d("detect", 2, 3), d("detect", 3, 4)],
            "labels": ["image", "a", "b", "c", "d"],
        },
    ),
    (
        "[a person [a face [an eye (open, closed)]], a car [a wheel] (red, blue)] (day, night)",
        {
            "nodes": [
                d("detect", 0, 1, 6),
                d("detect", 1, 2),
                d("detect", 2, 3),
                d("classify", 3, 4, 5),
                d("detect", 6, 7),
                d("classify", 6, 8, 9),
                d("classify", 0, 10, 11),
            ],
            "labels": [
                "image",
                "a person",
                "a face",
                "an eye",
                "open",
                "closed",
                "a car",
                "a wheel",
                "red",
                "blue",
                "day",
                "night",
            ],
        },
    ),
    (
        "  [ a  person ,a car\t]\n",
        {"nodes": [d("detect", 0, 1, 2)], "labels": ["image", "a  person", "a car"]},
    ),
    (
        "[a person's hat, a t-shirt / top, 3 cars!, ein Hund, 猫]",
        {
            "nodes": [d("detect", 0, 1, 2, 3, 4, 5)],
            "labels": ["image", "a person's hat", "a t-shirt / top", "3 cars!", "ein Hund", "猫"],
        },
    ),
    (
        "[a face [a face]][a face]",
        {
            "nodes": [d("detect", 0, 1), d("detect", 1, 2), d("detect", 0, 3)],
            "labels": ["image", "a face", "a face", "a face"],
        },
    ),
    (
        "[indoors (a, b)]  [outdoors [x]] (p, q)",
        {
            "nodes": [
                d("detect", 0, 1),
                d("classify", 1, 2, 3),
                d("detect", 0, 4),
                d("detect", 4, 5),
                d("classify", 0, 6, 7),
            ],
            "labels": ["image", "indoors", "a", "b", "outdoors", "x", "p", "q"],
        },
    ),
    (
        "(indoors [a lamp], outdoors)",
        {
            "nodes": [d("classify", 0, 1, 3), d("detect", 1, 2)],
            "labels": ["image", "indoors", "a lamp", "outdoors"],
        },
    ),
    (
        "[a person@0.3, a car @ .5 (black, white), $my_mug, $cup-2@1]",
        {
            "nodes": [d("detect", 0, 1, 2, 5, 6), d("classify", 2, 3, 4)],
            "labels": ["image", "a person", "a car", "black", "white", "$my_mug", "$cup-2"],
            "thresholds": {1: 0.3, 2: 0.5, 6: 1.0},
            "queries": {5: "my_mug", 6: "cup-2"},
        },
    ),
    (
        "[a@0, b@1.000, c@00.25]",
        {
            "nodes": [d("detect", 0, 1, 2, 3)],
            "labels": ["image", "a", "b", "c"],
            "thresholds": {1: 0.0, 2: 1.0, 3: 0.25},
        },
    ),
]


@pytest.mark.parametrize(("prompt", "expected"), VALID, ids=[p for p, _ in VALID])
def test_valid_prompts_give_expected_dict(prompt, expected):
    tree = parse_prompt(prompt)
    assert tree.to_dict() == expected
    assert Tree.from_dict(tree.to_dict()) == tree
    assert parse_prompt(tree.to_prompt()) == tree


# NanoOWL has no thresholds and crashes on commas between root groups; all else must match it.
NANO_VALID = [(p, e) for p, e in VALID if "@" not in p and "]," not in p]


@pytest.mark.parametrize(("prompt", "expected"), NANO_VALID, ids=[p for p, _ in NANO_VALID])
def test_valid_prompts_match_nanoowl_numbering(prompt, expected):
    got = parse_prompt(prompt).to_dict()
    assert {"nodes": got["nodes"], "labels": got["labels"]} == nanoowl_semantics(prompt)


def test_seed_example_exactly():
    tree = parse_prompt("[a person, a car(black)]")
    assert tree.to_dict() == {
        "nodes": [
            {"op": "detect", "input": 0, "outputs": [1, 2]},
            {"op": "classify", "input": 2, "outputs": [3]},
        ],
        "labels": ["image", "a person", "a car", "black"],
    }
    assert json.loads(tree.to_json()) == json.loads(json.dumps(tree.to_dict()))
    assert tree.to_prompt() == "[a person, a car (black)]"


TOO_MANY = "[" + ",".join(f"l{i}" for i in range(MAX_LABELS + 1)) + "]"

INVALID = [
    ("", 0, "empty prompt"),
    ("   \n", 0, "empty prompt"),
    ("a face", 0, "text 'a face' at column 0 is outside any group"),
    ("[a] b", 4, "text 'b' at column 4 is outside any group"),
    ("[a car (black) sedan]", 15, "write 'a car sedan (...)'"),
    ("[a car (black) @0.3]", 15, "a label's text (and @threshold) must come before its groups"),
    (
        "[a person [a (x]]",
        15,
        "unexpected ']' at column 15: the open group is '(' (opened at column 13)",
    ),
    ("[a face)", 7, "unexpected ')' at column 7: the open group is '[' (opened at column 0)"),
    ("[a]]", 3, "unexpected ']' at column 3: no group is open"),
    (")", 0, "unexpected ')' at column 0: no group is open"),
    ("[a person", 0, "unclosed '[' opened at column 0: add a matching ']'"),
    ("[a (b, c", 3, "unclosed '(' opened at column 3"),
    ("[]", 1, "empty label at column 1"),
    ("()", 1, "empty label at column 1"),
    ("[a, ]", 3, "empty label at column 3"),
    ("[,a]", 1, "empty label at column 1"),
    ("[a,,b]", 3, "empty label at column 3"),
    ("[[a]]", 1, "a group must follow a label's text"),
    ("[a person [a face], [a hand]]", 19, "write them one after another"),
    ("[a, b, a]", 7, "duplicate label 'a' at column 7"),
    ("(Sitting, sitting)", 10, "already has it at column 1"),
    ("[a  b, a b]", 7, "duplicate label"),
    ("[a],", 3, "trailing ',' at column 3"),
    (",[a]", 0, "unexpected ',' at column 0 before the first group"),
    ("[a],,[b]", 4, "after another ','"),
    ("[a@1.5]", 3, "threshold 1.5 out of range at column 3"),
    ("[a@-0.1]", 3, "threshold -0.1 out of range"),
    ("[a person@ 2]", 11, "out of range at column 11"),
    ("[a@x]", 3, "malformed threshold 'x' at column 3"),
    ("[a@1e-3]", 3, "malformed threshold '1e-3'"),
    ("[a@nan]", 3, "malformed threshold"),
    ("[a@0.3 tall]", 3, "malformed threshold '0.3 tall'"),
    ("[me@example.com]", 4, "'@' is reserved"),
    ("[a@]", 2, "missing threshold after '@' at column 2"),
    ("[a@0.1@0.2]", 6, "second '@' at column 6"),
    ("[@0.3]", 1, "empty label before '@' at column 1"),
    ("[a (b@0.3, c)]", 5, "threshold on classify label 'b' at column 5"),
    ("[$my mug]", 1, "invalid reference-image label '$my mug'"),
    ("[$]", 1, "invalid reference-image label '$'"),
    ("[$mug!]", 1, "invalid reference-image label"),
    ("($a, b)", 1, "reference-image label '$a' in a classify group"),
    ("[a $b]", 3, "reserved character '$' at column 3"),
    ("[a\x00b]", 2, "control character"),
    ("[a [b [c [d [e]]]]]", 12, f"nested too deep: at most {MAX_DEPTH} levels"),
    ("[" + "x" * (MAX_LABEL_CHARS + 1) + "]", 1, f"at most {MAX_LABEL_CHARS} characters"),
    (TOO_MANY, TOO_MANY.index(f",l{MAX_LABELS}"), f"at most {MAX_LABELS} labels"),
    ("[" + "x" * MAX_PROMPT_CHARS + "]", MAX_PROMPT_CHARS, "too long: the limit is 1000"),
]


@pytest.mark.parametrize(
    ("prompt", "column", "fragment"), INVALID, ids=[p[:40] for p, *_ in INVALID]
)
def test_invalid_prompts_report_column_and_reason(prompt, column, fragment):
    with pytest.raises(PromptError) as info:
        parse_prompt(prompt)
    assert info.value.column == column
    assert fragment in info.value.message
    assert str(info.value) == info.value.message


def test_error_message_examples_from_issue():
    with pytest.raises(PromptError) as info:
        parse_prompt("(indoor [car)")
    assert info.value.column == 12
    assert info.value.message.startswith(
        "unexpected ')' at column 12: the open group is '[' (opened at column 8)"
    )


def test_limits_are_inclusive():
    assert parse_prompt("[" + "x" * MAX_LABEL_CHARS + "]").labels[1].text == "x" * MAX_LABEL_CHARS
    tree = parse_prompt("[" + ",".join(f"l{i}" for i in range(MAX_LABELS)) + "]")
    assert len(tree.labels) == MAX_LABELS + 1
    deep = "[a [b [c [d]]]]"
    assert parse_prompt(deep).depth() == MAX_DEPTH
    spaced = "[a]" + " " * (MAX_PROMPT_CHARS - 3)
    assert len(parse_prompt(spaced).labels) == 2


def test_non_string_prompt_is_a_type_error():
    with pytest.raises(TypeError, match="prompt must be a str"):
        parse_prompt(b"[a]")  # type: ignore[arg-type]


def test_prompt_error_is_a_value_error_and_pickles():
    err = PromptError("bad thing at column 3", 3)
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.message, back.column) == ("bad thing at column 3", 3)


def test_single_label_classify_warns_with_column():
    tree = parse_prompt("[a person, a car(black)] (indoors)")
    assert [w.column for w in tree.warnings] == [16, 25]
    assert all(isinstance(w, PromptWarning) for w in tree.warnings)
    assert "single label 'black'" in tree.warnings[0].message
    assert "always 1.0" in tree.warnings[0].message
    assert parse_prompt("[a car (black, white)]").warnings == ()
    assert parse_prompt("[a car]").warnings == ()  # a one-label detect group is fine


def test_tree_queries():
    tree = parse_prompt(
        "[a person [a face (happy, sad)] (standing, sitting), a car@0.4, $mug] (day, night)"
    )
    assert tree.label_texts[:4] == ("image", "a person", "a face", "happy")
    assert tree.detect_labels() == (1, 2, 7, 8)
    assert tree.classify_labels() == (3, 4, 5, 6, 9, 10)
    assert tree.children(0) == (1, 7, 8, 9, 10)
    assert tree.children(1) == (2, 5, 6)
    assert tree.children(3) == ()
    assert [n.op for n in tree.nodes_for_input(1)] == ["detect", "classify"]
    assert tree.detect_nodes() == (tree.nodes[0], tree.nodes[1])
    assert tree.classify_nodes() == (tree.nodes[2], tree.nodes[3], tree.nodes[4])
    assert tree.depth() == 3
    assert [tree.label_depth(i) for i in (0, 1, 2, 3, 9)] == [0, 1, 2, 3, 1]
    assert tree.parent(3) == 2 and tree.parent(0) is None
    assert tree.node_index_of(5) == 3 and tree.node_index_of(0) is None
    assert tree.query_labels() == (8,)
    mug = tree.labels[8]
    assert (mug.text, mug.query_name, mug.is_image_query) == ("$mug", "mug", True)
    assert not tree.labels[7].is_image_query
    assert tree.labels[7].threshold == 0.4
    assert tree.labels[1].column == 1 and tree.nodes[1].column == 10


def test_effective_threshold_precedence_and_validation():
    tree = parse_prompt("[a person@0.3, a forklift, a box]")
    overrides = {"a person": 0.9, "a forklift": 0.5}
    assert tree.effective_threshold(1, 0.1, overrides) == 0.3  # prompt wins
    assert tree.effective_threshold(2, 0.1, overrides) == 0.5  # then overrides
    assert tree.effective_threshold(3, 0.1, overrides) == 0.1  # then default
    assert tree.effective_threshold(3, 0.2) == 0.2
    assert tree.detect_thresholds(0.1, overrides) == {1: 0.3, 2: 0.5, 3: 0.1}
    with pytest.raises(ValueError, match="threshold for label 'a forklift'"):
        tree.effective_threshold(3, 0.1, {"a forklift": 1.5})
    with pytest.raises(ValueError, match="default threshold"):
        tree.effective_threshold(1, -0.1)
    with pytest.raises(ValueError, match="default threshold"):
        tree.effective_threshold(1, float("nan"))
    with pytest.raises(ValueError, match="'x'"):
        tree.effective_threshold(1, 0.1, {"x": True})
    with pytest.raises(IndexError, match="label index 9"):
        tree.effective_threshold(9, 0.1)


def test_to_prompt_is_canonical():
    tree = parse_prompt(" [a person@.30 [a face](happy,sad) ,$mug@1]  ,(day,night)")
    assert tree.to_prompt() == "[a person@0.3 [a face] (happy, sad), $mug@1.0] (day, night)"
    tiny = parse_prompt("[a@0.00001]")
    assert tiny.to_prompt() == "[a@0.00001]"
    assert tiny.labels[1].threshold == 1e-5


def test_equality_ignores_columns_and_tree_is_frozen_and_hashable():
    a = parse_prompt("[a person,a car(black,white)]")
    b = parse_prompt("  [ a person , a car ( black , white ) ]")
    assert a == b and hash(a) == hash(b)
    assert a.labels[2].column != b.labels[2].column
    assert a != parse_prompt("[a person@0.5, a car (black, white)]")
    assert a != parse_prompt("[a person, a car [black, white]]")
    with pytest.raises(FrozenInstanceError):
        a.nodes = ()  # type: ignore[misc]
    assert Label(1, "x", 5) == Label(1, "x", 9)
    assert TreeNode("detect", 0, (1,), 0) == TreeNode("detect", 0, (1,), 7)


def test_json_round_trip_with_thresholds_and_queries():
    tree = parse_prompt("[a person@0.25 (standing, sitting), $mug]")
    text = tree.to_json()
    assert json.loads(text)["thresholds"] == {"1": 0.25}
    assert json.loads(text)["queries"] == {"4": "mug"}
    back = Tree.from_json(text)
    assert back == tree and back.labels[1].threshold == 0.25 and back.labels[4].is_image_query
    assert [w.message for w in back.warnings] == [w.message for w in tree.warnings]


def test_from_dict_accepts_plain_nanoowl_dicts():
    nano = nanoowl_semantics("[a person [a face], $mug (red, blue)]")
    assert Tree.from_dict(nano) == parse_prompt("[a person [a face], $mug (red, blue)]")
    assert Tree.from_dict(nano).labels[3].query_name == "mug"


GOOD = {"nodes": [d("detect", 0, 1, 2)], "labels": ["image", "a", "b"]}

BAD_DICTS = [
    ([], "must be a mapping"),
    ({"nodes": []}, "needs keys 'nodes' and 'labels'"),
    ({**GOOD, "extra": 1}, "needs keys"),
    ({**GOOD, "labels": "image a b"}, "'labels' must be a list of strings"),
    ({**GOOD, "labels": ["root", "a", "b"]}, "must start with 'image'"),
    ({**GOOD, "nodes": []}, "non-empty list"),
    ({**GOOD, "nodes": [{"op": "detect", "input": 0}]}, "node 0 must be a mapping"),
    ({**GOOD, "nodes": [d("find", 0, 1, 2)]}, "op must be 'detect' or 'classify'"),
    ({**GOOD, "nodes": [d("detect", 3, 1, 2)]}, "input 3 must be 0"),
    ({**GOOD, "nodes": [d("detect", True, 1, 2)]}, "input True"),
    ({**GOOD, "nodes": [d("detect", 0)]}, "outputs must be a non-empty list"),
    ({**GOOD, "nodes": [d("detect", 0, 1, 5)]}, "output 5 is not a label index"),
    ({**GOOD, "nodes": [d("detect", 0, 1, 1)]}, "label 1 is an output of both"),
    ({**GOOD, "nodes": [d("detect", 0, 1)]}, "label 2 'b' is not an output of any node"),
    ({**GOOD, "labels": ["image", "a", "b, c"]}, "reserved character ','"),
    ({**GOOD, "labels": ["image", "a", "b@0.3"]}, "reserved character '@'"),
    ({**GOOD, "labels": ["image", "a", " b"]}, "surrounding white space"),
    ({**GOOD, "labels": ["image", "a", ""]}, "empty label"),
    ({**GOOD, "labels": ["image", "a", "x$"]}, "reserved character '$'"),
    ({**GOOD, "labels": ["image", "a", "a"]}, "duplicate label 'a'"),
    ({**GOOD, "thresholds": {"1": 1.5}}, "threshold of label 1 'a' must be a number"),
    ({**GOOD, "thresholds": {"7": 0.5}}, "key 7 is not a label index"),
    ({**GOOD, "thresholds": [0.5]}, "must be mappings"),
    (
        {"nodes": [d("classify", 0, 1, 2)], "labels": ["image", "a", "b"], "thresholds": {1: 0.3}},
        "classify labels take no threshold",
    ),
    ({**GOOD, "queries": {1: "a"}}, "label 1 is 'a', not '$a'"),
    (
        {"nodes": [d("detect", 0, 2), d("detect", 0, 1)], "labels": ["image", "a", "b"]},
        "numbered in prompt order",
    ),
    (
        {
            "nodes": [d("detect", 0, 1), d("detect", 1, 3), d("detect", 0, 2)],
            "labels": ["image", "a", "b", "c"],
        },
        "numbered in prompt order",
    ),
]


@pytest.mark.parametrize(("data", "fragment"), BAD_DICTS)
def test_from_dict_rejects_malformed_dicts(data, fragment):
    with pytest.raises(ValueError, match=None) as info:
        Tree.from_dict(data)
    assert fragment in str(info.value)


def test_from_json_rejects_bad_json():
    with pytest.raises(ValueError, match="not valid JSON"):
        Tree.from_json("{nodes")


# ---------------------------------------------------------------- property tests

STRUCTURAL = st.text(alphabet="[](),@$ ab.01\t", max_size=60)
MIXED = st.text(alphabet=st.sampled_from(list("[](),@$ aAb.0123-_é猫\n\x00")), max_size=120)
ANY_TEXT = st.one_of(st.text(max_size=80), STRUCTURAL, MIXED)


def _check_parse_or_error(text: str) -> None:
    try:
        tree = parse_prompt(text)
    except PromptError as e:
        assert isinstance(e.column, int) and 0 <= e.column <= len(text)
        assert e.message and str(e) == e.message
        return
    assert parse_prompt(tree.to_prompt()) == tree
    assert Tree.from_dict(tree.to_dict()) == tree
    assert Tree.from_json(tree.to_json()) == tree
    for label in tree.labels[1:]:
        assert text[label.column : label.column + len(label.text)] == label.text
    for warning in tree.warnings:
        assert text[warning.column] == "("
    if "@" not in text and "{" not in text:  # NanoOWL knows neither thresholds nor {mask}
        try:
            reference = nanoowl_semantics(text)
        except (RuntimeError, IndexError):
            assert "," in text  # the only thing we accept that NanoOWL rejects is a root comma
        else:
            got = tree.to_dict()
            assert {"nodes": got["nodes"], "labels": got["labels"]} == reference


@FAST
@given(ANY_TEXT)
def test_any_text_parses_or_raises_prompt_error(text):
    _check_parse_or_error(text)


WORDS = st.sampled_from(
    ["a", "person", "car", "red", "face", "x-ray", "t-shirt", "3d", "über", "猫", "big/small"]
    + ["it's", "#1", "a.b", "q?", "A", "Car"]
)
LABEL_TEXT = st.lists(WORDS, min_size=1, max_size=3).map(" ".join)
QUERY = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True).map(lambda n: "$" + n)
THRESHOLD = st.one_of(
    st.none(),
    st.sampled_from(["0", "1", "0.5", ".25", "1.0", "0.00001", "00.3"]),
    st.floats(0, 1).map(repr).filter(lambda s: "e" not in s),
)
SPACE = st.sampled_from(["", "", " ", "  ", "\n", "\t"])


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


@st.composite
def prompts(draw):
    """A random valid prompt with its expected NanoOWL-style dict, built from a spec."""
    budget = [draw(st.integers(1, 16))]
    labels, nodes, thresholds, queries, masks = ["image"], [], {}, {}, []
    warnings = [0]

    def group(level: int, parent: int) -> str:
        op = draw(st.sampled_from(["detect", "classify"]))
        count = draw(st.integers(1, max(1, min(4, budget[0]))))
        budget[0] -= count
        item = LABEL_TEXT if op == "classify" else st.one_of(LABEL_TEXT, QUERY)
        texts = draw(st.lists(item, min_size=count, max_size=count, unique_by=_key))
        node = {"op": op, "input": parent, "outputs": []}
        nodes.append(node)
        warnings[0] += op == "classify" and count == 1
        parts = []
        for text in texts:
            index = len(labels)
            labels.append(text)
            node["outputs"].append(index)
            if text.startswith("$"):
                queries[index] = text[1:]
            part = draw(SPACE) + text
            value = draw(THRESHOLD) if op == "detect" else None
            if value is not None:
                part += draw(SPACE) + "@" + draw(SPACE) + value
                thresholds[index] = float(value)
            if op == "detect" and draw(st.booleans()):
                part += draw(SPACE) + "{mask}"
                masks.append(index)
            while level < MAX_DEPTH and budget[0] > 0 and draw(st.booleans()):
                part += draw(SPACE) + group(level + 1, index)
            parts.append(part + draw(SPACE))
        opener, closer = ("[", "]") if op == "detect" else ("(", ")")
        return opener + ",".join(parts) + closer

    text = draw(SPACE) + group(1, 0)
    while budget[0] > 0 and draw(st.booleans()):
        text += draw(st.sampled_from(["", " ", ", ", " ,\n"])) + group(1, 0)
    expected = {"nodes": nodes, "labels": labels}
    if thresholds:
        expected["thresholds"] = thresholds
    if queries:
        expected["queries"] = queries
    if masks:
        expected["masks"] = masks
    return text + draw(SPACE), expected, warnings[0]


@FAST
@given(prompts())
def test_generated_valid_prompts_parse_and_round_trip(case):
    text, expected, warning_count = case
    tree = parse_prompt(text)
    assert tree.to_dict() == expected
    assert len(tree.warnings) == warning_count
    canonical = tree.to_prompt()
    again = parse_prompt(canonical)
    assert again == tree and again.to_dict() == expected
    assert again.to_prompt() == canonical
    assert Tree.from_dict(tree.to_dict()) == tree
    assert Tree.from_json(tree.to_json()) == tree
    _check_parse_or_error(text)


@FAST
@given(prompts(), st.data())
def test_mutated_valid_prompts_parse_or_raise_prompt_error(case, data):
    text = case[0]
    pos = data.draw(st.integers(0, len(text)))
    if data.draw(st.booleans()):
        text = text[:pos] + data.draw(st.sampled_from(list("[](),@$x "))) + text[pos:]
    else:
        text = text[:pos] + text[pos + 1 :]
    _check_parse_or_error(text)


@pytest.mark.parametrize("label", ["\u200b", "\u200b\u200d", " \u2060 ", "\u3000", "\ufeff"])
def test_invisible_labels_are_empty(label):
    from ros2_owl.core.prompt import is_blank

    with pytest.raises(PromptError, match="empty label"):
        parse_prompt(f"[a cat, {label}]")
    assert is_blank(label) and not is_blank("a\u200bcat")


def test_error_window_shows_about_60_characters_each_side():
    from ros2_owl.core.prompt import caret_message

    prompt = "[a cat, " + "y" * 90 + " ] x" + "z" * 1_000_000
    with pytest.raises(PromptError) as info:
        parse_prompt(prompt[:990])  # text after ']' fails at column 101
    assert info.value.column == 101
    text = caret_message(prompt[:990], info.value)
    message, shown, caret = text.split("\n")
    assert shown.startswith("  ...") and shown.endswith("...")
    assert len(shown) <= 2 + 3 + 121 + 3
    assert shown[caret.index("^")] == "x"  # the caret sits under the column
    huge = PromptError("too long", 1000)
    assert len(caret_message(prompt, huge)) < 220
    assert caret_message("[a\tb\nc", PromptError("bad", 4)).split("\n")[2] == "      ^"


def test_mask_marker_marks_detect_labels_and_round_trips():
    tree = parse_prompt("[a mug@0.3 {mask} [a handle{mask}], a person]")
    assert tree.mask_labels() == (1, 2)
    assert [lb.text for lb in tree.labels] == ["image", "a mug", "a handle", "a person"]
    assert tree.labels[1].threshold == 0.3 and not tree.labels[3].mask
    assert tree.to_prompt() == "[a mug@0.3 {mask} [a handle {mask}], a person]"
    assert parse_prompt(tree.to_prompt()) == tree
    assert tree.to_dict()["masks"] == [1, 2]
    assert Tree.from_dict(tree.to_dict()) == tree
    assert "masks" not in parse_prompt("[a mug]").to_dict()


@pytest.mark.parametrize(
    "prompt, column, fragment",
    [
        ("[a mug {masks}]", 7, "unknown marker '{masks}'"),
        ("[a {mask} mug]", 10, "text 'mug' after {mask}"),
        ("[a mug {mask]", 7, "unclosed '{'"),
        ("[a mug} ]", 6, "unmatched '}'"),
        ("[a person (sitting {mask}, standing)]", 19, "{mask} on a classify label"),
        ("[a mug {mask}{mask}]", 13, "text '{mask}' after {mask}"),
    ],
)
def test_mask_marker_is_strict(prompt, column, fragment):
    with pytest.raises(PromptError) as info:
        parse_prompt(prompt)
    assert fragment in str(info.value) and info.value.column == column


def test_masks_from_dict_are_checked():
    base = {
        "nodes": [{"op": "classify", "input": 0, "outputs": [1, 2]}],
        "labels": ["image", "a", "b"],
    }
    with pytest.raises(ValueError, match="classify labels take no"):
        Tree.from_dict({**base, "masks": [1]})
    with pytest.raises(ValueError, match="'masks' must be a list"):
        Tree.from_dict({**base, "masks": 1})
    with pytest.raises(ValueError, match="reserved character '\\{'"):
        Tree.from_dict(
            {
                "nodes": [{"op": "detect", "input": 0, "outputs": [1]}],
                "labels": ["image", "a {mask}"],
            }
        )
