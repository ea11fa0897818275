"""An LRU cache of text embeddings, so a prompt's labels are encoded once, not per frame."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch


class TextEmbeddingCache:
    """Label text -> normalised embedding; only misses run the (batched) text encoder."""

    def __init__(
        self,
        encode: Callable[[list[str]], torch.Tensor],
        check: Callable[[str], None],
        embed_dim: int,
        device: torch.device,
        capacity: int = 4096,
    ):
        self._encode = encode
        self._check = check
        self._embed_dim = embed_dim
        self._device = device
        self._capacity = capacity
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.labels_encoded = 0  # texts run through the encoder (cache misses), for tests
        self.encode_calls = 0

    def get(self, labels: Sequence[str]) -> torch.Tensor:
        """Embeddings [N, D] in the order of `labels`; every label is checked before any runs."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in labels if t not in self._entries))
            if missing:
                for text in missing:
                    self._check(text)
                self.encode_calls += 1
                self.labels_encoded += len(missing)
                for text, emb in zip(missing, self._encode(missing), strict=True):
                    self._entries[text] = emb
            for text in labels:
                self._entries.move_to_end(text)
            out = torch.stack([self._entries[t] for t in labels]) if labels else None
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        if out is None:
            return torch.zeros(0, self._embed_dim, device=self._device)
        return out
