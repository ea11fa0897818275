"""serve's prompt owner: validation before the swap, per-label thresholds, the page's view."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_models import synthetic_scene

from ros2_owl.core.predictor import PredictorConfig, TreePredictor
from ros2_owl.web.control import PredictorPromptControl


@pytest.fixture(scope="module")
def predictor(tiny_owlvit_dir, tiny_clip_dir):
    return TreePredictor.from_pretrained(str(tiny_owlvit_dir), str(tiny_clip_dir))


def _labels(predictor, control) -> set[str]:
    result = predictor.predict(synthetic_scene(), control.state, control.config)
    return {d.label for d in result.detections}


def test_valid_prompt_swaps_and_bad_prompt_keeps_the_old_state(predictor):
    control = PredictorPromptControl(predictor, "[a cat, a dog]", PredictorConfig(threshold=0.0))
    old = control.state
    outcome = control.set_prompt("[a cat, a dog)")
    assert not outcome.ok and outcome.column == 13 and "unexpected ')'" in outcome.message
    assert control.state is old and outcome.view.prompt == "[a cat, a dog]"
    assert outcome.prompt == "[a cat, a dog)"
    outcome = control.set_prompt("[a bird (red, blue)]")
    assert outcome.ok and control.state is not old
    assert [x.label for x in outcome.view.labels] == ["a bird"]
    assert _labels(predictor, control) == {"a bird"}


def test_unknown_reference_query_is_refused_without_column(predictor):
    control = PredictorPromptControl(predictor, "[a cat]", PredictorConfig())
    outcome = control.set_prompt("[$nothing_registered]")
    assert not outcome.ok and outcome.column is None and "nothing_registered" in outcome.message
    assert control.state.prompt == "[a cat]"


def test_label_threshold_changes_the_next_frames(predictor):
    control = PredictorPromptControl(predictor, "[a cat, a dog]", PredictorConfig(threshold=0.0))
    assert _labels(predictor, control) == {"a cat", "a dog"}
    outcome = control.set_label_threshold("a dog", 1.0)
    assert outcome.ok
    view = {x.label: x for x in outcome.view.labels}
    assert view["a dog"].threshold == 1.0 and view["a cat"].threshold == 0.0
    assert _labels(predictor, control) == {"a cat"}
    # the slider value survives a prompt change that keeps the label
    control.set_prompt("[a dog, a bird]")
    assert {x.label: x.threshold for x in control.view().labels} == {"a dog": 1.0, "a bird": 0.0}


def test_prompt_threshold_is_fixed_and_wins(predictor):
    control = PredictorPromptControl(predictor, "[a cat@0.25, a dog]", PredictorConfig(0.1))
    control.set_label_threshold("a cat", 0.9)
    view = {x.label: x for x in control.view().labels}
    assert view["a cat"].fixed and view["a cat"].threshold == 0.25
    assert not view["a dog"].fixed and view["a dog"].threshold == 0.1
    assert view["a dog"].threshold == pytest.approx(control.view().default_threshold)


def test_view_lists_each_detect_label_once_with_warnings(predictor):
    control = PredictorPromptControl(
        predictor, "[a face, a hand [a face]] (black)", PredictorConfig()
    )
    view = control.view()
    assert [x.label for x in view.labels] == ["a face", "a hand"]
    assert view.warnings and "column" in view.warnings[0]
    assert view.to_dict()["labels"][0] == {"label": "a face", "threshold": 0.1, "fixed": False}
    assert np.isfinite(view.default_threshold)


def test_the_sessions_mask_rule_refuses_a_mask_prompt_without_sam(predictor):
    from ros2_owl.core.settings import Settings
    from ros2_owl.runtime.session import FrameSession

    session = FrameSession(predictor, Settings())
    control = PredictorPromptControl(
        predictor, "[a cat]", PredictorConfig(), check=session.check_masks
    )
    outcome = control.set_prompt("[a cat {mask}]")
    assert not outcome.ok and "no SAM model is loaded" in outcome.message
    assert control.state.prompt == "[a cat]"
