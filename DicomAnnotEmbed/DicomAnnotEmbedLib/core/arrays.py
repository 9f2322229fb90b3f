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


def prefer_small_pages() -> None:
    """Stop numpy advising huge pages for this process's large arrays (numpy >= 1.20; else nothing).

    For one-shot command-line processes: every whole-volume array (the CT read for statistics, the
    label layers, their temporaries) is faulted in once, and on the benchmark VM transparent huge
    pages made that 0.01-0.46 s for a 100 MB volume (the kernel had them ready or not), 4 KiB pages
    a steady 0.05 s. ``sr export`` of case C: 0.5-1.4 s of system time with numpy's advice, 0.5 s
    without (Testing/benchmarks/bench_sr.py notes). Not called for library use (e.g. in Slicer),
    where the process and its memory are the host's."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        try:
            from numpy.core.multiarray import _set_madvise_hugepage
        except ImportError:
            return
    _set_madvise_hugepage(False)


def zeros(shape: Sequence[int], dtype) -> np.ndarray:
    """A writable, C-contiguous, zero-filled array, on 4 KiB pages where the system allows."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < SMALL_ARRAY_BYTES or os.name != "posix":
        return np.zeros(shape, dtype)
    # Anonymous maps start zeroed; the array keeps the map alive and unmaps it when freed.
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(memory, dtype).reshape(shape)


def label_extents(layer: np.ndarray, count: int, slab: int = 4):
    """Bounding box of every label value 1..count of a (K, J, I) label layer, in one pass over the
    voxels (as ``scipy.ndimage.find_objects``, without importing scipy: 0.27 s CPU per process).

    Returns ``(lo, hi)``, each ``(count + 1, 3)`` int64 in (i, j, k) order; ``hi`` is -1 for an absent
    value. Every voxel of a value lies on a run of that value along a row (the I axis), and every
    run starts at the row's first voxel or after a change of value, and ends at the row's last
    voxel or before a change: those run ends hold the value's lowest and highest i, and every row
    (j, k) the value is on. So only the changes along I are looked at, slab by slab (bounded
    temporaries: 4 slices of 512x512 make a 1 MB mask of changes, as fast as 16 slices and 3 MB
    less at the peak of ``overlay import``). It looked at the changes along all three axes: 0.11 s
    for case C, this 0.04 s (Testing/benchmarks/bench_startup.py notes).
    """
    lo = np.full((count + 1, 3), np.iinfo(np.int64).max, np.int64)
    hi = np.full((count + 1, 3), -1, np.int64)
    depth, rows, columns = layer.shape
    if not layer.size:
        return lo, hi
    for k0 in range(0, depth, slab):
        block = layer[k0:k0 + slab]
        flat = block.reshape(-1)
        row, i = np.divmod(np.flatnonzero(block[:, :, :-1] != block[:, :, 1:]), columns - 1)
        ends = row * columns + i  # the last voxel of a run before a change (flat index in the slab)
        starts = np.arange(0, flat.size, columns)  # the first voxel of every row
        at = np.concatenate((ends, ends + 1, starts, starts + columns - 1))  # + first of the next run, last of a row
        values = flat[at]
        keep = (values != 0) & (values <= count)
        at, values = at[keep], values[keep]
        k, at = np.divmod(at, rows * columns)
        j, i = np.divmod(at, columns)
        for column, coords in enumerate((i, j, k + k0)):
            np.minimum.at(lo[:, column], values, coords)
            np.maximum.at(hi[:, column], values, coords)
    return lo, hi


def slice_label_counts(layer: np.ndarray, bins: int) -> np.ndarray:
    """Voxels of each value 0..bins-1 on each slice of a (K, J, I) integer label layer: (K, bins)
    int64, as one ``np.bincount`` per slice gives them (values >= bins are not counted).

    Labels usually cover a small part of each slice: the per-slice maxima along rows and columns
    (two fast passes) give the box of non-zero voxels on each slice, and only that box is counted;
    slices without labels are skipped. Value 0 is what the rest of the slice holds. About half the
    time of the plain per-slice bincount on the CSV benchmark's layers, which are counted several
    times per ``csv import`` (SEG and SR exports)."""
    slices, rows, columns = layer.shape
    table = np.zeros((slices, bins), dtype=np.int64)
    if bins < 1 or layer.size == 0:
        return table
    if layer.dtype.kind != "u":  # signed or bool: plain bincounts (a negative value raises, as there)
        for k in range(slices):
            table[k] = np.bincount(layer[k].ravel(), minlength=bins)[:bins]
        return table
    row_max, column_max = layer.max(axis=2), layer.max(axis=1)  # (K, J), (K, I)
    for k in np.flatnonzero(row_max.any(axis=1)):
        used_rows, used_columns = np.flatnonzero(row_max[k]), np.flatnonzero(column_max[k])
        box = layer[k, used_rows[0]:used_rows[-1] + 1, used_columns[0]:used_columns[-1] + 1]
        table[k] = np.bincount(box.ravel(), minlength=bins)[:bins]
    table[:, 0] = rows * columns - table[:, 1:].sum(axis=1) - _beyond(layer, bins, row_max)
    return table


def _beyond(layer: np.ndarray, bins: int, row_max: np.ndarray) -> np.ndarray:
    """Per slice, the voxels holding a value >= bins (not counted, and not background either)."""
    beyond = np.zeros(layer.shape[0], dtype=np.int64)
    for k in np.flatnonzero(row_max.max(axis=1) >= bins):
        beyond[k] = np.count_nonzero(layer[k] >= bins)
    return beyond


def _run_starts(flat: np.ndarray, period: int) -> np.ndarray:
    """Flat indices of the first voxel of every run of equal values of ``flat``, and of every
    multiple of ``period`` (the first voxel of each slice, where a run may start without a change)."""
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    return np.concatenate((np.arange(0, flat.size, period), changes))


def slice_label_presence(layer: np.ndarray, bins: int, slab: int = 4) -> np.ndarray:
    """Which values 0..bins-1 occur on each slice of a (K, J, I) integer label layer: (K, bins)
    bool, ``slice_label_counts(layer, bins) > 0`` without counting (values >= bins are ignored).

    Every value of a slice is the value of some run of equal voxels, so only the first voxel of
    each run is looked at (:func:`_run_starts`). Case C of bench_seg.py (512x512x200, 100 labels,
    ~490,000 changes of value): 0.018 s against 0.060 s for the per-slice bincounts, which
    convert every voxel to an int64 index. Slabs of 4 slices keep the temporaries at ~1 MB."""
    slices = layer.shape[0]
    table = np.zeros((slices, max(bins, 0)), dtype=bool)
    if bins < 1 or layer.size == 0:
        return table
    if layer.dtype.kind != "u":  # signed or bool: the counts' rules (a negative value raises there)
        return slice_label_counts(layer, bins) > 0
    per_slice = layer[0].size
    for k0 in range(0, slices, slab):
        flat = layer[k0:k0 + slab].reshape(-1)
        at = _run_starts(flat, per_slice)
        values = flat[at]
        keep = values < bins
        table[k0 + at[keep] // per_slice, values[keep]] = True
    return table


def present_values(labels: np.ndarray, slab: int = 4) -> np.ndarray:
    """The distinct non-zero values of an integer label array, ascending (in its dtype): the
    values ``model.present_labels`` finds, from the first voxel of each run of equal values
    (:func:`_run_starts`) instead of a bincount of every voxel: 0.017 s instead of 0.065 s on
    bench_seg.py's case C. Other arrays (float, 0-d, 1-d): ``np.unique``."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biu" or labels.ndim < 2 or labels.size == 0:
        values = np.unique(labels)
        return values[values != 0]
    planes = labels.reshape((-1,) + labels.shape[-2:])
    per_plane = planes[0].size
    found = [np.unique(flat[_run_starts(flat, per_plane)])
             for flat in (planes[k0:k0 + slab].reshape(-1) for k0 in range(0, planes.shape[0], slab))]
    values = np.unique(np.concatenate(found))
    return values[values != 0]
