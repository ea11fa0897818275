"""Which image encoders a predictor starts with, and the background upgrade that replaces them.

With ``backend: auto`` on a CPU, ``upgrade: background`` and no decision cached for an encoder,
the predictor starts on torch float32 (ready as soon as the weights are loaded) and
``EncoderStarter.background`` returns the BackgroundUpgrade (backends/upgrade.py) that measures
auto's candidates and hands the winners to ``TreePredictor.adopt_encoders``. After the swap the
torch copy of a replaced image encoder is freed (the text towers stay), except OWL's when
adaptive region resolution has run: its buckets are exported from that module on first use.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from ..backends import AutoChoice, ImageEncoderBackend, TorchImageEncoder, make_image_encoder
from ..backends.upgrade import BackgroundUpgrade, UpgradeJob, auto_upgrade, cached_decision
from .region_resolution import RegionEncoders
from .settings import BACKEND_UPGRADES as UPGRADES

LOG = logging.getLogger(__name__)

INTERIM_REASON = "serving at once while auto measures in the background"


@dataclass(frozen=True)
class EncoderSet:
    """The image encoders a frame uses from its start to its end; replaced whole between frames
    (a backend upgrade), so no frame mixes encoders and the per-size cache goes with its set."""

    owl: ImageEncoderBackend
    clip: ImageEncoderBackend | None
    regions: RegionEncoders


class EncoderStarter:
    """Builds a predictor's image encoders: the asked-for backend, or torch for now when backend
    auto would first have to measure (upgrade 'background'); remembers what to upgrade."""

    def __init__(self, backend: str, upgrade: str, kwargs: Mapping) -> None:
        if upgrade not in UPGRADES:
            raise ValueError(f"upgrade must be one of {', '.join(UPGRADES)}, not {upgrade!r}")
        self.backend, self.kwargs = backend, dict(kwargs)
        self.background_wanted = (
            upgrade == "background"
            and backend == "auto"
            and torch.device(self.kwargs["device"]).type == "cpu"
        )
        self.jobs: list[UpgradeJob] = []

    def encoder(self, name: str, module, model_id: str, triton=None) -> ImageEncoderBackend:
        """The encoder to start with for one model."""
        kw = self.kwargs
        if self.background_wanted and not self.decided(module, model_id):
            encoder = TorchImageEncoder(module, device=kw["device"], dtype="float32")
            encoder.selection = AutoChoice("torch", "float32", INTERIM_REASON, {}, "interim")
            self.jobs.append(UpgradeJob(name, module, model_id))
            return encoder
        return make_image_encoder(self.backend, module, model_id=model_id, triton=triton, **kw)

    def decided(self, module, model_id: str) -> bool:
        kw = self.kwargs
        return (
            cached_decision(
                module,
                model_id=model_id,
                precision=kw["precision"],
                dtype=kw["dtype"],
                cache_dir=kw["cache_dir"],
                max_batch=kw["max_batch"],
            )
            is not None
        )

    def background(
        self, predictor, say: Callable[[str], None] = LOG.info
    ) -> BackgroundUpgrade | None:
        """The upgrade of the encoders started on torch (not started yet), None when none was."""
        if not self.jobs:
            return None
        ref = weakref.ref(predictor)  # a cleaned-up node's predictor must not live on in it

        def adopt(built: Mapping[str, ImageEncoderBackend], choices: Mapping) -> None:
            target = ref()
            if target is None:
                return
            for name in set(choices) - set(built):  # kept: what serves is now the measured choice
                kept = target.owl_encoder if name == "owl" else target.clip_encoder
                kept.selection = choices[name]
            if built:
                target.adopt_encoders(built, free=freeable(target, built))

        kw = self.kwargs
        upgrade = auto_upgrade(
            self.jobs,
            adopt,
            device=kw["device"],
            dtype=kw["dtype"],
            precision=kw["precision"],
            cache_dir=kw["cache_dir"],
            max_batch=kw["max_batch"],
            say=say,
        )
        self.jobs = []
        return upgrade


def freeable(predictor, built: Mapping[str, ImageEncoderBackend]) -> list[str]:
    """The replaced encoders whose torch module nothing needs: all, but OWL's when adaptive
    regions ran and the new encoder is a runtime one (it exports its buckets from the module)."""
    keep_owl = predictor.adaptive_seen and built.get("owl") is not None
    keep_owl = keep_owl and built["owl"].name != "torch"
    return [name for name in built if not (name == "owl" and keep_owl)]


def free_unused(predictor) -> list[str]:
    """Free the torch image encoders a runtime backend (ONNX Runtime, TensorRT) replaced from the
    start (a warm cache), by the same rule as after a swap; returns the names freed."""
    enc = predictor.encoders
    runtime = {
        name: encoder
        for name, encoder in (("owl", enc.owl), ("clip", enc.clip))
        if encoder is not None and encoder.name in ("onnxruntime", "tensorrt")
    }
    free = freeable(predictor, runtime)
    if free:
        predictor.adopt_encoders({}, free=free)
    return free


def start_upgrade(predictor, log: Callable[[str], None]) -> None:
    """Start a predictor's pending upgrade (torch serves meanwhile); call it from the thread
    whose priority the upgrade's normal-priority thread should have."""
    upgrade = predictor.upgrade
    if upgrade is not None and upgrade.status.state == "pending":
        upgrade.log = log
        upgrade.start()


def cancel_upgrade(predictor) -> None:
    """Adopt nothing more into this predictor (cleanup, shutdown)."""
    if predictor is not None and predictor.upgrade is not None:
        predictor.upgrade.cancel()


def upgrade_running(predictor) -> bool:
    """Whether this predictor's upgrade thread is still at work (an export, a measurement)."""
    upgrade = getattr(predictor, "upgrade", None)
    return upgrade is not None and upgrade.running()


def exit_if_upgrading(predictor, code: int) -> None:
    """End the process now with `code` when the upgrade's thread is still inside torch (an
    ONNX export): the interpreter's exit would abort under it ("terminate called without an
    active exception"). Called last by the node and serve; the export writes to a temporary
    directory, so nothing half-written is left in the cache."""
    cancel_upgrade(predictor)
    if upgrade_running(predictor):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
