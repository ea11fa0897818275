"""models (shared loading): every load failure is a ModelLoadError naming what was tried."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ros2_owl.models import ModelLoadError
from ros2_owl.models.clip import ClipModel
from ros2_owl.models.owl import OwlModel


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        OwlModel.load(str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(info.value)
    assert issubclass(ModelLoadError, RuntimeError)


def test_model_path_that_is_a_file_says_so(tmp_path, tiny_owlvit_dir):
    weights = next(p for p in Path(tiny_owlvit_dir).iterdir() if p.suffix == ".safetensors")
    with pytest.raises(ModelLoadError, match="is a file, not a model directory") as info:
        OwlModel.load(str(weights))
    assert "config.json" in str(info.value) and "does not exist" not in str(info.value)


def test_directory_without_config_lists_its_files(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"missing config.json.*weights.bin"):
        OwlModel.load(str(tmp_path))


def test_directory_without_weights_is_a_clear_error(tmp_path, tiny_owlvit_dir):
    shutil.copy(tiny_owlvit_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelLoadError, match=f"local directory '{tmp_path}'"):
        OwlModel.load(str(tmp_path))


def test_wrong_model_type_is_named(tiny_clip_dir, tiny_owlvit_dir):
    with pytest.raises(ModelLoadError, match="'clip' model, not OWL-ViT or OWLv2"):
        OwlModel.load(str(tiny_clip_dir))
    with pytest.raises(ModelLoadError, match="not CLIP"):
        ClipModel.load(str(tiny_owlvit_dir))


def test_corrupt_config_is_wrapped(tmp_path, tiny_owlvit_dir):
    for item in tiny_owlvit_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": 42})[:-3])
    with pytest.raises(ModelLoadError, match="cannot load OWL detection model"):
        OwlModel.load(str(tmp_path))
