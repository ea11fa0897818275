"""Artefact cache for exported ONNX graphs and TensorRT engines.

Location: ``$ROS2_OWL_CACHE`` when set, else ``~/.cache/ros2_owl`` (random test models live
beside the artefacts in ``random-models/``). Layout: ``<root>/<backend>/<name>-<digest>.<ext>`` plus a manifest
``<name>-<digest>.<ext>.json`` holding the full key, the artefact's sha256 and size.

The digest hashes every key field (model id, revision/fingerprint, weights fingerprint, encoder,
input size, precision, batch profile, backend, runtime version, device), so changing any of them
produces a different file and an old artefact is never reused. At load the manifest key and
the artefact's sha256 are checked again: a mismatch is refused (``CacheError``) or, with
``on_invalid="rebuild"``, the stale files are deleted so the caller rebuilds them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

LOG = logging.getLogger(__name__)

CACHE_ENV = "ROS2_OWL_CACHE"
FORMAT_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")

OnInvalid = Literal["rebuild", "error"]


class CacheError(RuntimeError):
    """A cached artefact is stale, mismatched or corrupted (the message says which and where)."""


def default_cache_dir() -> Path:
    """Documented cache root: $ROS2_OWL_CACHE, else ~/.cache/ros2_owl."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ros2_owl"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Stream a file through sha256 so large engines need no full read into memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _hub_snapshot(model_id: str, revision: str | None) -> Path | None:
    """Snapshot folder of a hub model in the local HF cache (its name is the commit), if any."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        return None
    try:
        found = try_to_load_from_cache(model_id, "config.json", revision=revision)
    except Exception:  # invalid repo id strings raise validation errors
        return None
    if isinstance(found, str):
        return Path(found).parent
    return None


def model_fingerprint(model_id: str, revision: str | None = None) -> str:
    """Revision string for the key: a local dir's config + weight-file stats, or the hub commit."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        h = hashlib.sha256()
        config = path / "config.json"
        if config.is_file():
            h.update(config.read_bytes())
        for weights in sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES):
            st = weights.stat()
            h.update(f"{weights.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return "local:" + h.hexdigest()[:16]
    snapshot = _hub_snapshot(model_id, revision)
    if snapshot is not None:
        return "hub:" + snapshot.name
    return "hub:" + (revision or "unresolved")


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's weights (names, shapes, dtypes, raw bytes): exact and deterministic
    (~0.3 s for an OWL-ViT B/32 vision tower), so a different checkpoint never reuses a graph."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            if t.numel():
                raw = t.reshape(-1).contiguous().cpu().view(torch.uint8)
                h.update(raw.numpy().data)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ArtefactKey:
    """Everything an exported graph or built engine depends on; its digest names the file."""

    model_id: str
    revision: str
    encoder: str
    input_size: int
    precision: str
    min_batch: int
    max_batch: int
    backend: str
    runtime_version: str
    device: str = "cpu"
    weights: str = ""
    output_names: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in the manifest (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["output_names"] = list(self.output_names)
        d["extra"] = [list(kv) for kv in self.extra]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArtefactKey:
        """Inverse of to_dict; unknown keys are an error so a newer format is not misread."""
        data = dict(d)
        data["output_names"] = tuple(data.get("output_names", ()))
        data["extra"] = tuple(tuple(kv) for kv in data.get("extra", ()))
        return cls(**data)

    def digest(self) -> str:
        """Short stable hash of every field."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """Human-readable one-liner for messages and listings."""
        return (
            f"{self.model_id} [{self.revision}] {self.encoder} {self.input_size}px "
            f"{self.precision} batch {self.min_batch}..{self.max_batch} "
            f"{self.backend} {self.runtime_version} on {self.device}"
        )

    def differences(self, other: ArtefactKey) -> list[str]:
        """Names and values of the fields that differ, for a precise mismatch message."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {b.get(k)!r} != {a[k]!r}" for k in a if a[k] != b.get(k)]


def _slug(text: str, limit: int = 48) -> str:
    """File-name-safe short form of a model id or path."""
    name = text.rstrip("/").replace("\\", "/")
    if os.path.isabs(name) or name.startswith("~"):
        name = Path(name).name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-limit:] or "model"


@dataclass
class CacheEntry:
    """One artefact on disk with its manifest."""

    path: Path
    manifest_path: Path
    manifest: dict[str, Any] = field(default_factory=dict)


class ArtefactCache:
    """Stores artefacts atomically with a manifest; validates key and checksum at load."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def path_for(self, key: ArtefactKey, ext: str) -> Path:
        """Artefact path: the key digest is in the name, so any key change is a new file."""
        stem = f"{_slug(key.model_id)}-{key.encoder}-{key.input_size}px-{key.precision}"
        stem += f"-b{key.min_batch}-{key.max_batch}-{key.digest()}"
        return self.root / key.backend / f"{stem}.{ext.lstrip('.')}"

    @staticmethod
    def manifest_path(artefact: Path) -> Path:
        """Manifest file kept beside the artefact."""
        return artefact.with_name(artefact.name + ".json")

    def load(
        self, key: ArtefactKey, ext: str, on_invalid: OnInvalid = "rebuild"
    ) -> CacheEntry | None:
        """Valid cached artefact for key, None when absent (or removed for rebuild)."""
        path = self.path_for(key, ext)
        mpath = self.manifest_path(path)
        if not path.exists() and not mpath.exists():
            return None
        try:
            manifest = self._validate(key, path, mpath)
        except CacheError as err:
            if on_invalid == "error":
                raise
            LOG.warning("%s; deleting it and rebuilding", err)
            self.remove(path)
            return None
        return CacheEntry(path, mpath, manifest)

    def _validate(self, key: ArtefactKey, path: Path, mpath: Path) -> dict[str, Any]:
        """Raise CacheError naming the file and the reason when the entry cannot be trusted."""
        if not path.exists():
            raise CacheError(f"cached artefact {path} is missing (its manifest {mpath} exists)")
        if not mpath.exists():
            raise CacheError(f"cached artefact {path} has no manifest {mpath}: cannot verify it")
        try:
            manifest = json.loads(mpath.read_text())
            stored = ArtefactKey.from_dict(manifest["key"])
            expected_sha = manifest["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CacheError(f"manifest {mpath} is unreadable or incomplete: {err}") from err
        if stored != key:
            diff = "; ".join(key.differences(stored))
            raise CacheError(f"cached artefact {path} was built for a different key ({diff})")
        size = path.stat().st_size
        if manifest.get("size") is not None and size != manifest["size"]:
            raise CacheError(
                f"cached artefact {path} is corrupted: {size} bytes, manifest says "
                f"{manifest['size']}"
            )
        actual = sha256_file(path)
        if actual != expected_sha:
            raise CacheError(
                f"cached artefact {path} is corrupted: sha256 {actual[:12]}... does not match "
                f"the manifest's {str(expected_sha)[:12]}..."
            )
        return manifest

    def store(
        self,
        key: ArtefactKey,
        ext: str,
        write: Callable[[Path], None],
        info: Mapping[str, Any] | None = None,
    ) -> CacheEntry:
        """Create the artefact with write(tmp_path), then move it and its manifest into place."""
        path = self.path_for(key, ext)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=".build-", dir=path.parent))
        try:
            tmp = tmpdir / path.name
            write(tmp)
            if not tmp.is_file():
                raise CacheError(f"building {path.name} produced no file")
            manifest = {
                "key": key.to_dict(),
                "sha256": sha256_file(tmp),
                "size": tmp.stat().st_size,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "info": dict(info or {}),
            }
            tmp_manifest = tmpdir / (path.name + ".json")
            tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True))
            # Artefact first: a reader sees either no manifest (treated as absent/invalid) or both.
            os.replace(tmp, path)
            os.replace(tmp_manifest, self.manifest_path(path))
        finally:
            for leftover in tmpdir.iterdir():
                leftover.unlink()
            tmpdir.rmdir()
        return CacheEntry(path, self.manifest_path(path), manifest)

    def peek(self, key: ArtefactKey, ext: str) -> CacheEntry | None:
        """A valid artefact for key, read without locking or deleting anything (a read-only
        cache works); None when it is absent or not valid (the locked path then decides)."""
        path = self.path_for(key, ext)
        mpath = self.manifest_path(path)
        try:
            return CacheEntry(path, mpath, self._validate(key, path, mpath))
        except (CacheError, OSError):
            return None

    def load_or_build(
        self,
        key: ArtefactKey,
        ext: str,
        build: Callable[[], CacheEntry],
        *,
        force: bool = False,
        on_invalid: OnInvalid = "rebuild",
    ) -> tuple[CacheEntry, bool]:
        """(entry, built): a valid artefact is read without a lock; only a build takes the lock
        (and re-checks, since another process may have built it meanwhile)."""
        if not force:
            entry = self.peek(key, ext)
            if entry is not None:
                return entry, False
        with self.lock(key, ext):
            if force:
                self.remove(self.path_for(key, ext))
            entry = self.load(key, ext, on_invalid=on_invalid)
            if entry is not None:
                return entry, False
            return build(), True

    @contextlib.contextmanager
    def lock(self, key: ArtefactKey, ext: str) -> Iterator[None]:
        """Exclusive per-artefact lock: a second process waits for a build instead of repeating it."""
        path = self.path_for(key, ext)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115
        except OSError as err:
            raise CacheError(
                f"the artefact cache {self.root} is not writable ({err.strerror or err}) and "
                f"holds no valid {path.name}: build it where the cache is writable, or set "
                f"{CACHE_ENV} (or cache_dir) to a writable directory"
            ) from err
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def remove(self, artefact: Path) -> None:
        """Delete an artefact and its manifest (and external-data side files)."""
        for p in (artefact, self.manifest_path(artefact)):
            p.unlink(missing_ok=True)

    def entries(self, backend: str | None = None) -> Iterable[CacheEntry]:
        """Every manifest under the root (for listings and `build_engine --list`)."""
        if not self.root.exists():
            return []
        found = []
        pattern = f"{backend}/*.json" if backend else "*/*.json"
        for mpath in sorted(self.root.glob(pattern)):
            try:
                manifest = json.loads(mpath.read_text())
            except (OSError, ValueError):
                manifest = {}
            found.append(CacheEntry(mpath.with_name(mpath.name[: -len(".json")]), mpath, manifest))
        return found
