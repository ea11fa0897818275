"""Where and how the models run (configure): model ids, device, backend, artefact cache, the
queries file, and backend triton's server."""

from __future__ import annotations

from dataclasses import dataclass

from .schema import (
    BACKEND_UPGRADES,
    BACKENDS,
    DEFAULT_CLIP,
    DEFAULT_MODEL,
    DTYPES,
    PRECISIONS,
    SAM_BACKENDS,
    TRITON_CLIP_MODEL,
    TRITON_FALLBACKS,
    TRITON_OWL_MODEL,
    check_headers,
    setting,
)

__all__ = ["ModelSettings", "TritonSettings"]


@dataclass(frozen=True)
class ModelSettings:
    """Models and how their image encoders run (configure)."""

    model: str = setting(
        DEFAULT_MODEL,
        "OWL-ViT / OWLv2 hub id or local directory (loaded at configure).",
        live=False,
        cli=True,
    )
    clip_model: str = setting(
        DEFAULT_CLIP,
        "CLIP hub id or local directory for classify groups ('' = none; loaded at configure).",
        live=False,
        cli=True,
    )
    sam_model: str = setting(
        "",
        "SAM hub id or local directory for instance masks of labels marked {mask}, e.g. "
        "facebook/sam-vit-base ('' = none; loaded at configure).",
        live=False,
        cli=True,
    )
    sam_backend: str = setting(
        "torch",
        "Backend of SAM's image encoder: torch, or onnxruntime (exported and cached like OWL's).",
        live=False,
        choices=SAM_BACKENDS,
        cli=True,
    )
    device: str = setting(
        "cpu",
        "Torch device, e.g. 'cpu' or 'cuda:0'.",
        live=False,
        cli=True,
    )
    dtype: str = setting(
        "auto",
        "Image-encoder precision; 'auto' = float16 for tensorrt (the engine build_engine makes), "
        "else float32.",
        live=False,
        choices=DTYPES,
        cli=True,
    )
    backend: str = setting(
        "auto",
        "Image encoder backend; 'auto' = the fastest local one for this machine (measured once, "
        "cached); 'triton' = a shared inference server (explicit only, auto never picks it).",
        live=False,
        choices=BACKENDS,
        cli=True,
    )
    precision: str = setting(
        "fp32",
        "'allow-reduced' lets backend auto choose bfloat16 or int8 on CPU (never otherwise).",
        live=False,
        choices=PRECISIONS,
        cli=True,
    )
    backend_upgrade: str = setting(
        "background",
        "backend auto on a CPU with no cached decision: 'background' = serve with torch at "
        "once, measure and swap in the winner between frames; 'wait' = measure before serving.",
        live=False,
        choices=BACKEND_UPGRADES,
        cli=True,
    )
    cache_dir: str = setting(
        "",
        "Directory for exported ONNX models / TensorRT engines ('' = default cache).",
        live=False,
        cli=True,
    )
    queries_file: str = setting(
        "",
        "File of reference-image queries ($name labels): loaded at start, saved on register.",
        live=False,
        cli="--queries",
    )


@dataclass(frozen=True)
class TritonSettings:
    """backend triton: a shared inference server (configure)."""

    triton_url: str = setting(
        "localhost:8001",
        "backend triton: host:port of the Triton server's gRPC endpoint.",
        live=False,
        cli=True,
    )
    triton_owl_model: str = setting(
        TRITON_OWL_MODEL,
        "backend triton: served model name of the OWL image encoder.",
        live=False,
        cli=True,
    )
    triton_clip_model: str = setting(
        TRITON_CLIP_MODEL,
        "backend triton: served model name of the CLIP image encoder.",
        live=False,
        cli=True,
    )
    triton_timeout: float = setting(
        10.0,
        "backend triton: deadline of each request and of the start-up checks, seconds.",
        live=False,
        range=(0.1, 600.0),
        cli=True,
    )
    triton_ssl: bool = setting(
        False,
        "backend triton: TLS to the server.",
        live=False,
        cli=True,
    )
    triton_root_certificates: str = setting(
        "",
        "backend triton: PEM file of root certificates ('' = gRPC's default roots).",
        live=False,
        cli=True,
    )
    triton_private_key: str = setting(
        "",
        "backend triton: PEM private key for client-certificate (mutual) TLS.",
        live=False,
        cli=True,
    )
    triton_certificate_chain: str = setting(
        "",
        "backend triton: PEM certificate chain for client-certificate (mutual) TLS.",
        live=False,
        cli=True,
    )
    triton_headers: tuple[str, ...] = setting(
        (),
        "backend triton: request headers as key=value, e.g. 'authorization=Bearer TOKEN'.",
        live=False,
        check=check_headers,
        cli="--triton-header",
    )
    triton_fallback: str = setting(
        "none",
        "backend triton: 'local' = if the server is down at start, warn and run the encoders "
        "locally with onnxruntime; 'none' = refuse to start.",
        live=False,
        choices=TRITON_FALLBACKS,
        cli=True,
    )
