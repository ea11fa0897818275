"""Background backend upgrade without ROS: torch serves at once, the measurement runs at low
priority, the winner is built at normal priority and adopted as one set between frames."""

from __future__ import annotations

import os
import threading

import pytest
import torch
from fixtures_models import synthetic_scene

from ros2_owl.backends import auto
from ros2_owl.backends.upgrade import (
    GATE_ENV,
    MEASURE_THREAD,
    UPGRADE_NICE,
    UPGRADE_THREAD,
    thread_nice,
)
from ros2_owl.core.encoder_upgrade import free_unused
from ros2_owl.core.predictor import PredictorConfig, TreePredictor

PROMPT = "[a cat [an ear], a dog] (indoor, outdoor)"
CONFIG = PredictorConfig(threshold=0.0, nms_iou=0.0, max_regions=2, max_detections=10_000)


@pytest.fixture
def ort_only(monkeypatch):
    """auto measures ONNX Runtime fp32 alone, so its winner is a real swap away from torch."""
    monkeypatch.setattr(auto, "CPU_CANDIDATES", [auto.Candidate("onnxruntime", "float32")])


def _load(owl_dir, clip_dir, cache_dir, upgrade="background", backend="auto"):
    return TreePredictor.from_pretrained(
        str(owl_dir),
        clip_dir and str(clip_dir),
        config=CONFIG,
        backend=backend,
        cache_dir=str(cache_dir),
        upgrade=upgrade,
    )


def _all_nices() -> dict[int, int]:
    return {int(t): thread_nice(int(t)) for t in os.listdir("/proc/self/task")}


def _cpu_ticks() -> dict[int, int]:
    """utime + stime of every thread of this process (fields 14 and 15 of its stat)."""
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = open(f"/proc/self/task/{tid}/stat").read()  # noqa: SIM115
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[int(tid)] = int(fields[11]) + int(fields[12])
    return ticks


def _agree(before, after, score=1e-4, box=0.01):
    """Two results of one frame agree within ONNX Runtime fp32's stated drift against torch."""
    assert len(before.detections) == len(after.detections) > 0
    for a, b in zip(before.detections, after.detections, strict=True):
        assert a.label == b.label and abs(a.score - b.score) <= score
        assert max(abs(x - y) for x, y in zip(a.box, b.box, strict=True)) <= box


def test_serves_torch_then_swaps_to_the_measured_winner_at_normal_priority(
    tmp_path, tiny_owlvit_dir, tiny_clip_dir, ort_only
):
    base = thread_nice()
    predictor = _load(tiny_owlvit_dir, tiny_clip_dir, tmp_path)
    assert predictor.owl_encoder.name == predictor.clip_encoder.name == "torch"
    assert predictor.owl_encoder.selection.source == "interim"
    image = synthetic_scene()
    state = predictor.prepare(PROMPT)
    before = predictor.predict(image, state)
    seen: list[tuple[str, int, int, str]] = []  # thread, its nice, lowest nice of all, message
    upgrade = predictor.upgrade
    upgrade.log = lambda m: seen.append(
        (threading.current_thread().name, thread_nice(), max(_all_nices().values()), m)
    )
    upgrade.start()
    assert upgrade.join(300), upgrade.status.describe()
    assert upgrade.status.state == "swapped", upgrade.status.describe()
    measuring = [s for s in seen if s[0] == MEASURE_THREAD]
    building = [s for s in seen if s[0] == UPGRADE_THREAD]
    assert any("exporting" in m for *_, m in measuring), seen
    assert {n for _, n, _, _ in measuring} == {min(19, base + UPGRADE_NICE)}
    assert {n for _, n, _, _ in building} == {base}
    assert any("cached ONNX" in m for *_, m in building), building  # built from the cache
    # the worker threads made while measuring ran low too (inherited) ...
    assert max(low for _, _, low, m in measuring if "ms per image" in m) > base
    assert predictor.owl_encoder.name == predictor.clip_encoder.name == "onnxruntime"
    # ... but every thread that works on frames after the swap runs at the caller's priority
    ticks = _cpu_ticks()
    for _ in range(20):
        after = predictor.predict(image, state)
    busy = {t for t, n in _cpu_ticks().items() if n > ticks.get(t, 0)}
    nices = _all_nices()
    assert busy and {nices[t] for t in busy if t in nices} == {base}, (busy, nices)
    assert getattr(predictor.owl.encoder, "freed", False)
    assert getattr(predictor.clip.encoder, "freed", False)
    assert predictor.owl.model.owlvit.vision_model is None
    assert predictor.owl.model.owlvit.text_model is not None
    _agree(before, after)
    assert len(predictor.prepare("[a bird]").tree.labels) == 2  # text towers still encode
    adaptive = PredictorConfig(region_resolution="adaptive")
    assert "freed after the backend upgrade" in predictor.config_problem(adaptive)
    again = _load(tiny_owlvit_dir, tiny_clip_dir, tmp_path)  # the decision is cached now
    assert again.upgrade is None and again.owl_encoder.name == "onnxruntime"
    assert free_unused(again) == ["owl", "clip"] and again.owl.encoder.freed
    _agree(before, again.predict(image, again.prepare(PROMPT)))


def test_a_frame_keeps_its_encoder_set_when_a_swap_lands_mid_frame(
    tmp_path, tiny_owlvit_dir, tiny_clip_dir
):
    """A tree prompt calls the encoders several times per frame: a swap during it takes effect
    from the next frame, never inside this one."""
    predictor = _load(tiny_owlvit_dir, tiny_clip_dir, tmp_path, backend="torch")
    calls: list[str] = []

    class Recording:
        def __init__(self, inner, tag, on_call=None):
            self.inner, self.tag, self.on_call = inner, tag, on_call
            self.name, self.output_names, self.max_batch = inner.name, inner.output_names, 0

        def __call__(self, pixels):
            calls.append(self.tag)
            if self.on_call is not None:
                self.on_call()
            return self.inner(pixels)

    owl, clip = predictor.owl_encoder, predictor.clip_encoder
    new = {"owl": Recording(owl, "new owl"), "clip": Recording(clip, "new clip")}
    swap = lambda: predictor.adopt_encoders(new) if predictor.owl_encoder is not new["owl"] else 0  # noqa: E731
    predictor.owl_encoder = Recording(owl, "old owl", swap)
    predictor.clip_encoder = Recording(clip, "old clip")
    state = predictor.prepare(PROMPT)
    result = predictor.predict(synthetic_scene(), state)
    assert any(d.parent_id for d in result.detections)  # a nested level ran
    assert calls.count("old owl") >= 2 and "old clip" in calls
    assert not [c for c in calls if c.startswith("new")], calls
    calls.clear()
    predictor.predict(synthetic_scene(), state)
    assert calls and all(c.startswith("new") for c in calls), calls


def test_cancel_releases_the_gate_and_adopts_nothing(
    tmp_path, tiny_owlvit_dir, tiny_clip_dir, monkeypatch
):
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    monkeypatch.setenv(GATE_ENV, str(gate))
    predictor = _load(tiny_owlvit_dir, tiny_clip_dir, tmp_path)
    upgrade = predictor.upgrade
    upgrade.start()
    upgrade.cancel()
    assert upgrade.join(60) and upgrade.status.state == "cancelled"
    assert predictor.owl_encoder.name == "torch" and not upgrade.jobs
    assert not list(tmp_path.glob("auto/*.choice"))  # nothing was measured


def test_upgrade_wait_measures_before_serving_and_other_backends_never_upgrade(
    tiny_owlvit_dir, tmp_path, ort_only
):
    waited = _load(tiny_owlvit_dir, None, tmp_path, upgrade="wait")
    assert waited.upgrade is None and waited.owl_encoder.name == "onnxruntime"
    assert waited.owl_encoder.selection.source == "measured"
    named = _load(tiny_owlvit_dir, None, tmp_path / "other", backend="torch")
    assert named.upgrade is None and named.owl_encoder.selection.source == "user"
    with pytest.raises(ValueError, match="upgrade must be one of background, wait"):
        _load(tiny_owlvit_dir, None, tmp_path, upgrade="later")


def test_freed_vision_weights_leave_the_mapped_checkpoint_and_text_is_unchanged(tiny_owlvit_dir):
    """transformers maps a safetensors checkpoint as one file: freeing the vision tower gives
    its pages back (madvise) while the text tower, in the same mapping, encodes as before."""
    from ros2_owl.models.owl import OwlModel
    from ros2_owl.models.weight_pages import drop_weight_pages

    owl = OwlModel.load(str(tiny_owlvit_dir))
    before = owl._run_text(["a cat", "a dog"])
    vision = list(owl.model.owlvit.vision_model.parameters())
    assert drop_weight_pages(vision) > 0
    assert drop_weight_pages([torch.zeros(1 << 20)]) == 0  # heap memory is never touched
    owl.free_image_encoder()
    assert torch.equal(owl._run_text(["a cat", "a dog"]), before)
