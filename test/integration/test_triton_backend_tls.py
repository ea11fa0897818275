"""backend 'triton' over TLS with real certificates (made with openssl) against a real Triton
server: server-authenticated TLS and mutual TLS, and the one-line refusals when they do not fit."""

from __future__ import annotations

import pytest
from fixtures_models import synthetic_scene
from fixtures_triton import start_server
from test_predictor_backends import CONFIG, assert_same_result

from ros2_owl.backends.base import BackendError
from ros2_owl.backends.triton_backend import TritonImageEncoder, TritonOptions, TritonUnavailable
from ros2_owl.core.predictor import TreePredictor

PROMPT = "[a person [a face, a hand]]"  # nested: the crops go as one batch request too


@pytest.fixture(scope="module")
def owl_only_repo(triton_repo, tmp_path_factory):
    """The OWL-ViT model of the shared repository alone (one model starts faster)."""
    root = tmp_path_factory.mktemp("triton-owl-only")
    (root / "owl_image_encoder").symlink_to(triton_repo / "owl_image_encoder")
    return root


@pytest.fixture(scope="module", params=["tls", "mutual-tls"])
def tls_server(request, triton_python, owl_only_repo, tls_files, tmp_path_factory):
    extra = ["--grpc-server-cert", str(tls_files.server_cert),
             "--grpc-server-key", str(tls_files.server_key),
             "--grpc-root-cert", str(tls_files.ca)]  # fmt: skip
    if request.param == "mutual-tls":
        extra.append("--grpc-mutual-tls")
    log = tmp_path_factory.mktemp("log") / "triton.log"
    srv = start_server(triton_python, owl_only_repo, log, extra=extra)
    yield request.param, srv
    srv.stop()


def load(owl_dir, cache_dir, **options):
    return TreePredictor.from_pretrained(
        str(owl_dir), clip_model=None, backend="triton", config=CONFIG,
        cache_dir=str(cache_dir / "artefacts"),
        triton=TritonOptions(**{"timeout_s": 30.0, **options}),
    )  # fmt: skip


def test_detections_over_tls_equal_local_onnxruntime(tls_server, tls_files, tiny_owlvit_dir,
                                                     model_cache_dir):  # fmt: skip
    kind, server = tls_server
    client = dict(private_key=str(tls_files.client_key),
                  certificate_chain=str(tls_files.client_cert)) if kind == "mutual-tls" else {}  # fmt: skip
    served = load(tiny_owlvit_dir, model_cache_dir, url=server.url, ssl=True,
                  root_certificates=str(tls_files.ca), **client)  # fmt: skip
    local = TreePredictor.from_pretrained(
        str(tiny_owlvit_dir), clip_model=None, backend="onnxruntime", config=CONFIG,
        cache_dir=str(model_cache_dir / "artefacts"),
    )  # fmt: skip
    assert isinstance(served.owl_encoder, TritonImageEncoder)
    a = local.predict(synthetic_scene(), local.prepare(PROMPT))
    b = served.predict(synthetic_scene(), served.prepare(PROMPT))
    assert any(d.parent_id for d in a.detections)
    assert_same_result(a, b)
    assert served.owl_encoder.stats.requests >= 2 and served.owl_encoder.stats.failed == 0


def refused(owl_dir, cache_dir, url, **options) -> str:
    with pytest.raises(TritonUnavailable) as info:
        load(owl_dir, cache_dir, url=url, timeout_s=5.0, **options)
    text = str(info.value)
    assert url in text and "\n" not in text, text
    return text


def test_a_client_that_does_not_fit_the_tls_server_is_one_line(
    tls_server, tls_files, tiny_owlvit_dir, model_cache_dir
):
    kind, server = tls_server
    args = (tiny_owlvit_dir, model_cache_dir, server.url)
    client = dict(private_key=str(tls_files.client_key),
                  certificate_chain=str(tls_files.client_cert))  # fmt: skip
    refused(*args)  # plaintext gRPC to a TLS port
    refused(*args, ssl=True, root_certificates=str(tls_files.other_ca), **client)  # untrusted
    refused(*args, ssl=True, **client)  # gRPC's default roots do not hold the test CA
    if kind == "mutual-tls":
        refused(*args, ssl=True, root_certificates=str(tls_files.ca))  # no client certificate


def test_a_missing_certificate_file_is_one_line(tmp_path, tiny_owlvit_dir, model_cache_dir):
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(BackendError) as info:
        load(tiny_owlvit_dir, model_cache_dir, url="localhost:1", ssl=True,
             root_certificates=str(missing))  # fmt: skip
    assert str(info.value) == f"triton TLS file {str(missing)!r}: No such file or directory"
