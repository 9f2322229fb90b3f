"""Large arrays on 4 KiB pages.

numpy advises the kernel to back arrays of 4 MB and more with transparent huge pages. Faulting
those in is fast when the kernel has them ready and slow when it has not: on the benchmark VM a
52 MB label volume took 5 to 110 ms to fill in fresh processes, 16 ms steadily on 4 KiB pages
(Testing/benchmarks/bench_overlay.py notes). Whole-volume arrays that a decoder fills once are
therefore taken from a private anonymous memory map, which gets no such advice.
"""
from __future__ import annotations

import mmap
import os
from typing import Sequence

import numpy as np

#: Below this many bytes numpy's allocation is used as it is (it gives no advice there either).
SMALL_ARRAY_BYTES = 4 << 20


def zeros(shape: Sequence[int], dtype) -> np.ndarray:
    """A writable, C-contiguous, zero-filled array, on 4 KiB pages where the system allows."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < SMALL_ARRAY_BYTES or os.name != "posix":
        return np.zeros(shape, dtype)
    # Anonymous maps start zeroed; the array keeps the map alive and unmaps it when freed.
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(memory, dtype).reshape(shape)
