"""Remote image encoder on a shared Triton Inference Server, over KServe-v2 gRPC (tritonclient).

The robot keeps prompt parsing, text encoding, decoding and NMS; only the image encoder runs on
the server (a model repository from ``ros2-owl build-engine --triton-repo``). A batch of regions
or cameras goes as one request, in the wire dtype the served model declares (uint8 grey levels,
float16 or float32 normalised pixels; see triton_repo.py).

Faults: at start an unreachable server raises TritonUnavailable naming the URL (the caller may
fall back to a local backend); a served model whose names, dtypes or shapes do not fit raises
TritonModelMismatch naming the difference. Mid-run, a failed request raises TritonUnavailable
for that frame and starts a back-off (0.5 s doubling to 8 s): frames inside the window fail at
once without waiting on the network, the first frame after it retries, a success resets it.
Every request has a deadline (``timeout_s``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ros2_owl.backends.base import BackendError
from ros2_owl.backends.triton_repo import V2_TYPES
from ros2_owl.core.settings import SCHEMA, TRITON_FALLBACKS, require_setting

LOG = logging.getLogger(__name__)
WIRE_BY_V2 = {v: k for k, v in V2_TYPES.items()}
LEVEL_TOLERANCE = 0.01  # grey levels: above this a batch is not whole levels and uint8 rounds it
FALLBACKS = TRITON_FALLBACKS


class TritonUnavailable(BackendError):
    """The server cannot be reached or a request failed (the message names the URL)."""


class TritonModelMismatch(BackendError):
    """The served model does not fit this encoder (the message names the difference)."""


@dataclass(frozen=True)
class TritonOptions:
    """How to reach the server: gRPC url, model names, deadline, TLS and header auth, fallback."""

    url: str = SCHEMA["triton_url"].default
    owl_model: str = SCHEMA["triton_owl_model"].default
    clip_model: str = SCHEMA["triton_clip_model"].default
    timeout_s: float = SCHEMA["triton_timeout"].default
    ssl: bool = False
    root_certificates: str = ""  # PEM file; "" = gRPC's default roots
    private_key: str = ""  # PEM file for client-certificate (mutual) TLS
    certificate_chain: str = ""
    headers: tuple[tuple[str, str], ...] = ()  # e.g. (("authorization", "Bearer ..."),)
    fallback: str = SCHEMA[
        "triton_fallback"
    ].default  # "local": a warning and the local onnxruntime backend at start
    retry_initial_s: float = 0.5
    retry_max_s: float = 8.0

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("triton_url must be host:port of the server's gRPC endpoint")
        require_setting("triton_timeout", float(self.timeout_s))  # the setting's own bounds
        require_setting("triton_fallback", self.fallback)
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise ValueError("retry_initial_s must be > 0 and <= retry_max_s")


def parse_headers(items) -> tuple[tuple[str, str], ...]:
    """'key=value' strings -> header pairs (gRPC metadata keys are lower case)."""
    pairs = []
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"triton header {item!r} must look like key=value")
        pairs.append((key.strip().lower(), value.strip()))
    return tuple(pairs)


def triton_options(settings) -> TritonOptions | None:
    """The triton_* settings (node parameters or `ros2-owl` options) as the backend's options;
    None unless the backend is triton."""
    if settings.backend != "triton":
        return None
    return TritonOptions(
        url=settings.triton_url,
        owl_model=settings.triton_owl_model,
        clip_model=settings.triton_clip_model,
        timeout_s=settings.triton_timeout,
        ssl=settings.triton_ssl,
        root_certificates=settings.triton_root_certificates,
        private_key=settings.triton_private_key,
        certificate_chain=settings.triton_certificate_chain,
        headers=parse_headers(settings.triton_headers),
        fallback=settings.triton_fallback,
    )


@dataclass(frozen=True)
class TritonTarget:
    """One encoder's served model plus the normalisation its uint8 wire stage applies."""

    options: TritonOptions
    model_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, options: TritonOptions, model_name: str, preprocessor) -> TritonTarget:
        """The target for a model served under model_name, normalised as preprocessor does."""
        return cls(options, model_name, tuple(preprocessor.mean), tuple(preprocessor.std))


@dataclass
class Backoff:
    """Retry window after failures: initial, doubling, capped; reset by a success."""

    initial_s: float
    max_s: float
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    retry_at: float = 0.0

    def wait_left(self) -> float:
        """Seconds until the next attempt is allowed (0 when it is)."""
        return max(0.0, self.retry_at - self.clock())

    def failed(self) -> float:
        """Record a failure; returns the new window."""
        self.failures += 1
        delay = min(self.max_s, self.initial_s * 2 ** (self.failures - 1))
        self.retry_at = self.clock() + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.retry_at = 0, 0.0


@dataclass
class TritonStats:
    """Request counters for diagnostics."""

    requests: int = 0
    failed: int = 0
    skipped: int = 0  # frames refused inside a back-off window
    recoveries: int = 0
    bytes_sent: int = 0
    last_error: str = ""
    history: list[int] = field(default_factory=list)  # batch sizes sent (last 100)


def _client(options: TritonOptions):
    """A tritonclient gRPC client for the options (TLS when ssl is set)."""
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as err:
        raise BackendError(
            f"backend 'triton' needs tritonclient[grpc] ({err}); pip install 'tritonclient[grpc]'"
        ) from err
    for path in (options.root_certificates, options.private_key, options.certificate_chain):
        try:  # before the client: one that fails to read them is left half-built
            if path:
                open(path, "rb").close()
        except OSError as err:
            raise BackendError(f"triton TLS file {path!r}: {err.strerror}") from err
    return grpcclient.InferenceServerClient(
        options.url,
        ssl=options.ssl,
        root_certificates=options.root_certificates or None,
        private_key=options.private_key or None,
        certificate_chain=options.certificate_chain or None,
    )


def _short(err: Exception) -> str:
    """One line of a tritonclient/gRPC error."""
    message = getattr(err, "message", None)
    text = message() if callable(message) else str(err)
    return " ".join(str(text or type(err).__name__).split())[:300]


class TritonImageEncoder:
    """Sends pixel batches to one served encoder; outputs come back as float32 CPU tensors."""

    name = "triton"

    def __init__(self, module: torch.nn.Module, target: TritonTarget) -> None:
        self.options = target.options
        self.target = target
        self.model_name = target.model_name
        self.image_size = int(module.image_size)
        self.output_names: tuple[str, ...] = tuple(module.output_names)
        self.stats = TritonStats()
        self.backoff = Backoff(self.options.retry_initial_s, self.options.retry_max_s)
        self._lock = threading.Lock()
        self._warned_rounding = False
        self._headers = dict(self.options.headers) or None
        self.client = _client(self.options)
        self._check_live()
        self.wire_dtype, self.max_batch = self._check_model()

    # ----- start-up checks ----------------------------------------------------------------
    def _where(self) -> str:
        return f"Triton model {self.model_name!r} at {self.options.url}"

    def _check_live(self) -> None:
        try:
            live = self.client.is_server_live(
                headers=self._headers, client_timeout=self.options.timeout_s
            )
        except Exception as err:
            raise TritonUnavailable(
                f"Triton server at {self.options.url} is not reachable ({_short(err)})"
            ) from err
        if not live:
            raise TritonUnavailable(f"Triton server at {self.options.url} is not live")

    def _check_model(self) -> tuple[str, int]:
        """(wire dtype, max batch) of the served model; TritonModelMismatch when it does not fit."""
        kw = dict(headers=self._headers, as_json=True, client_timeout=self.options.timeout_s)
        try:
            meta = self.client.get_model_metadata(self.model_name, **kw)
            config = self.client.get_model_config(self.model_name, **kw).get("config", {})
        except Exception as err:
            raise TritonModelMismatch(f"{self._where()} is not available: {_short(err)}") from err
        inputs = meta.get("inputs", [])
        if len(inputs) != 1:
            names = [i.get("name") for i in inputs]
            raise TritonModelMismatch(f"{self._where()} has inputs {names}; an encoder has one")
        image = inputs[0]
        wire = WIRE_BY_V2.get(image.get("datatype", ""))
        if wire is None:
            raise TritonModelMismatch(
                f"{self._where()}: input {image.get('name')!r} is {image.get('datatype')}, "
                f"expected one of {', '.join(WIRE_BY_V2)}"
            )
        shape = [int(d) for d in image.get("shape", [])]
        size = self.image_size
        if shape[-3:] != [3, size, size] or len(shape) != 4:
            raise TritonModelMismatch(
                f"{self._where()}: input {image.get('name')!r} has shape {shape}, this model "
                f"needs [-1, 3, {size}, {size}]; rebuild it with `ros2-owl build-engine "
                "--triton-repo` for this model"
            )
        served = [o.get("name") for o in meta.get("outputs", [])]
        missing = [n for n in self.output_names if n not in served]
        if missing:
            raise TritonModelMismatch(f"{self._where()} lacks outputs {missing} (it has {served})")
        max_batch = int(config.get("max_batch_size", 0) or 0)
        if max_batch < 1:
            raise TritonModelMismatch(f"{self._where()} has max_batch_size 0 (no batching)")
        self._input_name = image.get("name")
        self._check_normalisation(wire, config.get("parameters", {}))
        return wire, max_batch

    def _check_normalisation(self, wire: str, params: dict) -> None:
        """A uint8 model normalises on the server: its mean/std must be this model's."""
        if wire != "uint8":
            return
        for key, local in (("ros2_owl.mean", self.target.mean), ("ros2_owl.std", self.target.std)):
            text = params.get(key, {}).get("string_value")
            if text is None:
                continue
            served = tuple(float(v) for v in text.split(","))
            if not np.allclose(served, local, rtol=0, atol=1e-6):
                raise TritonModelMismatch(
                    f"{self._where()} normalises with {key.split('.')[-1]} {served}, this "
                    f"model uses {tuple(local)}"
                )

    # ----- requests -----------------------------------------------------------------------
    def wire_pixels(self, pixel_values: torch.Tensor) -> np.ndarray:
        """The batch in the served model's wire dtype (uint8 levels are exact for whole levels)."""
        x = pixel_values.detach().to("cpu", torch.float32)
        if self.wire_dtype == "float32":
            return x.contiguous().numpy()
        if self.wire_dtype == "float16":
            return x.to(torch.float16).contiguous().numpy()
        mean = torch.tensor(self.target.mean)[None, :, None, None]
        std = torch.tensor(self.target.std)[None, :, None, None]
        levels = (x * std + mean) * 255.0
        rounded = levels.round().clamp_(0, 255)
        error = float((levels - rounded).abs().max()) if levels.numel() else 0.0
        if error > LEVEL_TOLERANCE and not self._warned_rounding:
            self._warned_rounding = True
            LOG.warning(
                "%s takes uint8: this batch is not whole grey levels (max %.2f levels off) and "
                "is rounded; serve a float16 model (--triton-wire-dtype float16) to keep it",
                self._where(),
                error,
            )
        return rounded.to(torch.uint8).numpy()

    def __call__(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode a batch [B,3,S,S] on the server (one request)."""
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3,) + (self.image_size,) * 2:
            raise ValueError(
                f"pixel_values must be [B,3,{self.image_size},{self.image_size}], got "
                f"{tuple(pixel_values.shape)}"
            )
        wait = self.backoff.wait_left()
        if wait > 0:
            self.stats.skipped += 1
            raise TritonUnavailable(
                f"{self._where()} failed {self.backoff.failures} time(s) "
                f"(last: {self.stats.last_error}); next retry in {wait:.1f} s"
            )
        data = self.wire_pixels(pixel_values)
        try:
            outputs = self._infer(data)
        except Exception as err:
            delay = self.backoff.failed()
            self.stats.failed += 1
            self.stats.last_error = _short(err)
            raise TritonUnavailable(
                f"{self._where()} request failed ({self.stats.last_error}); retrying in "
                f"{delay:.1f} s"
            ) from err
        if self.backoff.failures:
            self.stats.recoveries += 1
            LOG.info("%s answers again after %d failure(s)", self._where(), self.backoff.failures)
        self.backoff.succeeded()
        return outputs

    def _infer(self, data: np.ndarray) -> dict[str, torch.Tensor]:
        import tritonclient.grpc as grpcclient

        request = grpcclient.InferInput(
            self._input_name, list(data.shape), V2_TYPES[self.wire_dtype]
        )
        request.set_data_from_numpy(data)
        wanted = [grpcclient.InferRequestedOutput(n) for n in self.output_names]
        result = self.client.infer(
            self.model_name,
            [request],
            outputs=wanted,
            headers=self._headers,
            client_timeout=self.options.timeout_s,
        )
        with self._lock:
            self.stats.requests += 1
            self.stats.bytes_sent += data.nbytes
            self.stats.history = self.stats.history[-99:] + [int(data.shape[0])]
        outputs = {}
        for name in self.output_names:
            value = result.as_numpy(name)
            if value is None or value.shape[0] != data.shape[0]:
                raise TritonModelMismatch(f"{self._where()} returned no batch of {name!r}")
            outputs[name] = torch.from_numpy(np.array(value, dtype=np.float32))
        return outputs

    def close(self) -> None:
        """Close the gRPC channel."""
        self.client.close()


def make_triton_encoder(
    module: torch.nn.Module, target: TritonTarget, local: Callable[[], object]
) -> object:
    """Connect to the served encoder; with fallback 'local', an unreachable server at start
    logs a warning and returns local() instead."""
    try:
        return TritonImageEncoder(module, target)
    except TritonUnavailable as err:
        if target.options.fallback != "local":
            raise
        LOG.warning("%s; using the local onnxruntime backend instead (triton_fallback: local)", err)
        return local()
