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


class CachedTextEncoder:
    """Label checks and cached text embeddings for a model with a tokenizer and a token limit.

    Subclasses set `max_text_tokens` and `text_model_name`, create `self.text_cache` and
    implement `_run_text`.
    """

    max_text_tokens: int
    text_model_name: str
    tokenizer: object
    text_cache: TextEmbeddingCache

    def check_label(self, text: str) -> None:
        """Raise LabelTooLongError when `text` does not fit the text encoder's context."""
        from . import LabelTooLongError

        count = len(self.tokenizer(text, truncation=False)["input_ids"])
        if count > self.max_text_tokens:
            raise LabelTooLongError(text, count, self.max_text_tokens, self.text_model_name)

    def encode_text(self, labels: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings [N, D]; only labels not seen before run the encoder."""
        return self.text_cache.get(labels)

    @property
    def labels_encoded(self) -> int:
        """Texts run through the text encoder so far (cache misses)."""
        return self.text_cache.labels_encoded
