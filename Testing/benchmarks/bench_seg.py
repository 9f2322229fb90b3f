#!/usr/bin/env python
"""Benchmark: DICOM SEG export/import against highdicom, dcmqi and SimpleITK on a realistic CT grid.

Run by hand (it is not a pytest test and asserts no timings; it asserts that every file it
writes reads back exactly)::

    python Testing/benchmarks/bench_seg.py                        # everything, 3 repeats
    python Testing/benchmarks/bench_seg.py --cases C --only ours   # our variants on case C
    python Testing/benchmarks/bench_seg.py --profile --no-bench    # cProfile of our export/import, case C
    python Testing/benchmarks/bench_seg.py --workdir /tmp/dae-bench-seg --repeats 5
    python Testing/benchmarks/bench_seg.py --snapshot   # children run on a copy of the library

The report (Markdown) goes to stdout, progress to stderr.

Method (as in /work/shared/benchmarks/seg-baseline.md)
-----------------------------------------------------
* Data, generated once into ``--workdir`` (reused while :data:`DATA_VERSION` and the parameters
  match its ``manifest.json``): a synthetic CT series 512 x 512 x 200 int16, 0.7 mm pixels,
  1.25 mm slices, axial, 200 single-frame files written by
  :func:`DicomAnnotEmbedLib.dicom.dicomize.dicomize_array`; and uint8 label volumes on the same grid,
  deterministic (seeded):

  - case A: 1 segment, a 30 mm sphere (24 non-empty frames);
  - case B: 20 non-overlapping blobs, 11.6 % of the volume (~1300 non-empty frames);
  - case C: 100 non-overlapping blobs, 30.2 % of the volume (~4930 non-empty frames;
    TotalSegmentator-like).

  Blobs are ellipsoids with log-uniform sizes, drawn largest first; a voxel already taken keeps
  its label, so segments never overlap (each blob's centre is a free voxel, so none is empty).
  The size scale and the z elongation of each case were tuned once so that the fraction of the
  volume and the number of non-empty (segment, slice) frames match the baseline's cases; the
  script prints what it generated. Labels are 1..N, so segment numbers equal label values.
  For dcmqi the inputs are prepared with the data (untimed): an uncompressed ``.nrrd`` label map
  and a dcmqi metadata JSON (:func:`DicomAnnotEmbedLib.dicom.dcmqi_metadata.write_dcmqi_metadata`).
* Write = label array + already-loaded CT headers in memory -> file. Loading the headers and
  the label array is not timed; building our ``Segmentation`` and highdicom's segment
  descriptions is. dcmqi is timed as its whole command line (it reads the ``.nrrd`` and the
  200 CT files itself). Read = file -> full label volume on the CT grid (ours: ``import_seg``
  with the series already loaded, then ``segmentation.layers[0]``; highdicom: ``segread`` +
  ``get_pixels_by_source_instance(all CT instances, combine_segments=True)``; dcmqi: the whole
  ``segimage2itkimage --mergeSegments`` command, which writes a ``.nrrd``; SimpleITK: ``ReadImage``
  + ``GetArrayFromImage``).
* Every measurement runs in a fresh Python process (highdicom has one-time set-up, which falls
  inside the clock of the first call, for highdicom and for our export alike). The child imports
  its modules and loads its inputs first, then times only the work. Each repeat is a pair: a
  write child, then a read child on the file that write produced; the read child compares the
  label volume with the input exactly (after taking its peak RSS), so every written file is
  verified. Repeats run round-robin over cases and variants (repeat 1 of everything, then
  repeat 2, ...), so that load from other users spreads over all variants. Reported: median
  seconds, median file size in 10^6 bytes, and the largest peak RSS over the repeats in 10^6
  bytes: the child's VmHWM (interpreter + imports + headers + input + work). Linux carries
  ``ru_maxrss`` over fork + exec, so a Python child's own ``getrusage`` could report the
  parent's peak; VmHWM cannot. For dcmqi (a C++ program) it is ``getrusage(RUSAGE_CHILDREN)``
  of the small Python launcher after the command (it inherits at most the launcher's ~40 MB).
* Page cache warm (the inputs are read once before the runs; the read child reads a file just
  written); nothing is fsync'ed.
* Our variants: LABELMAP x {none, jpegls, rle}, BINARY x {none, jpeg2000 (cases A, B only: it
  is slow)}, FRACTIONAL jpegls (case B). Peers: highdicom 0.28 with its own defaults (BINARY
  uncompressed) and LABELMAP JPEG-LS; dcmqi 1.5.7 binary and ``--segmentationType labelmap``;
  SimpleITK ``.nii.gz`` and ``.seg.nrrd`` (gzip) as the non-DICOM floor; numpy ``.npy``.
  FRACTIONAL is exported from the same labels (no fractional values: frames hold 0 or 255).
* ``--snapshot`` copies DicomAnnotEmbedLib into the workdir and runs the children on the copy,
  so that edits to the shared tree during a long run do not mix versions in one table; the
  report names the library used (git blob ids of seg.py and model.py).

Targets (project issue), case C: LABELMAP export <= 2 x the ``.nii.gz`` write time, file <= 1.5 x
the ``.nii.gz`` size, import <= 3 x the ``.nii.gz`` read time; BINARY export <= 1.5 s, import
<= 1.2 s, peak RSS <= half of highdicom BINARY's (write and read).

Notes (2-core AMD EPYC VM shared with other engineers' jobs: figures are indicative)
------------------------------------------------------------------------------------
First full run, 2026-11-21, ``--snapshot --profile``, median of 3; seg.py as committed in 345bd13
(blob c7e2f34171). Python 3.11.7, pydicom 3.0.2, highdicom 0.28.2, dcmqi 1.5.7, SimpleITK 2.5.7.
Our times spread by up to 2x between repeats (load from other jobs); the peers' less.

Case C (100 segments), write / read s, MB, peak RSS MB w/r:

* ours LABELMAP JPEG-LS 0.83 / 0.19 s, 0.91 MB, 262 / 149; uncompressed 0.56 / 0.20 s;
  RLE 1.57 / 0.27 s, 1.66 MB. ours BINARY 0.96 / 0.64 s, 164 MB, 262 / 318.
* highdicom BINARY 5.12 / 3.42 s, 750 / 455; LABELMAP JPEG-LS 0.60 / 0.71 s, 0.91 MB.
  dcmqi binary 5.45 / 5.91 s; labelmap 1.26 / 0.47 s (52.6 MB: it does not compress).
  .nii.gz 0.18 / 0.066 s, 0.76 MB; .seg.nrrd 0.09 / 0.05 s, 1.32 MB.
* Targets: LABELMAP JPEG-LS export 4.6 x .nii.gz write (MISS, <= 2 x), file 1.20 x (PASS),
  import 2.8 x .nii.gz read (PASS, <= 3 x). BINARY export 0.96 s (PASS), import 0.64 s
  (PASS), peak RSS 0.35 x highdicom's on export (PASS) and 0.70 x on import (MISS, <= 0.5 x).
* FRACTIONAL (case B) export: 66 to 111 s and 1.67 GB (see below); import 1.1 s.

What the profiles (case C, fresh process, imports and headers loaded before) show:

* Export, both types: about 0.25 s of it is highdicom's one-time set-up (``json`` loading the
  standard's module/attribute tables in ``get_module_attribute_map``, under
  ``is_attribute_in_iod``), paid in every new process by the one-plane template; writing the
  template header with pydicom 0.12 to 0.14 s. This set-up alone is ~1.4 x the .nii.gz write,
  so the 2 x target needs the template cached or built without highdicom's IOD checks.
* Export: ``present_labels`` (Segmentation.from_label_map) and ``slice_voxel_counts``
  (export_seg) each bincount every slice (0.065 s each): the same per-slice counts twice.
  BINARY: ``frame_pixels`` 0.07 s (4927 plane comparisons), ``_write_native`` 0.23 s
  (packbits, np.stack of 8 frames, 833 writes). LABELMAP JPEG-LS: CharLS 0.06 s for 201 frames
  through highdicom/pydicom's encoder (0.08 s).
* LABELMAP always writes one frame per slice, empty ones included: case A 0.155 MB against
  highdicom's 0.063 MB (JPEG-LS) and 0.97 MB with RLE.
* RLE export is slow (1.1 to 1.6 s; pydicom's encoder) and its file is 2.2 x the .nii.gz.
* BINARY import (0.90 s under cProfile): per-frame items parsed from raw bytes 0.24 s
  (``dicom_raw._parse_dataset``, 24630 items); ``_map_frames`` evaluates
  ``series.is_multiframe`` (a scan of 200 headers) once per slice: 40,000 ``header_value``
  calls, 0.11 s (same in LABELMAP import); ``_free_layer`` overlap checks 0.09 s, though the
  file says SegmentsOverlap NO; dcmread of the whole 164 MB file 0.08 s. Peak RSS 318 MB =
  ~91 MB start + the whole PixelData (164 MB) + the label layer (52 MB): to reach half of
  highdicom's (228 MB) the frames must be read without holding all the pixel data.
  (2026-12-05: the pixel data is mapped from the file, the per-frame values walked from the raw
  bytes, frames unpacked and compared in the box of their set pixels: 0.54 -> 0.25 s CPU in a
  fresh process; bench_startup.py notes, "SEG decoding".)
* LABELMAP import (0.38 s under cProfile): ``_segments_of`` 0.14 s (pydicom element access for
  100 segment items), ``is_multiframe`` 0.12 s, ``present_labels`` 0.07 s; decoding 200
  JPEG-LS frames with CharLS directly only 0.02 s.
* FRACTIONAL export: ``self._fraction_cache.setdefault(segment.id,
  self.segmentation.fraction_slices(segment))`` evaluates ``fraction_slices`` (a whole-volume
  comparison) for every frame (1303 calls for case B), and the cache keeps every segment's
  float32 planes (1303 x 1 MB). Frames come segment by segment, so one segment's planes at a
  time would do.

Command start-up (issue 14, "Speed where users wait now"; bench_startup.py), 2026-12-04
-----------------------------------------------------------------------------------------
Whole commands in fresh processes, case C LABELMAP, against dcmqi on the same inputs; 3 rounds,
interleaved, the version before these changes (d0cdecf, run through PYTHONPATH) in the same
rounds; medians of child CPU (user + sys; wall time mostly measured the other users), peak RSS the
largest ru_maxrss. Final run, load average 14.4 to 21.6 on the 2 cores (an earlier run at 10.8 to
16.3, before the last change, gave export 2.47 -> 2.05 s, dcmqi 1.30 s):

======================================  =========  =========  ===========  =====================
command                                 before     after      dcmqi        after / dcmqi (target 1.0)
======================================  =========  =========  ===========  =====================
seg export --type labelmap (JPEG-LS)    2.75 s     2.30 s     1.38 s       1.67 x CPU (MISS; was 1.99 x)
seg import --series -> .seg.nrrd        5.45 s     1.08 s     0.48 s       2.25 x (was 11.4 x)
seg import (own grid, as dcmqi)         5.07 s     0.93 s     0.48 s       1.94 x CPU (MISS; was 10.6 x)
peak RSS export / import                458 / 167  403 / 165  302 / 177    1.33 x / 0.93 x (<= 1.5: PASS)
======================================  =========  =========  ===========  =====================

Profiles (cProfile and -X importtime of the commands; CPU figures from fresh processes):

* Import was mostly writing the .seg.nrrd: pynrrd's default gzip level 9 (2.05 s CPU for the 52 MB
  layer) and ``segio._extent`` comparing the whole layer with every segment's value (100 x 52 MB,
  2.5 s). Now level 2 (``segio.SEG_NRRD_GZIP_LEVEL``, ITK's default, what SimpleITK and dcmqi
  write: 0.08 s, 1.30 MB instead of 0.68 MB; level 6 would be 0.27 s and 0.82 MB) and every
  extent from one pass (``core.arrays.label_extents``: runs of equal values along each axis,
  0.11 to 0.14 s; scipy.ndimage.find_objects takes 0.13 s but importing it 0.27 s CPU).
* Parsing the command line imported the RTSTRUCT decoder and so pydicom (cli/rtstruct.py reads
  two constants): ``encodings.rtstruct`` and ``api`` now re-export lazily; ``seg export --help``
  0.50 -> 0.19 s CPU. The seg commands need numpy + pydicom anyway (0.36 s CPU to import: 0.14 s
  of it is numpy); pydicom also imports requests and tqdm, ~0.1 s, only for its test-data
  downloader: ``cli._import_pydicom`` keeps them out of a command's process.
* Export: np.unique of the int16 .nrrd label map (0.34 s CPU) -> slice-by-slice bincount, as for
  uint8/uint16 already.
* Left (why target 1 is missed): fresh-process floor numpy + pydicom 0.36 s CPU (dcmqi, C++, starts
  in ~0.05 s); export: highdicom's import 0.2 s and its module-attribute table (a 22.6 MB JSON,
  0.21 s CPU to parse; a pickle of it loads no faster, 0.25 s) for the one-plane template, loading
  200 CT headers ~0.2 s, pydicom writing the header ~0.12 s; import: decoding 0.2 to 0.3 s,
  extents + gzip 0.26 s. Reaching dcmqi needs the template built without highdicom and the
  command's Python work under ~0.1 s.
* Target 2 (LABELMAP JPEG-LS export in process, warm, <= 0.5 x highdicom's constructor + save_as for
  the same labels and headers; 5 interleaved rounds in one process, median CPU, load ~16): ours
  (from_label_map + export_seg) 0.336 s, highdicom 0.344 s: 0.98 x, not reached, nothing changed
  there. Profile: slice_voxel_counts 0.065 s after present_labels' 0.065 s (the same per-slice
  bincounts; caching them on the Segmentation was not done: its layer can be the caller's array,
  which the caller may change), CharLS 0.06 s (highdicom pays it too), pydicom writing the
  ~2,950-element header ~0.12 s.

LABELMAP export in process, warm (target 2: <= 0.5 x highdicom), 2026-12-05
-------------------------------------------------------------------------
``--warm-labelmap 5``, case C, three alternations of three processes in one run: the library before
(HEAD b3d6d64 through PYTHONPATH), after, and after with ``model.present_labels`` replaced by
``core.arrays.present_values`` (a scratch monkeypatch: model.py was not part of this change). Load
average 2.0 to 2.5 (another agent's jobs); medians of 5 rounds per process, CPU s / wall s, the
range over the three processes of each kind:

=========================================  =========================  =========================  ===================
process                                    ours CPU / wall            highdicom CPU / wall       ours / hd CPU, wall
=========================================  =========================  =========================  ===================
before                                     0.289-0.296 / 0.291-0.299  0.288-0.308 / 0.291-0.328  0.96-1.00, 0.91-1.00
after                                      0.204-0.210 / 0.206-0.212  0.298-0.299 / 0.299-0.307  0.68-0.71, 0.68-0.71
after + present_values in from_label_map   0.158-0.159 / 0.159-0.161  0.293-0.326 / 0.296-0.333  0.49-0.54, 0.48-0.54
=========================================  =========================  =========================  ===================

An earlier run at load 3.2 to 3.7 gave the same times for ours (0.211, 0.161 s) and highdicom 0.30 to
0.41 s (0.52-0.62 x and 0.53-0.54 x): highdicom's time moves with the load, ours hardly.

Component CPU times (functions wrapped with process_time, median of 9 warm runs, load ~3), before -> after:

* ``present_labels`` in ``Segmentation.from_label_map`` 0.066 -> 0.065 s (unchanged: core/model.py);
* which slices hold each segment (export_seg): ``slice_voxel_counts`` 0.062 s -> ``Segmentation.slice_presence``
  0.019 s. Only presence is used, and every value of a slice is the value of a run of equal voxels,
  so only the first voxel of each run is looked at (``core.arrays.slice_label_presence``; ~490,000
  changes of value in case C's 52 M voxels). ``arrays.present_values`` does the same for
  ``present_labels`` (0.017 s instead of 0.065 s, tested equal): switching model.py to it is the
  0.05 s of the third row;
* header written by pydicom (``save_as``) 0.038 s -> 0.0017 s + 0.0056 s to encode the Segment
  Sequence (101 items) and the two lists of the 200 source images as bytes
  (``headers.pre_encode_bulk_sequences``; pydicom also re-ran its ambiguous-VR pass on every nested
  item); the references are built as bytes directly (``headers._raw_references``, 0.0074 -> 0.0023 s);
* JPEG-LS: pyjpegls's ``encode_buffer`` called directly (pydicom's encoder checks every frame first):
  frames + CharLS 0.069 -> 0.065 s. Empty frames reuse one encoding (all codecs here are
  deterministic); case C has no empty slice, so nothing is reused there (case A has 176 empty
  slices of 200; not measured).
  pyjpegls 1.5.1's ``_CharLS._encode`` holds the GIL (no ``nogil`` in _CharLS.pyx): two threads
  encoding 100 frames each took 0.18 s CPU and 0.18-0.42 s wall against 0.19 s serial, so threads
  were not used. Its 1 MB of temporaries per frame can cost 0.1 s of page faults in a fresh process
  (glibc returning the heap top), not in a warm one;
* unchanged: 100 segment descriptions as pydicom datasets 0.016 s, per-frame pieces (200 derivation
  and position variants encoded by pydicom) 0.013 s, 200 plane position items 0.008 s.
* Total 0.296 -> 0.211 s.

Why 0.5 x is not reached: highdicom takes 0.29 to 0.33 s at load ~2, so the target is 0.145 to 0.165 s.
The two fixed parts alone are 0.13 s: ``present_labels`` 0.065 s (core/model.py, out of this change)
and CharLS 0.058 s for 200 frames (highdicom pays the same). With ``present_values`` there, the rest
(presence 0.019, header ~0.06) gives 0.16 s, 0.49 to 0.54 x, at the edge; the header is now mostly building pydicom
datasets (descriptions, per-frame variants, positions: ~0.04 s), which only a byte-level writer of
those items would remove.

Later the same day (review of that change, quiet machine, load 0.5-0.8, 7 rounds): ``present_labels``
is now ``arrays.present_values`` (0.065 -> 0.018 s); the segment descriptions and code items set
their elements directly (``dicom.header_items.put_element``, shared with the SR template: 0.017 ->
0.008 s); ``raw.encode_element`` packs the UI and IS elements that vary between per-frame items
itself (pydicom's writer ~25 microseconds each: encode_variants 0.014 -> 0.009 s, tested byte-equal);
``from_label_map`` skips the negative test of unsigned labels (0.002 s). Ours 0.167 -> 0.148 s
against highdicom's 0.310-0.325 s in the same rounds: 0.51 -> **0.48 x** (target 0.5: met, with
little margin; highdicom's own time moves 0.29-0.33 s with the load). Left: CharLS 0.056 s (both
writers pay it), the two run-start passes 0.018 + 0.019 s (one finds the labels for the segments,
the other the slices of each; fusing them would need the segmentation to carry what the first found).
"""
from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from machine import cpu_model
from phantom import body_plane
from profiling import print_profile as profile_table

#: Bump when the generated data changes, so that an old --workdir is regenerated.
DATA_VERSION = 2
SHAPE = (200, 512, 512)  # K, J, I
SPACING_MM = (0.7, 0.7, 1.25)  # i, j, k
ORIGIN = (-SHAPE[2] * SPACING_MM[0] / 2, -SHAPE[1] * SPACING_MM[1] / 2, -SHAPE[0] * SPACING_MM[2] / 2)  # LPS
CT_SEED = 20251121

SERIES_DIR = "series"
RUNS_DIR = "runs"
MANIFEST = "manifest.json"
CHILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class CaseSpec:
    """A label volume: ``count`` blobs, sizes ``scale`` x log-uniform [8, 60] mm (semi-axis),
    z semi-axis x ``elongation``; or, with ``count`` 1 and ``sphere_mm``, one sphere."""

    count: int
    seed: int
    scale: float = 1.0
    elongation: float = 1.0
    sphere_mm: float = 0.0
    description: str = ""


#: scale and elongation were tuned (bisection) to the baseline's fraction and frame count.
CASES: Dict[str, CaseSpec] = {
    "A": CaseSpec(1, 0, sphere_mm=30.0, description="1 segment, 30 mm sphere"),
    "B": CaseSpec(20, 1, scale=0.8759, elongation=2.2523, description="20 blobs, ~11.6 %"),
    "C": CaseSpec(100, 1, scale=0.78225, elongation=1.7012, description="100 blobs, ~30.2 % (TotalSegmentator-like)"),
}


# --- data generation ------------------------------------------------------------------------

def make_geometry():
    """Axial grid, identity directions (LPS), centred on the origin, (200, 512, 512)."""
    from DicomAnnotEmbedLib.core.geometry import VolumeGeometry

    return VolumeGeometry.from_origin_spacing_directions(SHAPE, ORIGIN, SPACING_MM, np.eye(3))


def _grid(geometry) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    origin = geometry.origin
    spacing = np.array(SPACING_MM)
    high = origin + (np.array(SHAPE[::-1]) - 1) * spacing
    return origin, spacing, high


def _draw_ellipsoid(labels: np.ndarray, geometry, centre: np.ndarray, axes: np.ndarray, value: int) -> int:
    """Give ``value`` to the free voxels of an ellipsoid; returns its number of non-empty slices."""
    origin, spacing, _ = _grid(geometry)
    lo = np.maximum(np.floor((centre - axes - origin) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil((centre + axes - origin) / spacing).astype(int) + 1, np.array(SHAPE[::-1]))
    k, j, i = np.ogrid[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    x = ((origin[0] + i * spacing[0] - centre[0]) / axes[0]) ** 2
    y = ((origin[1] + j * spacing[1] - centre[1]) / axes[1]) ** 2
    z = ((origin[2] + k * spacing[2] - centre[2]) / axes[2]) ** 2
    inside = (x + y) + z <= 1.0
    box = labels[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    inside &= box == 0
    box[inside] = value
    return int(inside.any(axis=(1, 2)).sum())


def make_labels(geometry, spec: CaseSpec) -> np.ndarray:
    """The uint8 (K, J, I) label volume of a case, labels 1..count, no label empty."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    origin, spacing, high = _grid(geometry)
    if spec.sphere_mm:
        centre = np.array([20.0, -10.0, 0.625])  # between slices: 24 non-empty frames
        _draw_ellipsoid(labels, geometry, centre, np.full(3, spec.sphere_mm / 2), 1)
        return labels
    rng = np.random.default_rng(spec.seed)
    half = (high - origin) / 2
    base = np.sort(np.exp(rng.uniform(np.log(8.0), np.log(60.0), spec.count)))[::-1]
    ratios = rng.uniform(0.7, 1.3, (spec.count, 3))
    for value, (size, ratio) in enumerate(zip(base, ratios), 1):
        axes = spec.scale * size * ratio * np.array([1.0, 1.0, spec.elongation])
        for _ in range(1000):
            centre = rng.uniform(origin, high)
            if (centre[0] / (0.9 * half[0])) ** 2 + (centre[1] / (0.7 * half[1])) ** 2 > 1:
                continue  # outside the body
            i, j, k = np.rint((centre - origin) / spacing).astype(int)
            if labels[k, j, i] == 0:
                break
        else:
            raise RuntimeError(f"could not place blob {value}")
        _draw_ellipsoid(labels, geometry, centre, axes, value)
    return labels


def label_stats(labels: np.ndarray) -> dict:
    """Segments, fraction of the volume and non-empty (segment, slice) frames."""
    counts = np.bincount(labels.ravel())
    values = [int(v) for v in np.flatnonzero(counts) if v]
    frames = 0
    for k in range(labels.shape[0]):
        frames += int(np.count_nonzero(np.bincount(labels[k].ravel(), minlength=1)[1:]))
    return {"segments": len(values), "label_values": values,
            "fraction": float(counts[1:].sum() / labels.size), "nonempty_frames": frames}


def make_ct(geometry, rng: np.random.Generator) -> np.ndarray:
    """int16 HU phantom: air, an elliptic body with lungs and spine, noise."""
    _, rows, columns = SHAPE
    plane = body_plane(rows, columns, geometry.origin[:2], SPACING_MM[:2])
    return np.broadcast_to(plane, SHAPE) + rng.integers(-25, 26, size=SHAPE, dtype=np.int16)


def _parameters() -> dict:
    return {"version": DATA_VERSION, "shape": list(SHAPE), "spacing": list(SPACING_MM), "ct_seed": CT_SEED,
            "cases": {name: vars(spec) for name, spec in CASES.items()}}


def prepare_data(workdir: Path, cases: List[str]) -> dict:
    """Generate what is missing (CT series, label volumes, dcmqi inputs); returns the manifest."""
    from DicomAnnotEmbedLib.dicom.dcmqi_metadata import write_dcmqi_metadata
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
    from DicomAnnotEmbedLib.core.model import Segmentation

    manifest_path = workdir / MANIFEST
    manifest = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    if manifest.get("parameters") != _parameters():
        if workdir.exists():
            print(f"(re)generating the data in {workdir}", file=sys.stderr)
            for name in [SERIES_DIR, RUNS_DIR] + [f"dcmqi_{c}" for c in CASES]:
                shutil.rmtree(workdir / name, ignore_errors=True)
            for name in CASES:
                (workdir / f"labels_{name}.npy").unlink(missing_ok=True)
        manifest = {"parameters": _parameters(), "cases": {}}
    workdir.mkdir(parents=True, exist_ok=True)
    geometry = make_geometry()
    if not (workdir / SERIES_DIR).is_dir() or "series_uid" not in manifest:
        start = time.perf_counter()
        shutil.rmtree(workdir / SERIES_DIR, ignore_errors=True)
        ct = make_ct(geometry, np.random.default_rng(CT_SEED))
        files = dicomize_array(ct, geometry, workdir / SERIES_DIR, modality="CT", patient_name="Bench^Seg",
                               patient_id="BENCHSEG", series_description="Synthetic CT for the SEG benchmark")
        import pydicom

        manifest["series_uid"] = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        manifest["cases"] = {}
        print(f"CT series: {len(files)} files written in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    for name in cases:
        if name in manifest["cases"] and (workdir / f"labels_{name}.npy").is_file():
            continue
        start = time.perf_counter()
        labels = make_labels(geometry, CASES[name])
        stats = label_stats(labels)
        if stats["label_values"] != list(range(1, CASES[name].count + 1)):
            raise RuntimeError(f"case {name}: labels {stats['label_values'][:5]}... are not 1..{CASES[name].count}")
        np.save(workdir / f"labels_{name}.npy", labels)
        # dcmqi's inputs: an uncompressed .nrrd label map (int16 as dcmqi reads it) and its metadata JSON.
        folder = workdir / f"dcmqi_{name}"
        folder.mkdir(exist_ok=True)
        import SimpleITK as sitk

        sitk.WriteImage(geometry.to_sitk_image(labels.astype(np.int16)), str(folder / "labels.nrrd"),
                        useCompression=False)
        segmentation = Segmentation.from_label_map(geometry, labels)
        logging.getLogger("DicomAnnotEmbedLib").setLevel(logging.ERROR)  # "no terminology" x 100
        write_dcmqi_metadata(segmentation, folder / "meta.json", ContentCreatorName="Bench^Seg",
                             ClinicalTrialCoordinatingCenterName="Bench", SeriesDescription="dcmqi SEG",
                             SeriesNumber=300)
        manifest["cases"][name] = {k: v for k, v in stats.items() if k != "label_values"}
        manifest_path.write_text(json.dumps(manifest, indent=1))
        print(f"case {name}: {stats['segments']} segments, {100 * stats['fraction']:.1f} % of the volume, "
              f"{stats['nonempty_frames']} non-empty frames ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def warm_cache(workdir: Path, cases: List[str]) -> int:
    """Read every input once, so that every variant sees a warm page cache."""
    total = 0
    paths = list((workdir / SERIES_DIR).iterdir())
    for name in cases:
        paths += [workdir / f"labels_{name}.npy"] + list((workdir / f"dcmqi_{name}").iterdir())
    for path in paths:
        if path.is_file():
            total += len(path.read_bytes())
    return total


# --- the variants ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """One row of the table: a tool and its options.

    kind: "ours", "highdicom", "dcmqi", "sitk" or "npy"; seg_type / compression as the tool
    names them; cases: where it runs; suffix: of the file written."""

    name: str
    label: str
    group: str  # "ours" or "peers"
    kind: str
    seg_type: str = ""
    compression: str = ""
    cases: str = "ABC"
    suffix: str = ".dcm"


VARIANTS: List[Variant] = [
    Variant("ours_labelmap_none", "ours LABELMAP, uncompressed", "ours", "ours", "labelmap", "none"),
    Variant("ours_labelmap_jpegls", "ours LABELMAP, JPEG-LS (default)", "ours", "ours", "labelmap", "jpegls"),
    Variant("ours_labelmap_rle", "ours LABELMAP, RLE", "ours", "ours", "labelmap", "rle"),
    Variant("ours_binary_none", "ours BINARY, uncompressed", "ours", "ours", "binary", "none"),
    Variant("ours_binary_jpeg2000", "ours BINARY, JPEG 2000", "ours", "ours", "binary", "jpeg2000", cases="AB"),
    Variant("ours_fractional_jpegls", "ours FRACTIONAL, JPEG-LS", "ours", "ours", "fractional", "jpegls", cases="B"),
    Variant("hd_binary", "highdicom BINARY, uncompressed (its default)", "peers", "highdicom", "BINARY", "none"),
    Variant("hd_labelmap_jpegls", "highdicom LABELMAP, JPEG-LS", "peers", "highdicom", "LABELMAP", "jpegls"),
    Variant("dcmqi_binary", "dcmqi binary", "peers", "dcmqi", "binary"),
    Variant("dcmqi_labelmap", "dcmqi --segmentationType labelmap", "peers", "dcmqi", "labelmap"),
    Variant("sitk_niigz", "SimpleITK .nii.gz", "peers", "sitk", suffix=".nii.gz"),
    Variant("sitk_segnrrd", "SimpleITK .seg.nrrd, gzip", "peers", "sitk", suffix=".seg.nrrd"),
    Variant("npy", "(floor) numpy .npy, raw", "peers", "npy", suffix=".npy"),
]
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}


def peak_rss_mb() -> float:
    """Peak resident set size of this process in 10^6 bytes: VmHWM from /proc/self/status
    (ru_maxrss of a fresh process may be its parent's, carried over fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def current_rss_mb() -> float:
    """Resident set size now (VmRSS), 10^6 bytes: what the child holds before the clock starts."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def children_peak_rss_mb() -> float:
    """Largest peak RSS of the finished child processes (getrusage, KiB on Linux), 10^6 bytes."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e6


def _series_files(workdir: Path) -> List[Path]:
    return sorted(p for p in (workdir / SERIES_DIR).iterdir() if p.is_file())


class Context:
    """What a child loads before the clock: imports, headers, geometry."""

    def __init__(self, variant: Variant, workdir: Path, case: str):
        self.variant, self.workdir, self.case = variant, workdir, case
        self.series = None  # ours: ReferenceSeries
        self.headers = None  # highdicom: pydicom datasets in slice order
        kind = variant.kind
        if kind in ("ours", "highdicom"):
            import highdicom  # noqa: F401
            import highdicom.frame  # noqa: F401
            import highdicom.seg  # noqa: F401
            import pydicom
            import pydicom.pixels  # noqa: F401
            from pydicom.sr.codedict import codes  # noqa: F401
        if kind == "ours":
            from DicomAnnotEmbedLib.dicom import raw as dicom_raw
            from DicomAnnotEmbedLib.encodings import seg  # noqa: F401
            from DicomAnnotEmbedLib.core.series import load_series

            self.series = load_series(workdir / SERIES_DIR)
        elif kind == "highdicom":
            self.headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in _series_files(workdir)]
            z = [float(ds.ImagePositionPatient[2]) for ds in self.headers]
            assert all(b > a for a, b in zip(z, z[1:])), "CT files are not in slice order"
        elif kind == "sitk":
            import SimpleITK  # noqa: F401

    def labels(self) -> np.ndarray:
        return np.load(self.workdir / f"labels_{self.case}.npy")


def _hd_descriptions(count: int):
    import highdicom as hd

    tissue = hd.sr.CodedConcept("85756007", "SCT", "Tissue")
    return [hd.seg.SegmentDescription(segment_number=n, segment_label=f"Segment_{n}",
                                      segmented_property_category=tissue, segmented_property_type=tissue,
                                      algorithm_type="MANUAL", tracking_uid=hd.UID(), tracking_id=f"Segment_{n}")
            for n in range(1, count + 1)]


def write_ours(ctx: Context, labels: np.ndarray, out: Path) -> None:
    from DicomAnnotEmbedLib.core.model import Segmentation
    from DicomAnnotEmbedLib.encodings.seg import export_seg

    seg = Segmentation.from_label_map(ctx.series.geometry, labels)
    export_seg(ctx.series, seg, out, seg_type=ctx.variant.seg_type, compression=ctx.variant.compression)


def write_highdicom(ctx: Context, labels: np.ndarray, out: Path) -> None:
    import highdicom as hd
    from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless

    syntax = JPEGLSLossless if ctx.variant.compression == "jpegls" else ExplicitVRLittleEndian
    seg = hd.seg.Segmentation(
        source_images=ctx.headers, pixel_array=labels, segmentation_type=ctx.variant.seg_type,
        segment_descriptions=_hd_descriptions(int(labels.max())), series_instance_uid=hd.UID(), series_number=300,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="Bench", manufacturer_model_name="Bench",
        software_versions="1", device_serial_number="1", transfer_syntax_uid=syntax)
    seg.save_as(out)


def dcmqi_write_command(ctx: Context, out: Path) -> List[str]:
    folder = ctx.workdir / f"dcmqi_{ctx.case}"
    command = ["itkimage2segimage", "--inputImageList", str(folder / "labels.nrrd"),
               "--inputDICOMDirectory", str(ctx.workdir / SERIES_DIR), "--outputDICOM", str(out),
               "--inputMetadata", str(folder / "meta.json")]
    if ctx.variant.seg_type == "labelmap":
        command += ["--segmentationType", "labelmap"]
    return command


def _run_tool(command: List[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def write_sitk(ctx: Context, labels: np.ndarray, out: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(labels)
    image.SetOrigin(tuple(float(v) for v in ORIGIN))
    image.SetSpacing(SPACING_MM)
    image.SetDirection(tuple(np.eye(3).ravel()))
    sitk.WriteImage(image, str(out), useCompression=True)



def read_ours(ctx: Context, path: Path):
    from DicomAnnotEmbedLib.encodings.seg import import_seg

    imported = import_seg(path, ctx.series)
    return imported, imported.segmentation.layers[0]


def read_highdicom(ctx: Context, path: Path):
    import highdicom as hd

    seg = hd.seg.segread(path)
    uids = [str(ds.SOPInstanceUID) for ds in ctx.headers]
    return seg, seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)


def read_sitk(ctx: Context, path: Path):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


# --- verification (untimed, after the peak RSS is taken) ------------------------------------

def expected_labels(ctx: Context) -> np.ndarray:
    """The input labels as segment numbers (1..N in order of label value)."""
    labels = ctx.labels()
    values = np.flatnonzero(np.bincount(labels.ravel()))
    values = values[values > 0]
    if np.array_equal(values, np.arange(1, len(values) + 1)):
        return labels
    lut = np.zeros(int(values.max()) + 1, dtype=np.uint16)
    lut[values] = np.arange(1, len(values) + 1)
    return lut[labels]


def assert_same(volume: np.ndarray, expected: np.ndarray, what: str) -> None:
    if volume.shape != expected.shape:
        raise AssertionError(f"{what}: shape {volume.shape}, expected {expected.shape}")
    if not np.array_equal(volume, expected):
        differ = int(np.count_nonzero(volume != expected))
        raise AssertionError(f"{what}: {differ} voxels differ from the input labels "
                             f"(values read {np.unique(volume)[:8].tolist()}...)")


def verify_ours(ctx: Context, imported, volume: np.ndarray) -> None:
    seg = imported.segmentation
    expected = expected_labels(ctx)
    count = int(expected.max())
    type_read = "fractional" if ctx.variant.seg_type == "fractional" else ctx.variant.seg_type
    assert imported.seg_type == type_read, f"seg_type {imported.seg_type}, expected {type_read}"
    assert seg.layers.shape[0] == 1, f"{seg.layers.shape[0]} layers for non-overlapping segments"
    assert len(seg.segments) == count, f"{len(seg.segments)} segments, expected {count}"
    lut = np.zeros(max(s.label_value for s in seg.segments) + 1, dtype=np.uint16)
    for s in seg.segments:
        lut[s.label_value] = imported.segment_numbers[s.id]
    if not np.array_equal(lut, np.arange(len(lut))):
        volume = lut[volume]  # label value -> segment number
    assert_same(volume, expected, "import_seg")


def verify_highdicom(ctx: Context, seg, volume: np.ndarray) -> None:
    assert_same(np.asarray(volume), expected_labels(ctx), "highdicom")


def verify_sitk_file(ctx: Context, path: Path, what: str) -> None:
    """A label file (SimpleITK-readable) pasted onto the CT grid, compared with the input."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    verify_sitk_image(ctx, image, sitk.GetArrayFromImage(image), what)


def verify_sitk_image(ctx: Context, image, array: np.ndarray, what: str) -> None:
    """A SimpleITK image and its array, pasted onto the CT grid, compared with the input."""
    if not np.allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-4) or \
            not np.allclose(image.GetSpacing(), SPACING_MM, atol=1e-3):
        raise AssertionError(f"{what}: direction {image.GetDirection()} / spacing {image.GetSpacing()}")
    offset = (np.array(image.GetOrigin()) - np.array(ORIGIN)) / np.array(SPACING_MM)
    start = np.rint(offset).astype(int)
    if np.abs(offset - start).max() > 1e-2 or (start < 0).any():
        raise AssertionError(f"{what}: origin {image.GetOrigin()} is not on the CT grid")
    volume = np.zeros(SHAPE, dtype=array.dtype)
    i, j, k = start
    volume[k:k + array.shape[0], j:j + array.shape[1], i:i + array.shape[2]] = array
    assert_same(volume, expected_labels(ctx), what)


# --- the child: one measurement -------------------------------------------------------------

def child_write(ctx: Context, out: Path) -> dict:
    """Time one write; the file is verified by the read child that follows."""
    kind = ctx.variant.kind
    if kind == "dcmqi":
        command = dcmqi_write_command(ctx, out)
        before = current_rss_mb()
        start = time.perf_counter()
        _run_tool(command)
        seconds = time.perf_counter() - start
        peak = children_peak_rss_mb()
    else:
        labels = ctx.labels()
        writer = {"ours": write_ours, "highdicom": write_highdicom, "sitk": write_sitk,
                  "npy": lambda c, a, o: np.save(o, a)}[kind]
        before = current_rss_mb()
        start = time.perf_counter()
        writer(ctx, labels, out)
        seconds = time.perf_counter() - start
        peak = peak_rss_mb()
    if not out.is_file():
        raise AssertionError(f"{out} was not written")
    return {"seconds": seconds, "peak_mb": peak, "start_mb": before, "bytes": out.stat().st_size}


def child_read(ctx: Context, path: Path, out_dir: Path) -> dict:
    """Time one read of ``path`` to a full label volume, then check it against the input."""
    kind = ctx.variant.kind
    if kind == "dcmqi":
        command = ["segimage2itkimage", "--inputDICOM", str(path), "--outputDirectory", str(out_dir),
                   "--mergeSegments", "-t", "nrrd", "-p", "seg"]
        before = current_rss_mb()
        start = time.perf_counter()
        _run_tool(command)
        seconds = time.perf_counter() - start
        peak = children_peak_rss_mb()
        outputs = sorted(out_dir.glob("*.nrrd"))
        if len(outputs) != 1:
            raise AssertionError(f"segimage2itkimage --mergeSegments wrote {[p.name for p in outputs]}")
        verify_sitk_file(ctx, outputs[0], "segimage2itkimage")
        return {"seconds": seconds, "peak_mb": peak, "start_mb": before}
    if kind == "npy":
        before = current_rss_mb()
        start = time.perf_counter()
        volume = np.load(path)
        seconds = time.perf_counter() - start
        peak = peak_rss_mb()
        assert_same(volume, expected_labels(ctx), "np.load")
        return {"seconds": seconds, "peak_mb": peak, "start_mb": before}
    reader, verify = {"ours": (read_ours, verify_ours), "highdicom": (read_highdicom, verify_highdicom),
                      "sitk": (read_sitk, None)}[kind]
    before = current_rss_mb()
    start = time.perf_counter()
    obj, volume = reader(ctx, path)
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    (verify or (lambda c, o, v: verify_sitk_image(c, o, v, "SimpleITK")))(ctx, obj, volume)
    return {"seconds": seconds, "peak_mb": peak, "start_mb": before}


def child_profile(ctx: Context, out: Path, top: int) -> None:
    """Our export then import of one file under cProfile (imports and headers loaded first)."""
    labels = ctx.labels()
    for title, call in ((f"export ({ctx.variant.label}, case {ctx.case})", lambda: write_ours(ctx, labels, out)),
                        (f"import ({ctx.variant.label}, case {ctx.case})", lambda: read_ours(ctx, out))):
        profiler = cProfile.Profile()
        start = time.perf_counter()
        result = profiler.runcall(call)
        wall = time.perf_counter() - start
        print_profile(profiler, title, wall, top, "cumulative")
        print_profile(profiler, title, wall, min(top, 15), "own")
        if result is not None:
            verify_ours(ctx, *result)


def child_main(args) -> None:
    logging.basicConfig(level=logging.ERROR)
    ctx = Context(VARIANT_BY_NAME[args.variant], args.workdir, args.case)
    if args.child == "write":
        result = child_write(ctx, args.file)
    elif args.child == "read":
        result = child_read(ctx, args.file, args.out)
    else:
        child_profile(ctx, args.file, args.top)
        return
    print(json.dumps(result))


# --- the parent: repeats, tables, profile ---------------------------------------------------

#: Environment of the children: with --snapshot, PYTHONPATH puts the library copy first.
CHILD_ENV: Optional[Dict[str, str]] = None
SNAPSHOT_DIR = "lib-snapshot"


def snapshot_library(workdir: Path) -> Path:
    """Copy DicomAnnotEmbedLib into the workdir and make the children import that copy, so that
    edits to the library during a long run do not mix versions in one table."""
    global CHILD_ENV
    import DicomAnnotEmbedLib

    source = Path(DicomAnnotEmbedLib.__file__).resolve().parent
    target = workdir / SNAPSHOT_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target / "DicomAnnotEmbedLib", ignore=shutil.ignore_patterns("__pycache__"))
    CHILD_ENV = dict(os.environ)
    CHILD_ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    return source


def library_info() -> str:
    """Which library the children import: path, git blob ids of seg.py and model.py, and whether
    they differ from the git HEAD of the source tree (read-only git commands)."""
    import hashlib

    probe = subprocess.run([sys.executable, "-c", "import DicomAnnotEmbedLib, os; "
                            "print(os.path.dirname(DicomAnnotEmbedLib.__file__))"],
                           capture_output=True, text=True, env=CHILD_ENV, timeout=120)
    folder = Path(probe.stdout.strip() or ".")
    parts = []
    for name in ("seg.py", "model.py"):
        try:
            data = (folder / name).read_bytes()
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            parts.append(f"{name} {blob[:10]}")
        except OSError:
            parts.append(f"{name} ?")
    import DicomAnnotEmbedLib

    source = Path(DicomAnnotEmbedLib.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(source), "log", "-1", "--format=%h %ci"], capture_output=True,
                          text=True, timeout=60).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--", "."], capture_output=True,
                           text=True, timeout=60).stdout.strip()
    return (f"- DicomAnnotEmbedLib used by the children: {folder} ({', '.join(parts)}; git blob ids); "
            f"source tree HEAD {head or '?'}, library files changed or new vs HEAD: "
            f"{len(dirty.splitlines()) if dirty else 0}")


def run_child(mode: str, variant: Variant, workdir: Path, case: str, file: Path,
              out: Optional[Path] = None, top: int = 25) -> Tuple[str, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--variant", variant.name,
               "--case", case, "--workdir", str(workdir), "--file", str(file), "--top", str(top)]
    if out is not None:
        command += ["--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT_S,
                          env=CHILD_ENV)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{mode} child failed ({done.returncode}):\n{done.stderr.strip()[-4000:]}")
    return done.stdout, wall


def measure_pair(variant: Variant, workdir: Path, case: str) -> dict:
    """One repeat: a write child, then a read child on that file (which verifies it)."""
    folder = workdir / RUNS_DIR / case / variant.name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "read").mkdir(parents=True)
    file = folder / ("out" + variant.suffix)
    stdout, wall_w = run_child("write", variant, workdir, case, file)
    write = json.loads(stdout.strip().splitlines()[-1])
    stdout, wall_r = run_child("read", variant, workdir, case, file, folder / "read")
    read = json.loads(stdout.strip().splitlines()[-1])
    shutil.rmtree(folder, ignore_errors=True)
    return {"write_s": write["seconds"], "read_s": read["seconds"], "mb": write["bytes"] / 1e6,
            "rss_w": write["peak_mb"], "rss_r": read["peak_mb"], "start_w": write["start_mb"],
            "start_r": read["start_mb"], "process_w": wall_w, "process_r": wall_r}


def selected_variants(args) -> List[Variant]:
    chosen = [v for v in VARIANTS if args.only in (None, v.group)]
    if args.variants:
        names = args.variants.split(",")
        unknown = sorted(set(names) - set(VARIANT_BY_NAME))
        if unknown:
            raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANT_BY_NAME)}")
        chosen = [v for v in chosen if v.name in names]
    return chosen


def benchmark(workdir: Path, variants: List[Variant], cases: List[str], repeats: int) -> Dict[Tuple[str, str], dict]:
    """Every (variant, case) pair ``repeats`` times, round-robin; returns medians (or the error)."""
    runs: Dict[Tuple[str, str], List[dict]] = {}
    errors: Dict[Tuple[str, str], str] = {}
    for n in range(repeats):
        for case in cases:
            for v in variants:
                if case not in v.cases or (v.name, case) in errors:
                    continue
                try:
                    m = measure_pair(v, workdir, case)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    errors[(v.name, case)] = str(exc)
                    print(f"  [{case}] {v.label}: FAILED: {str(exc).splitlines()[-1]}", file=sys.stderr)
                    continue
                runs.setdefault((v.name, case), []).append(m)
                print(f"  [{case}] {v.label} run {n + 1}/{repeats}: write {m['write_s']:.3f} s, read "
                      f"{m['read_s']:.3f} s, {m['mb']:.3g} MB, peak {m['rss_w']:.0f}/{m['rss_r']:.0f} MB",
                      file=sys.stderr)
    shutil.rmtree(workdir / RUNS_DIR, ignore_errors=True)
    summary: Dict[Tuple[str, str], dict] = {}
    for key, results in runs.items():
        summary[key] = {
            "write_s": statistics.median(r["write_s"] for r in results),
            "read_s": statistics.median(r["read_s"] for r in results),
            "mb": statistics.median(r["mb"] for r in results),
            "rss_w": max(r["rss_w"] for r in results), "rss_r": max(r["rss_r"] for r in results),
            "writes": [r["write_s"] for r in results], "reads": [r["read_s"] for r in results],
            "start_w": max(r["start_w"] for r in results), "start_r": max(r["start_r"] for r in results),
            "process_w": statistics.median(r["process_w"] for r in results),
            "process_r": statistics.median(r["process_r"] for r in results)}
    for key, message in errors.items():
        summary[key] = {"error": message}
    return summary


def _s(x: float) -> str:
    return f"{x:.3f}" if x < 0.1 else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _mb(x: float) -> str:
    return f"{x:.3g}" if x < 1000 else f"{x:.0f}"


def print_tables(summary, variants: List[Variant], cases: List[str], manifest: dict, repeats: int) -> None:
    print("## DICOM SEG benchmark\n")
    for case in cases:
        c = manifest["cases"][case]
        print(f"- case {case}: {c['segments']} segment(s), {100 * c['fraction']:.3g} % of the volume, "
              f"{c['nonempty_frames']} non-empty frames")
    print()
    head = "| tool / variant |" + "".join(f" {c} write s | {c} read s | {c} MB | {c} peak RSS MB w/r |" for c in cases)
    print(head)
    print("|---|" + "---:|---:|---:|---:|" * len(cases))
    for v in variants:
        cells = []
        for case in cases:
            m = summary.get((v.name, case))
            if m is None:
                cells.append(" | | | ")
            elif "error" in m:
                cells.append(" FAILED | FAILED | | ")
            else:
                cells.append(f"{_s(m['write_s'])} | {_s(m['read_s'])} | {_mb(m['mb'])} | "
                             f"{m['rss_w']:.0f} / {m['rss_r']:.0f}")
        print(f"| {v.label} | " + " | ".join(cells) + " |")
    print()
    print(f"Median of {repeats} fresh processes per figure (write and read each in its own process); "
          "sizes and RSS in 10^6 bytes; RSS is the largest over the repeats. Page cache warm. "
          "The machine is shared with other jobs: figures are indicative.")

    print("\n### Ratios to peers (ours / peer: write x / read x / size x)\n")
    peers = [("highdicom", {"labelmap": "hd_labelmap_jpegls", "binary": "hd_binary"}),
             ("dcmqi", {"labelmap": "dcmqi_labelmap", "binary": "dcmqi_binary"}),
             (".nii.gz", {"labelmap": "sitk_niigz", "binary": "sitk_niigz", "fractional": "sitk_niigz"})]
    print("| ours | case | vs highdicom, same type (LABELMAP: its JPEG-LS) | vs dcmqi, same type "
          "| vs SimpleITK .nii.gz |")
    print("|---|---|---|---|---|")
    for v in variants:
        if v.group != "ours":
            continue
        for case in cases:
            mine = summary.get((v.name, case))
            if mine is None or "error" in mine:
                continue
            cells = []
            for _, table in peers:
                peer = summary.get((table.get(v.seg_type, ""), case))
                if peer is None or "error" in peer:
                    cells.append("-")
                else:
                    cells.append(f"{mine['write_s'] / peer['write_s']:.2f} / {mine['read_s'] / peer['read_s']:.2f}"
                                 f" / {mine['mb'] / peer['mb']:.2f}")
            print(f"| {v.label} | {case} | " + " | ".join(cells) + " |")

    print("\n### Targets, case C\n")
    print("| target | measured | limit | result |")
    print("|---|---:|---:|---|")

    def row(text: str, value: Optional[float], limit: float, unit: str) -> None:
        if value is None:
            print(f"| {text} | n/a | {limit:g}{unit} | n/a (not measured) |")
        else:
            print(f"| {text} | {value:.2f}{unit} | {limit:g}{unit} | {'PASS' if value <= limit else 'MISS'} |")

    def get(name: str) -> Optional[dict]:
        m = summary.get((name, "C"))
        return m if m and "error" not in m else None

    nii = get("sitk_niigz")
    for name in ("ours_labelmap_jpegls", "ours_labelmap_rle", "ours_labelmap_none"):
        m = get(name)
        label = VARIANT_BY_NAME[name].label
        ok = m is not None and nii is not None
        row(f"{label}: export / .nii.gz write", m["write_s"] / nii["write_s"] if ok else None, 2, "x")
        row(f"{label}: file / .nii.gz file", m["mb"] / nii["mb"] if ok else None, 1.5, "x")
        row(f"{label}: import / .nii.gz read", m["read_s"] / nii["read_s"] if ok else None, 3, "x")
    b, hd = get("ours_binary_none"), get("hd_binary")
    row("ours BINARY: export", b["write_s"] if b else None, 1.5, " s")
    row("ours BINARY: import", b["read_s"] if b else None, 1.2, " s")
    row("ours BINARY: export peak RSS / highdicom BINARY's", b["rss_w"] / hd["rss_w"] if b and hd else None, 0.5, "x")
    row("ours BINARY: import peak RSS / highdicom BINARY's", b["rss_r"] / hd["rss_r"] if b and hd else None, 0.5, "x")

    print("\n### All runs (s), for the spread; process = whole child (interpreter, imports, inputs, work)\n")
    print("| variant | case | writes | reads | process s w/r (median) | RSS MB at clock start w/r |")
    print("|---|---|---|---|---|---|")
    for v in variants:
        for case in cases:
            m = summary.get((v.name, case))
            if m and "error" not in m:
                print(f"| {v.name} | {case} | {', '.join(_s(x) for x in m['writes'])} | "
                      f"{', '.join(_s(x) for x in m['reads'])} | {_s(m['process_w'])} / {_s(m['process_r'])} | "
                      f"{m['start_w']:.0f} / {m['start_r']:.0f} |")
    failed = [(k, m["error"]) for k, m in summary.items() if "error" in m]
    if failed:
        print("\n### Failures\n")
        for (name, case), message in failed:
            print(f"- {name}, case {case}:\n\n```\n{message}\n```")


def machine_info(workdir: Path) -> List[str]:
    import pydicom

    cpu = cpu_model()
    versions = []
    for module in ("highdicom", "SimpleITK"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except Exception:  # noqa: BLE001 - information only
            versions.append(f"{module} ?")
    try:
        dcmqi = subprocess.run(["itkimage2segimage", "--version"], capture_output=True, text=True, timeout=60)
        tag = [w for w in dcmqi.stdout.split() if w.startswith("v1.")]
        versions.append(f"dcmqi {tag[0] if tag else '?'}")
    except (OSError, subprocess.TimeoutExpired):
        versions.append("dcmqi not found")
    return [f"- CPU: {cpu}; cores: {os.cpu_count()}; load average at the end: {os.getloadavg()[0]:.2f}, "
            f"{os.getloadavg()[1]:.2f}, {os.getloadavg()[2]:.2f} (1, 5, 15 min)",
            f"- Python {platform.python_version()}, pydicom {pydicom.__version__}, numpy {np.__version__}, "
            + ", ".join(versions)]


def print_profile(profile: cProfile.Profile, title: str, wall: float, top: int, by: str) -> None:
    """Top ``top`` functions by cumulative (or own) time as a Markdown table."""
    total = pstats.Stats(profile).total_tt  # type: ignore[attr-defined]
    profile_table(profile, f"#### {title}: top {top} by {by} time (profiled {total:.2f} s, wall {wall:.2f} s)",
                  top, by, str(Path(__file__).resolve()), digits=3)


def warm_labelmap_rounds(workdir: Path, rounds: int) -> None:
    """Target 2: both writers in this process after a first unmeasured run each (imports, tables,
    headers warm), alternating, CPU time (time.process_time) and wall time per run."""
    ours = Context(VARIANT_BY_NAME["ours_labelmap_jpegls"], workdir, "C")
    theirs = Context(VARIANT_BY_NAME["hd_labelmap_jpegls"], workdir, "C")
    labels = ours.labels()
    out = workdir / RUNS_DIR / "warm"
    out.mkdir(parents=True, exist_ok=True)
    times: Dict[str, List[Tuple[float, float]]] = {"ours": [], "highdicom": []}
    load = [os.getloadavg()[0]]
    for round_ in range(rounds + 1):
        for name, writer, ctx in (("ours", write_ours, ours), ("highdicom", write_highdicom, theirs)):
            cpu, wall = time.process_time(), time.perf_counter()
            writer(ctx, labels, out / f"{name}.dcm")
            if round_:  # the first round warms up
                times[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    load.append(os.getloadavg()[0])
    median = {name: (statistics.median(c for c, _ in runs), statistics.median(w for _, w in runs))
              for name, runs in times.items()}
    print(f"| LABELMAP JPEG-LS, case C, in process, warm ({rounds} rounds) | CPU s | wall s |")
    print("|---|---:|---:|")
    for name, (cpu, wall) in median.items():
        print(f"| {name} | {cpu:.3f} | {wall:.3f} |")
    print(f"| ours / highdicom | {median['ours'][0] / median['highdicom'][0]:.2f} x | "
          f"{median['ours'][1] / median['highdicom'][1]:.2f} x |")
    print(f"load average {load[0]:.2f} -> {load[1]:.2f}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time DICOM SEG export/import (ours, highdicom, dcmqi) and SimpleITK files on a synthetic "
                    "512x512x200 CT grid with 1, 20 and 100 segments (fresh process per run, median of --repeats).")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dae-bench-seg"),
                        help="folder for the generated data and the runs (reused; default /tmp/dae-bench-seg)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant and case (default 3)")
    parser.add_argument("--cases", default="A,B,C", help="comma-separated cases among A, B, C (default all)")
    parser.add_argument("--only", choices=("ours", "peers"), help="only our variants, or only the peers")
    parser.add_argument("--variants", help="comma-separated variant names (default all): "
                        + ", ".join(VARIANT_BY_NAME))
    parser.add_argument("--profile", action="store_true",
                        help="also profile our export and import (case C by default) and print the top functions")
    parser.add_argument("--profile-variants", default="ours_binary_none,ours_labelmap_jpegls",
                        help="our variants to profile (default: ours_binary_none,ours_labelmap_jpegls)")
    parser.add_argument("--profile-case", default="C", help="case to profile (default C)")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile (default 25)")
    parser.add_argument("--no-bench", action="store_true", help="skip the timing table (with --profile)")
    parser.add_argument("--snapshot", action="store_true",
                        help="copy DicomAnnotEmbedLib into the workdir first and run the children on that copy "
                             "(for a shared tree that is being edited during the run)")
    parser.add_argument("--warm-labelmap", type=int, metavar="ROUNDS",
                        help="only target 2: our LABELMAP JPEG-LS export and highdicom's constructor + save_as of the "
                             "same labels, in this process, warm, ROUNDS interleaved rounds (case C; median CPU)")
    parser.add_argument("--child", choices=("write", "read", "profile"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child_main(args)
        return 0
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    cases = [c.strip().upper() for c in args.cases.split(",") if c.strip()]
    if not cases or set(cases) - set(CASES):
        parser.error(f"--cases: choose among {', '.join(CASES)}")
    profiled = [n for n in args.profile_variants.split(",") if n]
    if args.profile and any(VARIANT_BY_NAME.get(n, VARIANTS[-1]).group != "ours" for n in profiled):
        parser.error("--profile-variants: choose among " + ", ".join(v.name for v in VARIANTS if v.group == "ours"))
    if args.profile and args.profile_case not in CASES:
        parser.error(f"--profile-case: choose among {', '.join(CASES)}")
    workdir = args.workdir.resolve()
    if args.warm_labelmap:
        prepare_data(workdir, ["C"])
        warm_labelmap_rounds(workdir, args.warm_labelmap)
        return 0
    if args.snapshot:
        print(f"library snapshot of {snapshot_library(workdir)} in {workdir / SNAPSHOT_DIR}", file=sys.stderr)
    needed = sorted(set(cases) | ({args.profile_case} if args.profile else set()))
    manifest = prepare_data(workdir, needed)
    print(f"warm-up: read {warm_cache(workdir, needed) / 1e6:.0f} MB of inputs once; load average "
          f"{os.getloadavg()[0]:.2f}", file=sys.stderr)
    if not args.no_bench:
        variants = selected_variants(args)
        summary = benchmark(workdir, variants, cases, args.repeats)
        print_tables(summary, variants, cases, manifest, args.repeats)
        print()
        print("\n".join(machine_info(workdir)))
        print(library_info())
    if args.profile:
        print(f"\n### cProfile of our export and import, case {args.profile_case} (fresh process each; "
              "imports and headers loaded before; cProfile inflates Python-heavy code)")
        for name in profiled:
            variant = VARIANT_BY_NAME[name]
            folder = workdir / RUNS_DIR / "profile"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            try:
                stdout, _ = run_child("profile", variant, workdir, args.profile_case, folder / "out.dcm", top=args.top)
                print(stdout)
            except RuntimeError as exc:
                print(f"\nprofile of {name} FAILED:\n\n```\n{exc}\n```")
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
