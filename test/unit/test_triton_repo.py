"""build-engine --triton-repo: a Triton model repository that Triton's own schema accepts and
whose served graphs equal the verified exports on the same pixels."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from ros2_owl.backends.cache import ArtefactCache
from ros2_owl.backends.triton_repo import (
    BatchingOptions,
    add_wire_stage,
    auto_wire_dtype,
    wire_sample,
)
from ros2_owl.cli.build_engine import main


def parse_config(folder) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse((folder / "config.pbtxt").read_text(), config)
    return config


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_owlvit_dir, tiny_clip_dir):
    root = tmp_path_factory.mktemp("triton")
    argv = [
        "--model", str(tiny_owlvit_dir), "--clip-model", str(tiny_clip_dir),
        "--cache-dir", str(root / "cache"), "--max-batch", "4",
        "--triton-repo", str(root / "models"), "--triton-preferred-batch", "2", "4",
        "--triton-max-queue-delay-us", "5000",
    ]  # fmt: skip
    assert main(argv) == 0
    return root


def test_config_parses_with_tritons_schema(repo):
    owl = parse_config(repo / "models" / "owl_image_encoder")
    assert owl.name == "owl_image_encoder" and owl.platform == "onnxruntime_onnx"
    assert owl.max_batch_size == 4
    assert list(owl.dynamic_batching.preferred_batch_size) == [2, 4]
    assert owl.dynamic_batching.max_queue_delay_microseconds == 5000
    (image,) = owl.input
    assert image.name == "pixel_values" and image.data_type == model_config_pb2.TYPE_UINT8
    assert list(image.dims) == [3, 96, 96]
    outputs = {o.name: list(o.dims) for o in owl.output}
    # tiny OWL-ViT: 96 px / patch 16 = 36 patches
    assert list(outputs) == ["class_embeds", "logit_shift", "logit_scale", "pred_boxes"]
    assert outputs["pred_boxes"] == [36, 4]
    assert all(o.data_type == model_config_pb2.TYPE_FP32 for o in owl.output)
    assert owl.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert owl.parameters["ros2_owl.wire_dtype"].string_value == "uint8"
    clip = parse_config(repo / "models" / "clip_image_encoder")
    assert clip.input[0].data_type == model_config_pb2.TYPE_FP16  # region crops pad with the mean
    assert [o.name for o in clip.output] == ["image_embeds"]


def test_served_graph_matches_config_and_cached_export(repo):
    folder = repo / "models" / "owl_image_encoder"
    config = parse_config(folder)
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"))
    (inp,) = session.get_inputs()
    assert inp.name == config.input[0].name and inp.type == "tensor(uint8)"
    outs = {o.name: o.shape[1:] for o in session.get_outputs()}
    assert {o.name: list(o.dims) for o in config.output} == {
        n: list(outs[n]) for n in (o.name for o in config.output)
    }
    # the cached export the repository was made from is still there and verified
    assert len(list(ArtefactCache(repo / "cache").entries("onnx"))) == 2


@pytest.mark.parametrize("wire", ["uint8", "float16", "float32"])
def test_wire_stage_reproduces_normalisation(tmp_path, repo, wire):
    """A served graph on wire pixels equals the export on the normalised pixels they stand for."""
    import onnx

    (cached,) = [
        e.path for e in ArtefactCache(repo / "cache").entries("onnx") if "Owl" in e.path.name
    ]
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    served = tmp_path / "served.onnx"
    onnx.save(add_wire_stage(onnx.load(str(cached)), wire, mean, std), str(served))
    data, pixels = wire_sample(wire, 2, 96, mean, std)
    a = ort.InferenceSession(str(served)).run(None, {"pixel_values": data})
    b = ort.InferenceSession(str(cached)).run(None, {"pixel_values": pixels})
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)


def test_auto_wire_dtype_is_uint8_only_where_levels_are_whole():
    assert auto_wire_dtype("stretch") == "uint8"
    assert auto_wire_dtype("pad") == "float16"
    assert auto_wire_dtype("pad_center") == "float16"


def test_bad_batching_options_are_refused():
    with pytest.raises(ValueError, match="outside 1..4"):
        BatchingOptions(max_batch_size=4, preferred_batch_sizes=(8,))
    with pytest.raises(ValueError, match="KIND_GPU or KIND_CPU"):
        BatchingOptions(instance_kind="KIND_TPU")


def test_bad_preferred_batch_is_one_error_line(tmp_path, capsys, tiny_owlvit_dir):
    code = main([
        "--model", str(tiny_owlvit_dir), "--no-clip", "--cache-dir", str(tmp_path),
        "--max-batch", "2", "--triton-repo", str(tmp_path / "m"), "--triton-preferred-batch", "3",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1] == "error: preferred batch sizes [3] are outside 1..2"
    assert not (tmp_path / "m" / "owl_image_encoder").exists()
