"""Give a freed module's weights back when they live in a memory-mapped checkpoint.

transformers loads safetensors checkpoints by mapping the whole file: each weight is a view
into that one private mapping, so freeing some modules (the vision tower once a runtime backend
encodes images) frees no memory while other weights (the text tower) keep the mapping. Their
pages can be dropped with madvise(MADV_DONTNEED): a private file mapping then reads the file
again on a later access, so even a page still in use would come back with the same bytes.
Only whole pages inside each weight and inside a mapped .safetensors file are dropped.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Iterable

import torch

MADV_DONTNEED = 4


def _checkpoint_mappings() -> list[tuple[int, int]]:
    """Address ranges of the .safetensors files this process has mapped."""
    ranges = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                if len(parts) >= 6 and parts[5].endswith(".safetensors"):
                    start, end = (int(x, 16) for x in parts[0].split("-"))
                    ranges.append((start, end))
    except OSError:  # not Linux
        return []
    return ranges


def drop_weight_pages(tensors: Iterable[torch.Tensor]) -> int:
    """madvise(DONTNEED) the whole pages of these CPU tensors that lie in a mapped checkpoint;
    returns the bytes dropped (0 where nothing is mapped or madvise is not available)."""
    ranges = _checkpoint_mappings()
    if not ranges:
        return 0
    try:
        madvise = ctypes.CDLL("libc.so.6", use_errno=True).madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    page, dropped = mmap.PAGESIZE, 0
    for tensor in tensors:
        if tensor.device.type != "cpu" or not tensor.numel():
            continue
        first = tensor.data_ptr()
        start = -(-first // page) * page
        end = (first + tensor.numel() * tensor.element_size()) // page * page
        inside = any(lo <= start and end <= hi for lo, hi in ranges)
        if end > start and inside and madvise(start, end - start, MADV_DONTNEED) == 0:
            dropped += end - start
    return dropped
