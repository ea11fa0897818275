"""Reference-image (image-guided) queries: embed an example region, detect similar objects.

The embedding is chosen the way transformers' ``image_guided_detection`` does:

* OWL-ViT: among the reference image's predicted boxes, take those whose IoU with the query box
  is within 20% of the best IoU (generalised IoU when nothing overlaps; transformers' ``0.8 x
  best`` cut selects nothing when that best is negative, so every box inside the image
  gets a patch here) and keep the class
  embedding of the one least similar to the image's mean embedding. With no box, the query box
  is the whole (stretched) image, exactly as transformers does.
* OWLv2: with no box, the box with the highest objectness (transformers' rule); with a box, the
  same IoU candidates as OWL-ViT, and among them the highest objectness.

The selection is OwlModel.reference_patch (models/owl.py, next to decoding); this module keeps
the registered queries. Queries are saved as JSON (floats round-trip exactly) so a robot keeps them across restarts.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from .prompt_parser import QUERY_NAME

log = logging.getLogger("ros2_owl.queries")
FILE_FORMAT = "ros2_owl.queries"
FILE_VERSION = 1


@dataclass(frozen=True)
class ReferenceQuery:
    """One registered query: its class embedding and where it came from."""

    name: str
    embedding: torch.Tensor  # [D] float32 on CPU, class-head space (not normalised)
    model_id: str
    model_kind: str
    image_size: tuple[int, int]  # (width, height) of the reference image
    box: tuple[float, float, float, float] | None  # reference box in pixels; None = whole image
    patch_index: int


class QueryStore:
    """Thread-safe name -> ReferenceQuery map with JSON save/load."""

    def __init__(self) -> None:
        self._queries: dict[str, ReferenceQuery] = {}
        self._lock = threading.Lock()

    def add(self, query: ReferenceQuery) -> None:
        """Register (or replace) a query under its name."""
        check_query_name(query.name)
        with self._lock:
            self._queries[query.name] = query

    def get(self, name: str) -> ReferenceQuery:
        """The query called `name`; KeyError listing the known names otherwise."""
        with self._lock:
            if name not in self._queries:
                known = ", ".join(sorted(self._queries)) or "none registered"
                raise KeyError(f"unknown reference query ${name} (known: {known})")
            return self._queries[name]

    def remove(self, name: str) -> None:
        with self._lock:
            self._queries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._queries))

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._queries

    def __len__(self) -> int:
        with self._lock:
            return len(self._queries)

    def save(self, path: str | os.PathLike) -> None:
        """Write all queries to a JSON file atomically."""
        with self._lock:
            entries = [
                {
                    "name": q.name,
                    "model_id": q.model_id,
                    "model_kind": q.model_kind,
                    "image_size": list(q.image_size),
                    "box": None if q.box is None else list(q.box),
                    "patch_index": q.patch_index,
                    "embedding_dim": int(q.embedding.numel()),
                    "embedding": [float(v) for v in q.embedding.tolist()],
                }
                for q in self._queries.values()
            ]
        doc = {"format": FILE_FORMAT, "version": FILE_VERSION, "queries": entries}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)

    def load(
        self, path: str | os.PathLike, *, embedding_dim: int, model_id: str | None = None
    ) -> tuple[str, ...]:
        """Add the queries of a saved file; ValueError for a bad file or a wrong model size."""
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as error:
            raise ValueError(f"cannot read query file {str(path)!r}: {error}") from error
        except json.JSONDecodeError as error:
            raise ValueError(f"query file {str(path)!r} is not valid JSON: {error}") from error
        if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
            raise ValueError(f"{str(path)!r} is not a ros2_owl query file")
        if doc.get("version") != FILE_VERSION:
            raise ValueError(
                f"query file {str(path)!r} has version {doc.get('version')!r}; "
                f"this ros2_owl reads version {FILE_VERSION}"
            )
        loaded = []
        for entry in doc.get("queries", []):
            try:
                name = check_query_name(entry["name"])
                emb = torch.tensor(entry["embedding"], dtype=torch.float32)
                box = entry.get("box")
                query = ReferenceQuery(
                    name=name,
                    embedding=emb,
                    model_id=str(entry.get("model_id", "")),
                    model_kind=str(entry.get("model_kind", "")),
                    image_size=tuple(int(v) for v in entry["image_size"]),
                    box=None if box is None else tuple(float(v) for v in box),
                    patch_index=int(entry.get("patch_index", -1)),
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"query file {str(path)!r} has a malformed entry: {error}"
                ) from error
            if emb.ndim != 1 or emb.numel() != embedding_dim:
                raise ValueError(
                    f"query ${name} in {str(path)!r} has a {emb.numel()}-dim embedding but the "
                    f"loaded detection model uses {embedding_dim}: it was made with another model"
                )
            if model_id is not None and query.model_id and query.model_id != model_id:
                log.warning(
                    "query $%s was registered with model %s, now using %s; results may differ",
                    name,
                    query.model_id,
                    model_id,
                )
            loaded.append(query)
        for query in loaded:
            self.add(query)
        return tuple(q.name for q in loaded)


def check_query_name(name: str) -> str:
    """Names are what the prompt accepts after `$`: letters, digits, '_' and '-'."""
    if not isinstance(name, str) or not QUERY_NAME.fullmatch(name):
        raise ValueError(
            f"invalid query name {name!r:.80}: use letters, digits, '_' or '-' (used as $name)"
        )
    return name
