"""The newest-item slot every hand-over between threads uses: frames waiting for the model (node,
`serve`'s source), results waiting to be drawn, the page's newest frame per camera."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["NewestSlots"]

T = TypeVar("T")


class NewestSlots(Generic[T]):
    """One slot per key: `put` replaces an untaken item (counted in `dropped`), `take` waits for
    the item that has waited longest, so keys (cameras) share the taker fairly."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: dict[Hashable, tuple[float, T]] = {}
        self._closed = False
        self.dropped = 0

    def put(self, key: Hashable, item: T, when: float | None = None) -> bool:
        """Store `item` as `key`'s newest (`when`: its arrival, default now); True when it
        replaced one nobody took."""
        with self._cond:
            replaced = key in self._slots
            self.dropped += replaced
            self._slots[key] = (time.monotonic() if when is None else when, item)
            self._cond.notify()
            return replaced

    def peek(self, key: Hashable) -> T | None:
        """`key`'s newest item without taking it (readers that show, not consume)."""
        with self._cond:
            entry = self._slots.get(key)
            return None if entry is None else entry[1]

    def take(self, timeout: float | None = None) -> T | None:
        """The longest-waiting item; None on timeout or once closed and empty."""
        items = self.take_batch(1, timeout)
        return items[0] if items else None

    def take_batch(self, limit: int, timeout: float | None = None) -> list[T]:
        """Up to `limit` items, longest waiting first, one per key (waits for the first). A key
        left out is among the newest, so it is first in line next time."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._slots or self._closed, timeout):
                return []
            order = sorted(self._slots, key=lambda k: self._slots[k][0])[: max(1, limit)]
            return [self._slots.pop(k)[1] for k in order]

    def close(self, discard: bool = True) -> None:
        """Wake every taker; `discard` drops what waits (else takers get it first)."""
        with self._cond:
            self._closed = True
            if discard:
                self._slots.clear()
            self._cond.notify_all()
