"""runtime/slots.py: one slot per key keeps the newest item, takers get the longest waiting
first (in batches one per key), close wakes them (dropping or keeping what waits)."""

from __future__ import annotations

import threading

from ros2_owl.runtime.slots import NewestSlots


def test_the_newest_item_per_key_is_kept_and_the_rest_counted():
    slots = NewestSlots()
    assert not slots.put("a", "a1", when=1.0)
    slots.put("b", "b1", when=2.0)
    assert slots.put("a", "a2", when=3.0)  # replaces a1
    assert slots.dropped == 1 and slots.peek("a") == "a2"
    assert slots.take(0) == "b1"  # the longest waiting first
    assert slots.take(0) == "a2"
    assert slots.take(0.01) is None


def test_a_taker_waits_for_a_put_and_close_wakes_it():
    slots = NewestSlots()
    putter = threading.Thread(target=lambda: slots.put(0, "late"))
    putter.start()
    assert slots.take(10) == "late"
    putter.join()
    got = []
    worker = threading.Thread(target=lambda: got.append(slots.take(10)))
    worker.start()
    slots.close()
    worker.join(10)
    assert got == [None]


def test_batches_take_the_longest_waiting_keys_first():
    slots = NewestSlots()
    slots.put(2, "c1", when=1.0)
    slots.put(0, "a1", when=2.0)
    slots.put(1, "b1", when=3.0)
    slots.put(0, "a2", when=4.0)  # replaces a1: a key is in a batch once
    assert slots.take_batch(2, 0) == ["c1", "b1"]  # in arrival order
    slots.put(2, "c2", when=5.0)
    # the key left out of the last batch goes first: nobody waits more than one batch
    assert slots.take_batch(2, 0) == ["a2", "c2"]
    assert slots.take_batch(2, 0.01) == []
    slots.close()
    assert slots.take_batch(2, 0) == []


def test_close_can_keep_what_waits_for_the_taker():
    slots = NewestSlots()
    slots.put(0, "last")
    slots.close(discard=False)
    assert slots.take(10) == "last"
    assert slots.take(10) is None  # closed and empty: no wait
