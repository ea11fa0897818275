"""owl_node's services under hostile input, over real DDS: a hypothesis fuzz of SetPrompt and
RegisterQuery against one node process (tiny OWLv2 + CLIP), the whole-image reference rule,
SetPrompt's warnings, and the callback guard (an in-process node with an injected fault)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fixtures_ros import RosHarness, RosProcess, _import_rclpy, child_env
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from peers.owl_support import image_msg, owl_node_args, scene, wait_for_service_or_exit

NS = "/owl_services"
NODE = f"{NS}/owl_node"
PROMPT = "[a cat [an ear], a dog] (indoor, outdoor)"
FUZZ_EXAMPLES = 250  # each example makes one SetPrompt and one RegisterQuery call
FUZZ_SECONDS = 240.0  # bound on the whole fuzz run, however slow the machine


class Services:
    """Persistent clients (one discovery, not one per call) for the node's two services."""

    def __init__(self, harness: RosHarness, proc: RosProcess, queries_file):
        from ros2_owl.srv import RegisterQuery, SetPrompt

        self.ros, self.proc, self.queries_file = harness, proc, queries_file
        self.set_prompt_client = harness.node.create_client(SetPrompt, f"{NODE}/set_prompt")
        self.register_client = harness.node.create_client(RegisterQuery, f"{NODE}/register_query")
        for client in (self.set_prompt_client, self.register_client):
            assert client.wait_for_service(timeout_sec=30), client.srv_name

    def call(self, client, request, timeout: float = 30.0):
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            alive = "alive" if self.proc.alive() else f"dead:\n{self.proc.output()[-3000:]}"
            raise AssertionError(f"{client.srv_name} did not answer in {timeout:.0f}s ({alive})")
        return future.result()

    def set_prompt(self, prompt: str, thresholds: dict[str, float] | None = None):
        from ros2_owl.msg import LabelThreshold
        from ros2_owl.srv import SetPrompt

        req = SetPrompt.Request(prompt=prompt)
        req.thresholds = [
            LabelThreshold(label=k, threshold=v) for k, v in (thresholds or {}).items()
        ]
        return self.call(self.set_prompt_client, req)

    def register(self, name: str, image, bbox=(0.0, 0.0, 0.0, 0.0)):
        from ros2_owl.srv import RegisterQuery

        req = RegisterQuery.Request(name=name, image=image)
        req.bbox.center.position.x, req.bbox.center.position.y = bbox[0], bbox[1]
        req.bbox.size_x, req.bbox.size_y = bbox[2], bbox[3]
        return self.call(self.register_client, req)


@pytest.fixture(scope="module")
def owl(rclpy_context, tiny_owlv2_dir, tiny_clip_dir, tmp_path_factory):
    rclpy, context = rclpy_context
    _import_rclpy()
    folder = tmp_path_factory.mktemp("owl_services")
    queries_file = folder / "queries.json"
    args = owl_node_args(
        NS,
        model=tiny_owlv2_dir,
        clip_model=tiny_clip_dir,
        prompt=f'"{PROMPT}"',
        threshold=0.0,
        max_detections=4,
        max_regions=2,
        image_topics=["cam/image"],
        no_frame_warning=0.0,
        diagnostics_period=0.5,
        queries_file=str(queries_file),
    )
    proc = RosProcess(args, folder / "owl_node.log", child_env())
    harness = RosHarness(rclpy, context, "probe_test_node_services")
    try:
        wait_for_service_or_exit(harness.node, proc, f"{NODE}/register_query")
        yield Services(harness, proc, queries_file)
    finally:
        harness.close()
        code = proc.stop()
        assert code == 0, f"owl_node exited {code} on SIGINT:\n{proc.output()[-3000:]}"


def test_whole_image_reference_query_uses_the_models_no_box_rule(owl, tiny_owlv2_dir):
    """bbox size 0 = "no box": OWLv2 takes its highest-objectness patch (not an IoU rule)."""
    from ros2_owl.core.predictor import TreePredictor

    rgb = scene(96, 64, seed=11)
    resp = owl.register("whole", image_msg(rgb, 0))
    assert resp.success, resp.message
    saved = {q["name"]: q for q in json.loads(owl.queries_file.read_text())["queries"]}
    local = TreePredictor.from_pretrained(str(tiny_owlv2_dir), None)
    expected = local.register_query("whole", rgb, None)
    assert saved["whole"]["box"] is None
    assert saved["whole"]["patch_index"] == expected.patch_index
    flat = owl.register("flat", image_msg(rgb, 0), (10.0, 10.0, 5.0, 0.0))  # zero height
    assert not flat.success and "not inside" in flat.message


def test_set_prompt_warns_about_thresholds_of_labels_not_in_the_prompt(owl):
    resp = owl.set_prompt("[a cat, a dog]", {"a cat": 0.2, "a dgo": 0.3})
    assert resp.success, resp.message
    assert "warning" in resp.message and "'a dgo'" in resp.message
    assert "'a cat'" not in resp.message
    assert owl.set_prompt(PROMPT).success


@pytest.mark.parametrize("label", ["\u200b", "\u2060\u200d"])
def test_invisible_labels_and_threshold_keys_are_refused(owl, label):
    resp = owl.set_prompt(f"[a cat, {label}]")
    assert not resp.success and "empty label" in resp.message
    resp = owl.set_prompt("[a cat]", {label: 0.5})
    assert not resp.success and "thresholds" in resp.message
    assert owl.set_prompt(PROMPT).success


def test_huge_prompt_is_refused_with_a_short_message(owl):
    resp = owl.set_prompt("[a cat, " + "x" * 1_000_000 + "]")
    assert not resp.success and "too long" in resp.message and "^" in resp.message
    assert len(resp.message) < 400, len(resp.message)


# ----------------------------------------------------------------------------- fuzzing

ENCODINGS = ["rgb8", "bgr8", "mono8", "rgba8", "uyvy", "yuyv", "nv12", "bayer_rggb8", "32FC1", ""]
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=60)
PLAIN = st.sampled_from(["a cat", "dog", "an ear", "a red car", "tree", "sky", "x@0.3"])
WORDS = st.sampled_from(["a cat", "dog", "an ear", "$whole", "$mug", "$nope", "x@0.3", "\u200b"])
PROMPT_TOKENS = st.one_of(WORDS, st.sampled_from(["[", "]", "(", ")", ",", " ", "@x", "@", "$"]))


@st.composite
def valid_prompts(draw, depth: int = 0):
    """Well-formed tree prompts (labels may still be refused, e.g. an unknown $query)."""
    groups = []
    for _ in range(draw(st.integers(1, 2))):
        labels = draw(st.lists(st.one_of(PLAIN, PLAIN, WORDS), min_size=1, max_size=3, unique=True))
        if depth < 2 and draw(st.booleans()):
            labels[0] += " " + draw(valid_prompts(depth + 1))
        opener, closer = draw(st.sampled_from(["[]", "[]", "()"]))
        groups.append(opener + ", ".join(labels) + closer)
    return " ".join(groups)


PROMPTS = st.one_of(TEXT, st.lists(PROMPT_TOKENS, max_size=16).map("".join), valid_prompts())
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-5.0, 100.0),
    st.sampled_from([0.0, 1.0, 0.5]),
)
VALID_NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
NAMES = st.one_of(VALID_NAMES, VALID_NAMES, TEXT, st.sampled_from(["$mug", " ", "a b"]))


BOXES = st.one_of(
    st.tuples(FLOATS, FLOATS, FLOATS, FLOATS),  # centre x, y, size x, y: anything
    st.tuples(st.floats(0, 64), st.floats(0, 48), st.floats(0, 64), st.floats(0, 48)),
)


@st.composite
def registrations(draw):
    """(name, image message, bbox): about half well-formed, the rest hostile in every field."""
    from sensor_msgs.msg import Image

    name = draw(NAMES)
    if draw(st.booleans()):  # a valid image, a box inside it or "whole image" or anything
        width, height = draw(st.integers(4, 64)), draw(st.integers(4, 48))
        rgb = scene(width, height, draw(st.integers(0, 9)))
        image = image_msg(rgb, 0, encoding=draw(st.sampled_from(["rgb8", "bgr8"])))
        x0, y0 = draw(st.floats(0, width - 1)), draw(st.floats(0, height - 1))
        w, h = draw(st.floats(0.01, width - x0)), draw(st.floats(0.01, height - y0))
        inside = (x0 + w / 2, y0 + h / 2, w, h)
        bbox = draw(st.one_of(st.just(inside), st.just((0.0, 0.0, 0.0, 0.0)), BOXES))
        return name, image, bbox
    width = draw(st.one_of(st.integers(0, 48), st.sampled_from([100_000, 2**31 - 1])))
    height = draw(st.one_of(st.integers(0, 48), st.sampled_from([100_000])))
    encoding = draw(st.sampled_from(ENCODINGS))
    bytes_pp = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "uyvy": 2, "yuyv": 2}.get(encoding, 1)
    step = draw(st.one_of(st.just(width * bytes_pp), st.integers(0, 200)))
    rows = height * 3 // 2 if encoding == "nv12" else height
    size = draw(st.one_of(st.just(step * rows), st.integers(0, 400)))
    size = min(size, 200_000)
    image = Image(width=width, height=height, step=min(step, 2**32 - 1), encoding=encoding)
    image.data = draw(st.binary(min_size=size, max_size=size)) if size < 64 else bytes(size)
    return name, image, draw(BOXES)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,  # the same examples every run: no flaky counts
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    prompt=PROMPTS,
    thresholds=st.one_of(st.just({}), st.dictionaries(st.one_of(TEXT, WORDS), FLOATS, max_size=3)),
    registration=registrations(),
)
@example(  # a 1x1 box in a corner that no predicted box overlaps (once an IndexError)
    prompt="[a cat]", thresholds={}, registration=("corner", None, (0.5, 0.5, 1.0, 1.0))
)
def test_fuzzed_requests_always_get_an_answer_and_the_node_lives(
    owl, fuzz_stats, prompt, thresholds, registration
):
    name, image, bbox = registration
    if image is None:
        image = image_msg(scene(64, 48, seed=3), 0)
    if time.monotonic() - fuzz_stats["start"] > FUZZ_SECONDS:
        return  # bounded time on a slow machine; the count below says how many ran
    resp = owl.set_prompt(prompt, thresholds)
    assert isinstance(resp.success, bool) and resp.message
    assert len(resp.message) < 2000
    reply = owl.register(name, image, bbox)
    assert reply.success or reply.message.startswith(("query ", "internal error: ")), reply.message
    assert "\n" not in reply.message and len(reply.message) < 2000
    fuzz_stats["examples"] += 1
    fuzz_stats["prompts accepted"] += int(resp.success)
    fuzz_stats["queries registered"] += int(reply.success)


@pytest.fixture(scope="module")
def fuzz_stats(owl):
    """Counts fuzz examples; afterwards the node must still run and answer."""
    stats = {"start": time.monotonic(), "examples": 0, "prompts accepted": 0}
    stats["queries registered"] = 0
    yield stats
    elapsed = time.monotonic() - stats["start"]
    counts = ", ".join(f"{v} {k}" for k, v in stats.items() if k != "start")
    print(f"\nfuzz of set_prompt + register_query: {counts} in {elapsed:.1f} s")


def test_node_still_answers_after_the_fuzz(owl, fuzz_stats):
    assert fuzz_stats["examples"] >= 100, fuzz_stats  # the fuzz ran (bounded by time)
    assert fuzz_stats["prompts accepted"] >= 10 and fuzz_stats["queries registered"] >= 10
    assert owl.proc.alive(), owl.proc.output()[-3000:]
    assert owl.set_prompt(PROMPT).success
    good = owl.register("mug", image_msg(scene(64, 48, seed=3), 0), (20.0, 20.0, 16.0, 12.0))
    assert good.success, good.message
    assert "Traceback" not in owl.proc.output()


# ----------------------------------------------------------------------------- the guard


def test_a_failing_callback_answers_false_and_the_node_carries_on(
    rclpy_context, ros, tiny_owlvit_dir, capfd
):
    """Injected faults (a bug stand-in) in a service and in the parameter callback: each
    answers with a one-line reason, is logged once, counted, and the node keeps serving."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from ros2_owl.srv import RegisterQuery, SetPrompt

    from ros2_owl.core.predictor import TreePredictor
    from ros2_owl.ros.node import OwlNode

    rclpy, context = rclpy_context
    predictor = TreePredictor.from_pretrained(str(tiny_owlvit_dir), None)
    node = OwlNode(
        predictor=predictor,
        context=context,
        namespace="/guard_test",
        parameter_overrides=[
            Parameter("prompt", value="[a cat]"),  # no classify group: this node has no CLIP
            Parameter("no_frame_warning", value=0.0),
            Parameter("diagnostics_period", value=0.2),
        ],
    )
    diagnostics = ros.collector(DiagnosticArray, "/diagnostics")
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    service = "/guard_test/owl_node/register_query"
    try:
        register = predictor.register_query

        def broken(*args, **kwargs):
            raise RuntimeError("injected\nfault")

        predictor.register_query = broken
        req = RegisterQuery.Request(name="mug", image=image_msg(scene(32, 24), 0))
        for _ in range(2):
            resp = ros.call(RegisterQuery, service, req)
            assert not resp.success
            assert resp.message == "internal error: RuntimeError: injected fault"
        predictor.register_query = register
        assert ros.call(RegisterQuery, service, req).success
        prepare = predictor.prepare
        predictor.prepare = broken
        result = node.set_parameters([Parameter("prompt", value="[a dog]")])[0]
        assert not result.successful and "RuntimeError: injected fault" in result.reason
        predictor.prepare = prepare
        req = SetPrompt.Request(prompt="[a dog]")
        ok = ros.call(SetPrompt, "/guard_test/owl_node/set_prompt", req)
        assert ok.success, ok.message

        def counted(msg):
            for status in msg.status:
                if status.name == "/guard_test/owl_node: model":
                    return {kv.key: kv.value for kv in status.values}["callback_errors"] == "3"
            return False

        status = diagnostics.wait_for(counted, timeout=15).status
        model = next(s for s in status if s.name == "/guard_test/owl_node: model")
        assert model.level == model.WARN and "parameter change: RuntimeError" in model.message
    finally:
        executor.shutdown()
        node.destroy_node()
        spinner.join(timeout=10)
    log = capfd.readouterr().err
    assert log.count("register_query failed: RuntimeError: injected fault") == 1, log
    assert log.count("parameter change failed: RuntimeError: injected fault") == 1, log
    assert log.count("Traceback") == 2


def test_guard_reason_is_one_bounded_line():
    from ros2_owl.ros.guard import one_line

    assert one_line(ValueError("a\n  b")) == "ValueError: a b"
    assert len(one_line(ValueError("x" * 10_000))) == 300
    assert one_line(KeyError()) == "KeyError"


def test_a_mask_prompt_without_sam_is_refused_and_the_prompt_kept(owl):
    resp = owl.set_prompt("[a cat {mask}]")
    assert not resp.success and "no SAM model is loaded: set sam_model" in resp.message
    bad = owl.set_prompt("[a cat {masks}]")
    assert not bad.success and "unknown marker '{masks}'" in bad.message and "^" in bad.message
    assert owl.set_prompt(PROMPT).success
