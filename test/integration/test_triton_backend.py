"""backend 'triton' against a real Triton server (PyTriton's tritonserver, gRPC on localhost).

The server serves the repository writer's models through tools/triton_server.py (ONNX Runtime
inside a PyTriton model). Detections must equal the local onnxruntime backend within
test_predictor_backends's tolerances (scores 1e-4, boxes 1e-2 px).
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
import torch
from fixtures_models import synthetic_scene
from fixtures_triton import TOKEN_HEADER, free_port, start_server
from PIL import Image
from test_predictor_backends import CONFIG, TREE, assert_same_result

from ros2_owl.backends.triton_backend import (
    TritonImageEncoder,
    TritonModelMismatch,
    TritonOptions,
    TritonTarget,
    TritonUnavailable,
)
from ros2_owl.cli import app as cli
from ros2_owl.core.predictor import PredictorConfig, TreePredictor
from ros2_owl.models.owl import OwlModel


@pytest.fixture(scope="module")
def server(triton_python, triton_repo, tmp_path_factory):
    srv = start_server(triton_python, triton_repo, tmp_path_factory.mktemp("log") / "triton.log")
    yield srv
    srv.stop()


def remote(server, **kw) -> TritonOptions:
    return TritonOptions(url=server.url, timeout_s=30.0, **kw)


@pytest.fixture(scope="module", params=["owlvit", "owlv2"])
def predictors(request, server, model_cache_dir, tiny_owlvit_dir, tiny_owlv2_dir, tiny_clip_dir):
    """(onnxruntime predictor, triton predictor) on the same tiny models."""
    owl = tiny_owlvit_dir if request.param == "owlvit" else tiny_owlv2_dir
    name = "owl_image_encoder" if request.param == "owlvit" else "owlv2_image_encoder"
    kw = dict(clip_model=str(tiny_clip_dir), config=CONFIG,
              cache_dir=str(model_cache_dir / "artefacts"))  # fmt: skip
    local = TreePredictor.from_pretrained(str(owl), backend="onnxruntime", **kw)
    served = TreePredictor.from_pretrained(
        str(owl), backend="triton", triton=remote(server, owl_model=name), **kw
    )
    return local, served


def test_tree_prompt_same_detections_as_onnxruntime(predictors):
    local, served = predictors
    assert isinstance(served.owl_encoder, TritonImageEncoder)
    assert isinstance(served.clip_encoder, TritonImageEncoder)
    a = local.predict(synthetic_scene(), local.prepare(TREE))
    b = served.predict(synthetic_scene(), served.prepare(TREE))
    assert any(d.parent_id for d in a.detections)  # nested level ran on a batch of crops
    assert any(d.classifications for d in a.detections)
    assert_same_result(a, b)
    sent = served.owl_encoder.stats.history
    assert sent[0] == 1 and max(sent) > 1  # whole image, then the crops as one batch request


def test_bytes_per_frame_follow_the_wire_dtype(predictors):
    _, served = predictors
    enc = served.owl_encoder
    before = (enc.stats.requests, enc.stats.bytes_sent)
    served.predict(synthetic_scene(), served.prepare("[a person]"))
    per_value = {"uint8": 1, "float16": 2}[enc.wire_dtype]
    assert enc.stats.requests == before[0] + 1
    assert enc.stats.bytes_sent - before[1] == 3 * 96 * 96 * per_value


def test_adaptive_region_resolution_is_refused_with_one_line(predictors):
    """The server serves one input size: adaptive (one encoder per bucket) is refused, native runs."""
    local, served = predictors
    adaptive = replace(CONFIG, region_resolution="adaptive")
    problem = served.config_problem(adaptive)
    size = served.owl.info.image_size
    assert problem == (
        "region_resolution 'adaptive' needs a local backend: backend triton serves one input "
        f"size ({size}x{size}); use region_resolution 'native'"
    )
    state = served.prepare(TREE)
    for run in (lambda: served.predict(synthetic_scene(), state, adaptive),
                lambda: served.predict_batch([synthetic_scene()], [state], adaptive)):  # fmt: skip
        with pytest.raises(ValueError, match="needs a local backend") as info:
            run()
        assert "\n" not in str(info.value)
    assert served.config_problem(CONFIG) is None and local.config_problem(adaptive) is None
    assert served.predict(synthetic_scene(), state).detections  # native still runs
    assert served.owl_encoder.selection.backend == "triton"
    assert server_url(served) in served.backend_summary()


def server_url(predictor) -> str:
    return predictor.owl_encoder.options.url


def test_two_clients_are_batched_by_the_server(server, tiny_owlvit_dir):
    import tritonclient.grpc as grpcclient

    owl = OwlModel.load(str(tiny_owlvit_dir))
    target = TritonTarget.of(remote(server), "owl_image_encoder", owl.preprocessor)
    clients = [TritonImageEncoder(owl.encoder, target) for _ in range(2)]
    pixels = owl.preprocessor(torch.from_numpy(synthetic_scene()).permute(2, 0, 1))
    stats = grpcclient.InferenceServerClient(server.url)

    def batch_counts():
        model = stats.get_inference_statistics(
            "owl_image_encoder", headers=dict([TOKEN_HEADER]), as_json=True
        )["model_stats"]
        return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in
                model[0].get("batch_stats", [])}  # fmt: skip

    before = batch_counts()
    barrier = threading.Barrier(2)
    errors = []

    def send(client):
        try:
            for _ in range(5):
                barrier.wait(timeout=60)
                client(pixels[None])
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    after = batch_counts()
    merged = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    assert sum(size * n for size, n in merged.items()) == 10  # every request was executed once
    assert any(size > 1 and n > 0 for size, n in merged.items()), merged


def test_server_down_at_start_is_one_line_naming_the_url(tiny_owlvit_dir):
    url = f"localhost:{free_port()}"
    with pytest.raises(TritonUnavailable) as info:
        TreePredictor.from_pretrained(str(tiny_owlvit_dir), clip_model=None, backend="triton",
                                      triton=TritonOptions(url=url, timeout_s=2.0))  # fmt: skip
    text = str(info.value)
    assert url in text and "\n" not in text and text.startswith("Triton server at")


def test_server_down_with_fallback_uses_local_backend(tiny_owlvit_dir, model_cache_dir, caplog):
    url = f"localhost:{free_port()}"
    predictor = TreePredictor.from_pretrained(
        str(tiny_owlvit_dir), clip_model=None, backend="triton",
        cache_dir=str(model_cache_dir / "artefacts"),
        triton=TritonOptions(url=url, timeout_s=2.0, fallback="local"),
    )  # fmt: skip
    assert predictor.owl_encoder.name == "onnxruntime"
    assert predictor.owl_encoder.selection.source == "fallback"
    assert "triton_fallback local" in predictor.backend_summary()
    adaptive = PredictorConfig(region_resolution="adaptive")
    assert predictor.config_problem(adaptive) is None  # local encoders: one per bucket works
    assert any(url in r.getMessage() and "triton_fallback" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")  # fmt: skip


@pytest.mark.parametrize(
    ("model_name", "message"),
    [
        ("no_such_model", "Triton model 'no_such_model' at localhost:"),
        ("clip_image_encoder", "has shape [-1, 3, 64, 64], this model needs [-1, 3, 96, 96]"),
        ("owl_image_encoder", "lacks outputs ['objectness']"),
    ],
)
def test_wrong_served_model_is_one_line_naming_the_mismatch(
    server, tiny_owlv2_dir, model_name, message
):
    owl = OwlModel.load(str(tiny_owlv2_dir))
    with pytest.raises(TritonModelMismatch) as info:
        TritonImageEncoder(
            owl.encoder, TritonTarget.of(remote(server), model_name, owl.preprocessor)
        )
    assert message in str(info.value) and "\n" not in str(info.value)


def test_server_lost_mid_stream_then_back(
    triton_python, triton_repo, tmp_path, tiny_owlvit_dir, model_cache_dir
):
    """Kill the server (SIGKILL) between frames: frames fail fast with the URL, back-off
    holds further attempts, and after a restart the same predictor gives the same detections."""
    import time

    srv = start_server(triton_python, triton_repo, tmp_path / "triton.log")
    try:
        options = TritonOptions(url=srv.url, timeout_s=10.0, retry_initial_s=3.0, retry_max_s=6.0)
        predictor = TreePredictor.from_pretrained(
            str(tiny_owlvit_dir), clip_model=None, backend="triton", triton=options,
            cache_dir=str(model_cache_dir / "artefacts"),
        )  # fmt: skip
        state = predictor.prepare("[a person, a car]")
        before = predictor.predict(synthetic_scene(), state)
        srv.kill()
        with pytest.raises(TritonUnavailable, match=f"at {srv.url} request failed"):
            predictor.predict(synthetic_scene(), state)
        with pytest.raises(TritonUnavailable, match="next retry in"):
            predictor.predict(synthetic_scene(), state)  # inside the back-off: no network wait
        stats = predictor.owl_encoder.stats
        assert (stats.failed, stats.skipped) == (1, 1)
        srv.start()  # same ports
        deadline = time.monotonic() + 60
        while True:
            try:
                after = predictor.predict(synthetic_scene(), state)
                break
            except TritonUnavailable:
                assert time.monotonic() < deadline, "no recovery within 60 s of the restart"
                threading.Event().wait(predictor.owl_encoder.backoff.wait_left() + 0.05)
        assert_same_result(before, after)
        assert stats.recoveries == 1 and predictor.owl_encoder.backoff.failures == 0
    finally:
        srv.stop()


def test_token_protected_server_needs_the_header(
    triton_python, triton_repo, tmp_path, tiny_owlvit_dir
):
    """Header auth: with inference restricted to a token, a request without it fails naming the
    header; the headers option (triton_headers) gets through."""
    srv = start_server(triton_python, triton_repo, tmp_path / "triton.log", restrict="inference")
    try:
        owl = OwlModel.load(str(tiny_owlvit_dir))
        pixels = owl.preprocessor(torch.from_numpy(synthetic_scene()).permute(2, 0, 1))[None]
        bare = TritonTarget.of(remote(srv), "owl_image_encoder", owl.preprocessor)
        with pytest.raises(TritonUnavailable, match="triton-access-token"):
            TritonImageEncoder(owl.encoder, bare)(pixels)
        authed = TritonTarget.of(
            remote(srv, headers=(TOKEN_HEADER,)), "owl_image_encoder", owl.preprocessor
        )
        assert TritonImageEncoder(owl.encoder, authed)(pixels)["pred_boxes"].shape == (1, 36, 4)
    finally:
        srv.stop()


def test_cli_detect_with_backend_triton_equals_onnxruntime(
    server, tiny_owlvit_dir, tiny_clip_dir, model_cache_dir, tmp_path, capsys
):
    """`ros2-owl detect --backend triton --triton-url ...`: the schema's options reach the server."""
    image = tmp_path / "scene.png"
    Image.fromarray(synthetic_scene()).save(image)
    argv = ["detect", str(image), "--prompt", TREE, "--json", "--threshold", "0",
            "--model", str(tiny_owlvit_dir), "--clip-model", str(tiny_clip_dir),
            "--cache-dir", str(model_cache_dir / "artefacts")]  # fmt: skip
    assert cli.main([*argv, "--backend", "onnxruntime"]) == 0
    local = json.loads(capsys.readouterr().out)[0]["detections"]
    remote = ["--backend", "triton", "--triton-url", server.url, "--triton-timeout", "30"]
    assert cli.main([*argv, *remote]) == 0
    served = json.loads(capsys.readouterr().out)[0]["detections"]
    assert len(served) == len(local) > 0
    for a, b in zip(local, served, strict=True):
        assert a["label"] == b["label"] and abs(a["score"] - b["score"]) <= 1e-4
        assert max(abs(x - y) for x, y in zip(a["box"], b["box"], strict=True)) <= 1e-2


def test_cli_server_down_is_one_line_naming_the_url(tiny_owlvit_dir, tmp_path, capsys):
    image = tmp_path / "scene.png"
    Image.fromarray(synthetic_scene()).save(image)
    url = f"localhost:{free_port()}"
    argv = ["detect", str(image), "--prompt", "[a person]", "--model", str(tiny_owlvit_dir),
            "--no-clip", "--backend", "triton", "--triton-url", url, "--triton-timeout", "2"]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: Triton server at {url} is not reachable") and "\n" not in err
