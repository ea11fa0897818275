"""A real Triton server (PyTriton's bundled tritonserver) serving a ros2_owl model repository.

Runs in its own venv (tools/setup_triton_server.sh; PyTriton needs numpy<2). For each
DIR/<name>/config.pbtxt it binds a PyTriton model with the same input/output names, dtypes,
shapes, max_batch_size and dynamic batcher, whose infer function runs DIR/<name>/1/model.onnx
with ONNX Runtime: the stand-in for Triton's own onnxruntime backend, which this wheel lacks.
Clients talk to the real tritonserver over KServe-v2 gRPC/HTTP; batching is Triton's.

    python tools/triton_server.py --repo DIR --grpc-port 8001 --http-port 8000

Prints "READY <grpc port>" once every model is loaded. Stop it with SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
from tritonclient.grpc import model_config_pb2

NUMPY_TYPES = {
    model_config_pb2.TYPE_UINT8: np.uint8,
    model_config_pb2.TYPE_FP16: np.float16,
    model_config_pb2.TYPE_FP32: np.float32,
    model_config_pb2.TYPE_INT64: np.int64,
}


def read_config(folder: Path) -> model_config_pb2.ModelConfig:
    """Parse config.pbtxt with Triton's model-config schema."""
    config = model_config_pb2.ModelConfig()
    text_format.Parse((folder / "config.pbtxt").read_text(), config)
    return config


def infer_function(onnx_path: Path, output_names: list[str], threads: int):
    """A batched infer function running the ONNX graph with ONNX Runtime on CPU."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    @batch
    def infer(**inputs):
        values = session.run(output_names, {input_name: next(iter(inputs.values()))})
        return dict(zip(output_names, values, strict=True))

    return infer


def bind(triton: Triton, folder: Path, threads: int) -> str:
    """Bind one model folder; returns its name."""
    config = read_config(folder)
    dims = lambda t: tuple(int(d) for d in t.dims)  # noqa: E731
    inputs = [
        Tensor(name=t.name, dtype=NUMPY_TYPES[t.data_type], shape=dims(t)) for t in config.input
    ]
    outputs = [
        Tensor(name=t.name, dtype=NUMPY_TYPES[t.data_type], shape=dims(t)) for t in config.output
    ]
    batcher = DynamicBatcher(
        max_queue_delay_microseconds=config.dynamic_batching.max_queue_delay_microseconds,
        preferred_batch_size=list(config.dynamic_batching.preferred_batch_size) or None,
    )
    triton.bind(
        model_name=config.name,
        infer_func=infer_function(
            folder / "1" / "model.onnx", [t.name for t in config.output], threads
        ),
        inputs=inputs,
        outputs=outputs,
        config=ModelConfig(max_batch_size=config.max_batch_size, batcher=batcher),
        strict=True,
    )
    return config.name


def tls_options(args) -> dict:
    """TritonConfig's gRPC TLS fields (tritonserver's --grpc-use-ssl[-mutual], -server-cert,
    -server-key, -root-cert); none without a server certificate."""
    if not args.grpc_server_cert:
        return {}
    options = dict(grpc_server_cert=args.grpc_server_cert, grpc_server_key=args.grpc_server_key)
    if args.grpc_root_cert:
        options["grpc_root_cert"] = args.grpc_root_cert
    if args.grpc_mutual_tls:
        return dict(options, grpc_use_ssl_mutual=True)
    return dict(options, grpc_use_ssl=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument(
        "--access-token",
        default=os.environ.get("TRITON_ACCESS_TOKEN") or None,
        help="token the restricted endpoints demand (gRPC header "
        "triton-grpc-protocol-triton-access-token); default $TRITON_ACCESS_TOKEN or random",
    )
    parser.add_argument(
        "--restrict",
        default=None,
        help="comma-separated endpoints that need the token (default: PyTriton's: statistics, "
        "model-repository, shared-memory, trace, logging); e.g. add inference,metadata",
    )
    parser.add_argument(
        "--grpc-server-cert", type=Path, help="PEM server certificate: gRPC over TLS"
    )
    parser.add_argument("--grpc-server-key", type=Path, help="PEM key of --grpc-server-cert")
    parser.add_argument(
        "--grpc-root-cert", type=Path, help="PEM root certificate clients are checked against"
    )
    parser.add_argument(
        "--grpc-mutual-tls", action="store_true", help="demand a client certificate (mutual TLS)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    folders = sorted(p.parent for p in args.repo.glob("*/config.pbtxt"))
    if not folders:
        print(f"error: no <name>/config.pbtxt under {args.repo}", file=sys.stderr)
        return 1
    config = TritonConfig(
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        exit_timeout_secs=5,
        **tls_options(args),
    )
    security = TritonSecurityConfig(
        access_token=args.access_token,
        restricted_endpoints=args.restrict.split(",") if args.restrict else None,
    )
    with Triton(config=config, security_config=security) as triton:
        names = [bind(triton, folder, args.threads) for folder in folders]
        triton.run()
        print(f"READY {args.grpc_port} {' '.join(names)}", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        while not stop.wait(0.5) and triton.is_alive():
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
