"""Backend upgrade in the background: serve with torch at once, measure auto's candidates at
low priority, then build the winner at normal priority and hand it over in one piece.

`backend: auto` on a CPU with no cached decision exports ONNX (and int8) and measures every
candidate: minutes for a full-size model. ``BackgroundUpgrade`` does that work while the caller
serves with the torch encoders it already has. Two threads, both created by the thread that
calls ``start()``:

- ``owl_upgrade`` (the caller's priority) starts ``owl_upgrade_measure``, waits for it, then
  builds the winners from the cached decision and calls ``adopt`` with all of them at once;
- ``owl_upgrade_measure`` lowers its own nice value by ``UPGRADE_NICE`` (Linux nice values are
  per thread and inherited by threads it creates: torch's OpenMP team and ONNX Runtime's pools
  made from it) and measures, which stores the decision in the artefact cache.

The winner is built in the normal-priority thread because a session built in the low-priority
one would keep low-priority worker threads after the swap, and raising a nice value back needs
privileges a robot may not have. The measurement's sessions are freed before that.
``GATE_ENV`` names a FIFO the measuring thread opens before any work (tests hold it there).
"""

from __future__ import annotations

import copy
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from .auto import AutoChoice, auto_key, cpu_candidates, read_choice
from .base import ImageEncoderBackend

LOG = logging.getLogger(__name__)

UPGRADE_NICE = 10  # a contended CPU gives the frames ~90% of its time (CFS weights 1024:110)
GATE_ENV = "ROS2_OWL_UPGRADE_GATE"
MEASURE_THREAD, UPGRADE_THREAD = "owl_upgrade_measure", "owl_upgrade"


@dataclass(frozen=True)
class UpgradeJob:
    """One image encoder to upgrade: its name for the caller ('owl', 'clip') and what keys it."""

    name: str
    module: torch.nn.Module
    model_id: str


def thread_nice(tid: int | None = None) -> int:
    """The nice value of one thread of this process (field 19 of /proc/self/task/<tid>/stat)."""
    tid = threading.get_native_id() if tid is None else tid
    stat = open(f"/proc/self/task/{tid}/stat").read()  # noqa: SIM115  tiny, read at once
    return int(stat[stat.rindex(")") + 2 :].split()[16])


def lower_priority(delta: int = UPGRADE_NICE) -> int:
    """Raise the calling thread's nice value by delta (capped at 19); returns the new value."""
    tid = threading.get_native_id()
    target = min(19, os.getpriority(os.PRIO_PROCESS, tid) + delta)
    os.setpriority(os.PRIO_PROCESS, tid, target)
    return target


def cached_decision(
    module: torch.nn.Module,
    *,
    model_id: str,
    precision: str,
    dtype: str,
    cache_dir: str | None,
    max_batch: int,
) -> AutoChoice | None:
    """The decision a previous CPU measurement stored for this encoder, None when there is none."""
    from .cache import ArtefactCache

    pool = cpu_candidates(precision, dtype)
    if not pool:
        return None
    entry = ArtefactCache(cache_dir).peek(
        auto_key(module, model_id, precision, max_batch, pool), "choice"
    )
    return None if entry is None else read_choice(entry.path)


class UpgradeCancelled(RuntimeError):
    """Raised from progress once the upgrade is cancelled: the measurement stops at its next step."""


class UpgradeStatus:
    """Where the upgrade stands, for logs and /diagnostics (thread-safe, one line)."""

    def __init__(self, serving: str) -> None:
        self._lock = threading.Lock()
        self.state, self.detail, self.serving = "pending", "", serving
        self.started = time.monotonic()

    def set(self, state: str, detail: str = "") -> None:
        with self._lock:
            self.state, self.detail = state, detail

    def describe(self) -> str:
        with self._lock:
            elapsed = time.monotonic() - self.started
            text = f"{self.state} after {elapsed:.0f} s" if self.state != "pending" else "pending"
            return f"{text}: {self.detail}" if self.detail else text


class BackgroundUpgrade:
    """Measure in a low-priority thread, build the winners in a normal one, adopt them at once.

    ``measure(job)`` stores the decision and returns it; ``build(job)`` builds the encoder from
    the stored decision; ``adopt(encoders, choices)`` takes {job name: encoder} (those kept
    are absent) and every job's AutoChoice; ``keep(choice)`` says a winner is what already
    serves (no build, no swap).
    """

    def __init__(
        self,
        jobs: Sequence[UpgradeJob],
        *,
        measure: Callable[[UpgradeJob], AutoChoice],
        build: Callable[[UpgradeJob], ImageEncoderBackend],
        adopt: Callable[[Mapping[str, ImageEncoderBackend], Mapping[str, AutoChoice]], None],
        keep: Callable[[AutoChoice], bool] = lambda choice: False,
        say: Callable[[str], None] = LOG.info,
        serving: str = "torch float32",
        nice: int = UPGRADE_NICE,
    ) -> None:
        self.jobs = list(jobs)
        self._measure, self._build, self._adopt, self._keep = measure, build, adopt, keep
        self.log, self._nice = say, nice  # the caller may point log at its own logger
        self.status = UpgradeStatus(serving)
        self.choices: dict[str, AutoChoice] = {}
        self.done = threading.Event()
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None
        self._gate_fd: int | None = None

    def start(self) -> None:
        """Start the work; the threads inherit the caller's priority (the measuring one lowers)."""
        self.status.set("measuring", f"serving {self.status.serving} meanwhile")
        self._thread = threading.Thread(target=self._run, name=UPGRADE_THREAD, daemon=True)
        self._thread.start()

    def say(self, message: str) -> None:
        """Progress of the work (export, measurement); stops it at the next step once cancelled."""
        if self._cancelled.is_set():
            raise UpgradeCancelled("backend upgrade cancelled")
        self.log(message)

    def cancel(self) -> None:
        """Adopt nothing from now on (cleanup, shutdown); a measurement in flight runs out."""
        self._cancelled.set()
        gate = os.environ.get(GATE_ENV)
        if gate and self._gate_fd is None:  # release a thread held at the test gate, now or
            try:  # when it gets there: a FIFO opened read-write never blocks and holds a byte
                self._gate_fd = os.open(gate, os.O_RDWR | os.O_NONBLOCK)
                os.write(self._gate_fd, b"x")
            except OSError:
                pass

    def join(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def running(self) -> bool:
        """Started and not finished: its thread may be inside torch (an export)."""
        return self._thread is not None and not self.done.is_set()

    def _run(self) -> None:
        try:
            errors: list[BaseException] = []
            measurer = threading.Thread(
                target=self._measure_all, args=(errors,), name=MEASURE_THREAD, daemon=True
            )
            measurer.start()
            measurer.join()
            if self._cancelled.is_set():
                self.status.set("cancelled")
            elif errors:
                self._failed(errors[0])
            else:
                self._swap()
        except Exception as exc:  # a build that fails leaves the torch encoders serving
            if self._cancelled.is_set():
                self.status.set("cancelled")
            else:
                self._failed(exc)
        finally:
            self.jobs = []  # the torch modules are not held by a finished upgrade
            if self._gate_fd is not None:
                os.close(self._gate_fd)
            self.done.set()

    def _measure_all(self, errors: list[BaseException]) -> None:
        """The low-priority part: wait for the test gate, then measure every job in turn."""
        try:
            lower_priority(self._nice)
            _wait_for_gate()
            for job in self.jobs:
                if self._cancelled.is_set():
                    return
                self.log(
                    f"backend upgrade: measuring {job.name} ({job.model_id}) in the background"
                )
                self.choices[job.name] = self._measure(job)
        except Exception as exc:
            errors.append(exc)

    def _swap(self) -> None:
        """Build the winners that differ from what serves, then hand them over together."""
        todo = [j for j in self.jobs if not self._keep(self.choices[j.name])]
        summary = "; ".join(f"{n}: {c.describe()}" for n, c in self.choices.items())
        if not todo:
            self._adopt({}, dict(self.choices))
            self.status.set("kept", f"auto chose what serves ({summary})")
            self.log(f"backend upgrade: keeping {self.status.serving}: {summary}")
            return
        self.status.set("building", summary)
        built = {job.name: self._build(job) for job in todo}
        if self._cancelled.is_set():
            self.status.set("cancelled")
            return
        self._adopt(built, dict(self.choices))
        names = ", ".join(f"{n} -> {e.name}" for n, e in built.items())
        self.status.set("swapped", f"{names} ({summary})")
        self.log(f"backend upgrade: swapped {names} between frames; {summary}")

    def _failed(self, exc: BaseException) -> None:
        line = " ".join(str(exc).split())[:300] or type(exc).__name__
        self.status.set("failed", f"keeping {self.status.serving}: {line}")
        self.log(f"backend upgrade failed, keeping {self.status.serving}: {line}")


def auto_upgrade(
    jobs: Sequence[UpgradeJob],
    adopt: Callable[[Mapping[str, ImageEncoderBackend], Mapping[str, AutoChoice]], None],
    *,
    device: str,
    dtype: str,
    precision: str,
    cache_dir: str | None,
    max_batch: int,
    say: Callable[[str], None] = LOG.info,
) -> BackgroundUpgrade:
    """The upgrade of backend 'auto' on a CPU: measure = choose_cpu on a copy of the module (the
    exporter never traces the module that serves frames), build = the cached winner."""
    from . import make_image_encoder

    def make(job: UpgradeJob, module: torch.nn.Module) -> ImageEncoderBackend:
        return make_image_encoder(
            "auto",
            module,
            model_id=job.model_id,
            device=device,
            dtype=dtype,
            precision=precision,
            cache_dir=cache_dir,
            max_batch=max_batch,
            progress=upgrade.say,
        )

    def measure(job: UpgradeJob) -> AutoChoice:
        choice = make(job, copy.deepcopy(job.module)).selection
        gc.collect()  # the candidates' sessions and the copy go before the winner is built
        return choice

    upgrade = BackgroundUpgrade(
        jobs,
        measure=measure,
        build=lambda job: make(job, job.module),
        adopt=adopt,
        keep=lambda choice: (choice.backend, choice.dtype) == ("torch", "float32"),
        say=say,
    )
    return upgrade


def release_heap() -> None:
    """Give freed weights back to the system (glibc keeps a freed heap otherwise)."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _wait_for_gate() -> None:
    """Test-only hold: with GATE_ENV naming a FIFO, block until a writer opens it and writes a
    byte or closes it."""
    gate = os.environ.get(GATE_ENV)
    if gate:
        with open(gate, "rb", buffering=0) as fifo:
            fifo.read(1)
