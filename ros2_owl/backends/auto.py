"""backend='auto': the fastest image-encoder backend for this machine, measured once and cached.

On CUDA the choice is a rule: TensorRT fp16 when ``tensorrt`` is importable, else torch fp16
(what every GPU runs fastest; float32 only when asked for with ``dtype``). On CPU the speed
of a backend depends on the CPU (an AMD CPU runs ONNX Runtime fp32 about twice as fast as
torch fp32; an Intel CPU with AMX runs torch bf16 fastest), so each candidate encodes the
actual encoder's input a few times and the fastest median wins. The decision is stored in the
artefact cache under a key of the model, the CPU model, the thread counts and the runtime
versions, so a later start with the same key builds only the winner and measures nothing.

Reduced precision (torch bf16, ONNX Runtime int8) is a candidate only with
``precision='allow-reduced'``; with the default ``'fp32'`` it is never measured nor chosen.
Candidates are rows of ``CPU_CANDIDATES``; ``register_cpu_candidate`` adds a new backend.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..core.settings import PRECISIONS
from .base import BackendError, ImageEncoderBackend

LOG = logging.getLogger(__name__)

MEASURE_ITERATIONS = 3
Build = Callable[["Candidate"], ImageEncoderBackend]


@dataclass(frozen=True)
class Candidate:
    """One (backend, dtype) pair auto may pick; ``reduced`` marks precision below fp32."""

    backend: str
    dtype: str
    reduced: bool = False

    @property
    def label(self) -> str:
        return f"{self.backend} {self.dtype}"


REMOTE_BACKENDS = ("triton",)  # explicit only: never measured, never picked by auto
CPU_CANDIDATES: list[Candidate] = [
    Candidate("onnxruntime", "float32"),
    Candidate("torch", "float32"),
    Candidate("torch", "bfloat16", reduced=True),
    Candidate("onnxruntime", "int8", reduced=True),
]


def register_cpu_candidate(candidate: Candidate) -> None:
    """Let a new backend module take part in the CPU measurement (once per candidate); a remote
    backend never does: auto must not send the robot's images off the robot unasked."""
    if candidate.backend in REMOTE_BACKENDS:
        raise BackendError(
            f"backend {candidate.backend!r} is remote and chosen explicitly, never by 'auto'"
        )
    if candidate not in CPU_CANDIDATES:
        CPU_CANDIDATES.append(candidate)


@dataclass(frozen=True)
class AutoChoice:
    """What auto chose for one encoder, why, and the medians it measured (ms per image)."""

    backend: str
    dtype: str
    reason: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    source: str = "measured"  # measured | cache | rule

    def describe(self) -> str:
        """One line for logs, diagnostics and `build-engine --list`."""
        return f"{self.backend} {self.dtype} ({self.source}: {self.reason})"


def check_precision(precision: str) -> str:
    """The precision policy, or BackendError listing the accepted values."""
    if precision not in PRECISIONS:
        raise BackendError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def cpu_model() -> str:
    """CPU model name (part of the cache key: the best backend differs between CPUs)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def runtime_versions() -> str:
    """Versions of every runtime a candidate may use (part of the cache key)."""
    parts = [f"torch-{torch.__version__}"]
    for name in ("onnxruntime", "tensorrt"):
        spec = importlib.util.find_spec(name)
        if spec is not None:
            from importlib.metadata import PackageNotFoundError, version

            try:
                parts.append(f"{name}-{version(name)}")
            except PackageNotFoundError:
                parts.append(f"{name}-?")
    return " ".join(parts)


def thread_counts() -> str:
    """torch and ORT intra-op threads (part of the cache key: the winner depends on them)."""
    from .onnxruntime_backend import default_threads

    return f"torch{torch.get_num_threads()}-ort{default_threads()}"


def cuda_rule(device: torch.device, dtype: str) -> AutoChoice:
    """CUDA: TensorRT when importable, else torch; float16 unless dtype asks otherwise."""
    chosen = "float16" if dtype == "auto" else dtype
    if importlib.util.find_spec("tensorrt") is not None and chosen in ("float16", "float32"):
        return AutoChoice("tensorrt", chosen, "CUDA device and tensorrt is importable", {}, "rule")
    return AutoChoice("torch", chosen, "CUDA device, tensorrt not importable", {}, "rule")


def cpu_candidates(
    precision: str, dtype: str, candidates: Sequence[Candidate] | None = None
) -> list[Candidate]:
    """Candidates allowed by the precision policy (and an explicit dtype, when one is given)."""
    pool = list(CPU_CANDIDATES if candidates is None else candidates)
    if dtype != "auto":  # an explicit dtype is the user's choice, reduced or not
        return [c for c in pool if c.dtype == dtype]
    return [c for c in pool if precision == "allow-reduced" or not c.reduced]


def measure_ms(
    encoders: dict[str, ImageEncoderBackend], pixels: torch.Tensor, iterations: int
) -> dict[str, float]:
    """Median ms per call of each (warmed-up) encoder, in interleaved rounds (every candidate
    once per round), so load from other processes hits all of them alike."""
    samples: dict[str, list[float]] = {label: [] for label in encoders}
    for _ in range(iterations):
        for label, encoder in encoders.items():
            start = time.perf_counter()
            encoder(pixels)
            samples[label].append((time.perf_counter() - start) * 1e3)
    return {label: statistics.median(values) for label, values in samples.items()}


def measure(
    candidates: Sequence[Candidate],
    build: Build,
    pixels: torch.Tensor,
    iterations: int = MEASURE_ITERATIONS,
    say: Callable[[str], None] = LOG.info,
) -> tuple[Candidate, ImageEncoderBackend, AutoChoice]:
    """Build every candidate, time them interleaved; keep the fastest, free the others."""
    built: dict[str, ImageEncoderBackend] = {}
    by_label = {c.label: c for c in candidates}
    skipped: list[str] = []
    for cand in candidates:
        try:
            encoder = build(cand)
            encoder(pixels)  # warm-up, and a candidate that cannot run fails here
        except Exception as err:  # a candidate that cannot run here is skipped, not fatal
            skipped.append(f"{cand.label}: {err}".split("\n")[0][:200])
            say(f"auto: skipping {skipped[-1]}")
            continue
        built[cand.label] = encoder
    if not built:
        raise BackendError("backend 'auto' found no runnable candidate: " + "; ".join(skipped))
    timings = {k: round(v, 3) for k, v in measure_ms(built, pixels, iterations).items()}
    for label, ms in timings.items():
        say(f"auto: {label} {ms:.1f} ms per image")
    best = min(timings, key=timings.get)
    encoder = built.pop(best)
    built.clear()
    gc.collect()
    ms, cand = timings[best], by_label[best]
    others = sorted((v, k) for k, v in timings.items() if k != best)
    reason = f"fastest of {len(timings)} measured on {cpu_model()}: {ms:.1f} ms"
    if others:
        reason += f", next {others[0][1]} {others[0][0]:.1f} ms"
        if ms > 0:  # a stand-in that returns stored outputs rounds to 0.000 ms
            reason += f" ({others[0][0] / ms:.2f}x)"
    return cand, encoder, AutoChoice(cand.backend, cand.dtype, reason, timings, "measured")


def auto_key(module: torch.nn.Module, model_id: str, policy: str, max_batch: int, pool):
    """Cache key of a decision: the model, CPU, threads, runtimes and candidates measured."""
    from .export import module_key

    return module_key(
        module,
        model_id,
        precision=policy,
        max_batch=max_batch,
        backend="auto",
        runtime_version=runtime_versions(),
        device=f"cpu {cpu_model()}",
        extra=(("threads", thread_counts()), ("candidates", ",".join(c.label for c in pool))),
    )


def read_choice(path: Path) -> AutoChoice:
    """AutoChoice stored by a previous start (source becomes 'cache')."""
    data = json.loads(Path(path).read_text())
    data["source"] = "cache"
    return AutoChoice(**data)


def choose_cpu(
    module: torch.nn.Module,
    *,
    model_id: str,
    precision: str,
    dtype: str,
    build: Build,
    cache,
    max_batch: int = 8,
    candidates: Sequence[Candidate] | None = None,
    iterations: int = MEASURE_ITERATIONS,
    say: Callable[[str], None] = LOG.info,
) -> tuple[ImageEncoderBackend, AutoChoice]:
    """The cached decision for this key (building only its winner), else measure and store."""
    pool = cpu_candidates(check_precision(precision), dtype, candidates)
    if not pool:
        raise BackendError(f"backend 'auto' has no CPU candidate for dtype {dtype!r}")
    key = auto_key(module, model_id, precision, max_batch, pool)
    with cache.lock(key, "choice"):
        entry = cache.load(key, "choice")
        if entry is not None:
            choice = read_choice(entry.path)
            winner = next(
                (c for c in pool if (c.backend, c.dtype) == (choice.backend, choice.dtype)), None
            )
            if winner is not None:
                say(f"auto: {type(module).__name__} -> {choice.describe()}")
                return build(winner), choice
        size = key.input_size
        pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        _, encoder, choice = measure(pool, build, pixels, iterations, say)
        stored = {k: v for k, v in asdict(choice).items() if k != "source"}
        cache.store(
            key, "choice", lambda tmp: tmp.write_text(json.dumps(stored, indent=2)), info=stored
        )
    say(f"auto: {type(module).__name__} -> {choice.describe()}")
    return encoder, choice
