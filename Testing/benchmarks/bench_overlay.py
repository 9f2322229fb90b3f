#!/usr/bin/env python
"""Benchmark: overlay export/import against plain pydicom on a realistic CT series.

Run by hand (it is not a pytest test and asserts no timings)::

    python Testing/benchmarks/bench_overlay.py                  # timing table
    python Testing/benchmarks/bench_overlay.py --profile        # + cProfile of export/import
    python Testing/benchmarks/bench_overlay.py --workdir /tmp/dae-bench --repeats 5

The report (Markdown) goes to stdout, progress to stderr.

What it does
------------
1. Generates (or reuses, when ``--workdir`` already holds data made with the same parameters)
   a synthetic CT series: 512 x 512 x 200 int16, 0.7 mm pixels, 1.25 mm slices, axial, 200
   single-frame files written with :func:`DicomAnnotEmbedLib.dicom.dicomize.dicomize_array`; a
   segmentation with 10 non-overlapping ellipsoids (3 mm to 70 mm semi-axes, spread through
   the volume) built as an in-memory :class:`Segmentation` and saved as ``.seg.nrrd``; and one
   overlay export of it, used as the input of the import benchmark.
2. Reads every input file once (warm-up) so that every variant sees a warm OS page cache.
   Nothing is dropped from the page cache, and written files are not fsync'ed by anyone.
3. Runs ``--repeats`` rounds; each round runs every variant once, each in a fresh Python
   subprocess, so that a busy spell of a shared machine hits peers and ours alike. The child
   imports the modules the variant uses, then times only the work: wall time (``s``) and its
   own CPU time (``CPU s``, which shows how much of a slow run was other processes). ``process
   s`` is the wall time of the whole child (interpreter start + imports + work). Peak RSS is the
   child's own VmHWM (see :func:`peak_rss_mib`). Output folders are emptied and the written
   data flushed (``sync``) between runs, outside the clock, so that no run pays for the
   previous one's writeback. Each child checks its result (files, planes, voxel counts).
   Ratios are of the medians; the per-round range is given too. ``--variants`` picks some.

Variants: pydicom read+write of the source files unchanged (peer of export); pydicom read with
PixelData of the overlay-embedded files (peer of import: the files the import reads); our
overlay export from the series folder and an in-memory Segmentation (the files the peer reads
and writes, nothing else), and the same from the ``.seg.nrrd`` (end to end, as the command
line); our overlay import (headers + overlay planes into an in-memory Segmentation, nothing
written); for context pydicom read of the source files (the import's peer until the second
round below), pydicom read + ``Dataset.overlay_array`` of every plane, our series header
loading, and the interpreter + imports floor. Targets: export <= 1.5 x read+write, import <=
1.5 x read.

Notes (2-core AMD EPYC VM, 23.5 GiB, ext4; Python 3.11.7, pydicom 3.0.2, numpy 2.4.6)
------------------------------------------------------------------------------------
Third round (figures: README "Speed (overlay)"). Medians of 11 rounds, peers 0.39 s
(read+write) and 0.11 s (read of the overlay files):

* export from the .seg.nrrd: 0.62 -> 0.45 s (1.51 -> 1.14 to 1.23 x);
* import: 0.16 -> 0.13 s (1.46 to 1.58 -> 1.24 to 1.25 x);
* peak RSS: export 166 -> 119 MiB, import 133 -> 100 MiB.

Phases were timed with perf_counter in fresh processes (cProfile and line_profiler inflate
the many small calls 2 to 3 x; pyinstrument's sampling agreed with the plain timings). What
they found, and what was changed:

* .seg.nrrd decode, 0.2 s: zlib inflate of 52 MB 0.13 s, and pynrrd's growing bytearray and
  two copies. Now ``segio._read_gzip_voxels`` inflates 1 MB at a time straight into the array:
  with Python's zlib 0.09 s, with zlib-ng 0.01 s (isal and libdeflate were as fast; zlib-ng
  mirrors zlib's API). slicerio still reads the metadata.
* Header parse, about 80 ms for the overlay files: pydicom parsing a BytesIO is 10 to 25 %
  faster than parsing a buffered file (each small read goes through BufferedReader). Reading a
  fixed 384 KB or 512 KB block lost the gain to copying; mmap gained 6 ms. Now the block is the
  file's size less the bytes that followed the previous file's header (Pixel Data of one size
  in a series), so it ends just after this header (``series._HeaderReader``): parse 80 -> 69 ms
  (loop of 200 files) when the import keeps the blocks. The export reads blocks only up to
  64 KB: without a consumer of the deferred values, larger blocks cost more than they save.
* Overlay Data read a second time, 13 ms: the import now decodes each file's planes from the
  block its header came from, as load_series reads it (``on_header``). Mapping the files
  instead of reading them was tried: no faster on this VM.
* Decoded planes, ~10 ms: each np.unpackbits result of 50 to 200 KB was fresh memory (mmap
  above glibc's threshold while all were alive), faulted in at decode and unmapped at the end.
  The rows now stay packed (``overlay._PackedRows``) and are unpacked one at a time when painted,
  reusing the same freed memory. Decoding fell from 23 to 15 ms.
* Label layer, 11 to 110 ms: numpy advises huge pages for large arrays, and faulting them in
  varied from 5 to 110 ms in fresh processes (16 ms steadily on 4 KiB pages). Decoded volumes now
  come from ``arrays.zeros`` (a private anonymous map, no advice). The overlap check read
  never-written pages, which then faulted twice: boxes painted so far now decide whether pixels
  need reading.
* GC: a full collection over the headers (20 to 30 ms) ran inside the import when two gc_paused
  blocks ended one after the other; the pause now spans the whole import, and the headers are
  freed by reference counting before the GC is enabled again.
* Tried and left out: a thread that pre-faulted the label layer while headers were read
  (segmentation 15 -> 8 ms, but the header parse slowed as much).

Where the import's 0.13 s goes now: pydicom's parse of the headers ~70 ms (the peer's own
parse plus its Pixel Data read is ~0.1 s), decoding 865 planes 15 ms, painting 10 ms and
importing slicerio for the terminology 3.5 ms, building the geometry 7.5 ms, the rest per-file
Python. The export from the .seg.nrrd: the in-memory export (~0.4 s, as the peer) plus 0.03 s
of decode.

Second round. The machine was shared with other jobs
(load 1 to 3 on 2 cores): single runs vary by up to 50 %, ratios within a round less, and the
kernel writing back one run's files slowed the next run until ``sync`` between runs. Before ->
after, medians of 11 rounds (before: 5), peers 0.37 to 0.41 s (read+write) and 0.11 s (read of
the overlay files): export with the segmentation in memory 1.08 -> 0.38 to 0.43 s (2.8 -> 0.99
to 1.09 x), from the .seg.nrrd 1.28 -> 0.59 to 0.64 s (3.3 -> 1.51 to 1.65 x), import 0.45 ->
0.16 s (3.6 -> 1.45 to 1.51 x over the last five runs), header load 0.11 -> 0.07 s; import
peak RSS 189 -> 129 MiB. The import is at the 1.5 x limit, not below it with a margin. Single
rounds reach 2 x: first-touch page faults of the 52 MB label layer take 5 to 60 ms on this VM
(numpy asks for huge pages; the kernel sometimes compacts memory to find them).

What was unfair in the benchmark:

* The import's peer read the source series (~55 elements, ~525 KB a file), not the files the
  import reads (~104 elements, ~650 KB): 0.07 s against 0.11 s. It now reads the same files;
  the old one stays as context.
* The export's clock included decoding the ``.seg.nrrd`` (zlib inflate of 52 MB 0.13 s, pynrrd's
  copies 0.06 s: 0.2 to 0.23 s, over half the peer's time), which is not DICOM I/O and which
  Slicer and API callers do not do (they hold the segmentation). Both exports are now measured.

What the profile (cProfile; pyinstrument agreed) found, and what was changed:

* Export, writing: pydicom writes element by element (121 per output file against 55 in the
  source; ~10 to 20 us each, sequences more), and the source was parsed a second time
  (``dcmread`` of the whole file). Now each output file is the source's bytes with the changed
  elements replaced and the overlay groups inserted (``overlay._SourceFile.splice``): element
  positions come from the header load_series read (checked against the bytes), Pixel Data and
  whatever follows it are copied as they are. The overlay groups and the per-file changes
  (SOP Instance UID, Image Type, Series Number, Source Image Sequence) are encoded by
  ``overlay._ElementEncoder``; the same-for-every-file elements (series UID and description,
  derivation, our private metadata) and the File Meta Information by pydicom once per series.
  The tests compare every byte with what pydicom writes for the same values, and files that
  cannot be spliced (deflated, existing overlay groups in the way, encoding not the transfer
  syntax's, changed since loading) go through pydicom as before.
* Export, ROI statistics: pixel values are viewed in the file's bytes (no dataset copy); data
  with fewer bits stored than allocated (12 of 16 in much CT) is masked or sign-extended by
  numpy as pydicom does, instead of pydicom's decoder (0.8 ms per image; not in this synthetic
  series, which stores 16 bits).
* Export, which slices each segment is on: ``Segmentation.slice_voxel_counts`` (a bincount per
  slice, 0.3 to 0.6 ms each, 60 to 70 ms) became a comparison per slice and segment, empty
  slices skipped by their maximum (~20 ms).
* Header pass (both ways): pydicom's conversion of the dozen values the geometry needs per file
  (DSfloat objects, validation) cost ~30 ms; ``series.header_value`` parses them from the raw
  bytes (~4 ms). ``np.median`` imported numpy.ma on first use (17 ms in every fresh process);
  ``np.allclose`` per frame became one call (5 ms).
* Import: ~8 pydicom conversions per plane (865 planes) were the largest cost; the overlay
  elements are now read from their raw bytes (``overlay._OverlayElements``), Overlay Data is
  unpacked only between its first and last non-zero 8-byte words (half the planes are empty:
  written to keep the groups contiguous), and the pieces are painted into the label layers
  directly instead of whole-slice masks through ``Segmentation.add_segment_slices`` (same
  layer choice). load_series defers values over 16 KB (Overlay Data; ``series.DEFER_SIZE``) and
  the import reads them file by file: holding the whole series' Overlay Data (64 MB) cost 25 ms
  of page faults. Python's cyclic GC walked the growing set of headers again and again: it is
  paused while headers load and planes decode (``series.gc_paused``, 13 ms).

Where the time goes now (cProfile, which inflates pydicom's share about 2 x):

* Import (0.15 to 0.16 s against 0.11 s): pydicom parsing the headers ~0.09 s, about what the
  peer spends parsing the same files; then reading the deferred Overlay Data ~9 ms, decoding
  865 planes ~10 ms (15 us a plane with pixels, 4 us an empty one), painting the layers ~9 ms
  (mostly page faults and copyto over 14.6 M band pixels), per-plane and per-file Python ~10
  ms, geometry ~7 ms. The pieces are pydicom's parse plus ~50 ms; nothing large is left.
* Export with the segmentation in memory (0.38 s, as the peer): header pass 0.07 s; then per
  file the source read, ROI statistics (~0.05 s in all), masks and bit packing (~0.04 s),
  header changes and splicing (~0.04 s), slice presence (~0.02 s once), and writing 200 files
  of ~650 KB through temporary files and renames (~0.1 s; the peer writes in place). A writer
  thread overlapping the writes was tried: no gain once the runs were sync'ed, so left out.
* Export from the .seg.nrrd adds its decode, 0.2 s (segio / slicerio / pynrrd, outside this
  work): to meet 1.5 x there too, decode it while the headers load (zlib releases the GIL: the
  0.07 s header pass would hide under the 0.13 s inflate, ~1.4 x) and avoid pynrrd's copies.

``overlay import`` end to end (issue 14, 2026-12-04): the whole command in a fresh process, writing
the .seg.nrrd, against a fresh-process pydicom read (dcmread + PixelData) of the same 200 overlay
files; 3 interleaved rounds, median child CPU, load average 16: before (d0cdecf) 1.61 s = 3.1 x the
peer's 0.52 s, after 0.88 s = 1.7 x; peak RSS 133 -> 136 MB against the peer's 54 MB (2.5 x:
imports are 53 to 56 MB for both, ours then holds the 52 MB label layer it writes). The difference: .seg.nrrd gzip level 9 -> 2 (files/segio.py
``SEG_NRRD_GZIP_LEVEL``, ITK's default; this fixture's file 0.13 -> 0.40 MB, case C's 0.68 -> 1.30
MB) and one pass for all segment extents, plus the lazy imports of the command line.

First round (before the second), for the record: ``Segmentation.voxel_counts`` did one
bincount over the whole 52 M-voxel layer (an int64 temporary of 420 MB), ROI statistics decoded
every image to float, and the import filled ten whole-volume masks; fixed then (peak 516 -> 166
MiB export, 405 -> 189 MiB import), leaving export 1.37 s = 3.7 x and import 0.52 s = 8.1 x the
(then) peers.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from machine import cpu_model, memory_text
from phantom import body_plane
from profiling import print_profile as profile_table

#: Bump when the generated data changes, so that an old --workdir is regenerated.
DATA_VERSION = 1
SPACING_MM = (0.7, 0.7, 1.25)  # i, j, k
SEED = 20250611
N_SEGMENTS = 10

SERIES_DIR = "series"
SEG_FILE = "segmentation.seg.nrrd"
FIXTURE_DIR = "overlay_input"
RUNS_DIR = "runs"
MANIFEST = "manifest.json"

#: Semi-axes (x, y, z) in mm of the 10 segments: an organ, lesions, nodules, a tiny spot.
BLOB_SEMI_AXES_MM = [(70, 55, 65), (45, 35, 55), (30, 30, 30), (25, 20, 40), (18, 18, 18),
                     (12, 15, 12), (10, 8, 20), (7, 7, 7), (5, 5, 5), (3, 3, 4)]


# --- data generation ------------------------------------------------------------------------

def make_geometry(size: int, slices: int):
    """Axial grid, identity directions (LPS), centred in-plane, (slices, size, size)."""
    from DicomAnnotEmbedLib.core.geometry import VolumeGeometry

    half = size * SPACING_MM[0] / 2.0
    origin = (-half, -half, -slices * SPACING_MM[2] / 2.0)
    return VolumeGeometry.from_origin_spacing_directions((slices, size, size), origin, SPACING_MM, np.eye(3))


def place_blobs(geometry, rng: np.random.Generator) -> List[Tuple[np.ndarray, Tuple[float, float, float]]]:
    """Centres (LPS mm) for the ellipsoids: inside the body, inside the volume, bounding spheres
    2 mm apart (so the segments never overlap). Rejection sampling over a few candidates.
    The sizes shrink with the volume when it is smaller than the default 512 x 512 x 200."""
    scale = min(1.0, geometry.shape[2] / 512, geometry.shape[0] / 200)
    shape = np.array(geometry.shape[::-1], dtype=float)  # i, j, k
    low = geometry.origin
    high = low + (shape - 1) * np.array(SPACING_MM)
    body_x, body_y = 0.42 * (high[0] - low[0]), 0.32 * (high[1] - low[1])
    placed: List[Tuple[np.ndarray, Tuple[float, float, float]]] = []
    for axes in BLOB_SEMI_AXES_MM:
        axes = tuple(scale * a for a in axes)
        radius = max(axes)
        for _ in range(10000):
            centre = rng.uniform(low + axes, high - axes)
            inside_body = (centre[0] / body_x) ** 2 + (centre[1] / body_y) ** 2 <= 1.0
            apart = all(np.linalg.norm(centre - c) > radius + max(a) + 2.0 for c, a in placed)
            if inside_body and apart:
                placed.append((centre, axes))
                break
        else:
            raise RuntimeError(f"could not place a blob with semi-axes {axes} mm; use a larger volume")
    return placed


def make_labels(geometry, blobs) -> np.ndarray:
    """uint8 (K, J, I) label map, label n + 1 for blob n; each blob is drawn in its bounding box."""
    labels = np.zeros(geometry.shape, dtype=np.uint8)
    origin, spacing = geometry.origin, np.array(SPACING_MM)
    for n, (centre, axes) in enumerate(blobs):
        lo = np.maximum(np.floor((centre - axes - origin) / spacing).astype(int), 0)
        hi = np.minimum(np.ceil((centre + axes - origin) / spacing).astype(int) + 1, geometry.shape[::-1])
        k, j, i = np.ogrid[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
        x = origin[0] + i * spacing[0] - centre[0]
        y = origin[1] + j * spacing[1] - centre[1]
        z = origin[2] + k * spacing[2] - centre[2]
        inside = (x / axes[0]) ** 2 + (y / axes[1]) ** 2 + (z / axes[2]) ** 2 <= 1.0
        box = labels[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
        box[inside] = n + 1
    return labels


def make_ct(geometry, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int16 HU phantom: air, an elliptic body with lungs and spine, brighter blobs, noise."""
    _, rows, columns = geometry.shape
    plane = body_plane(rows, columns, geometry.origin[:2], SPACING_MM[:2])
    volume = np.broadcast_to(plane, geometry.shape) + rng.integers(-25, 26, size=geometry.shape, dtype=np.int16)
    offsets = np.arange(N_SEGMENTS + 1, dtype=np.int16) * 15  # label n: +15 n HU
    volume += offsets[labels]
    return volume


def make_segmentation(geometry, labels: np.ndarray):
    """The in-memory Segmentation: one layer, one segment per label, with names, colours, codes."""
    from DicomAnnotEmbedLib.core.model import Code, Segment, Segmentation, Terminology, _default_color

    tissue = Code("85756007", "SCT", "Tissue")
    lesion = Code("52988006", "SCT", "Lesion")
    segments = [Segment(id=f"Segment_{n + 1}", name=f"Blob {n + 1:02d} ({max(axes)} mm)",
                        color=_default_color(n), label_value=n + 1, layer=0,
                        terminology=Terminology(category=tissue, type=lesion))
                for n, axes in enumerate(BLOB_SEMI_AXES_MM)]
    return Segmentation(geometry, labels[np.newaxis], segments)


def count_voxels(segmentation) -> Dict[str, int]:
    """Voxels of each segment by id, counted slab by slab so that the check itself allocates
    little (it runs in the children before their peak RSS is read)."""
    counts = {s.id: 0 for s in segmentation.segments}
    for layer_index, layer in enumerate(segmentation.layers):
        for k in range(0, layer.shape[0], 8):
            histogram = np.bincount(layer[k:k + 8].ravel())
            for s in segmentation.segments:
                if s.layer == layer_index and s.label_value < histogram.size:
                    counts[s.id] += int(histogram[s.label_value])
    return counts


def prepare_data(workdir: Path, size: int, slices: int) -> Dict[str, int]:
    """Create (or reuse) the series, the .seg.nrrd and the overlay export used as import input.

    Returns the expected voxel count of each segment (by id), for the children's sanity checks.
    """
    manifest_path = workdir / MANIFEST
    wanted = {"version": DATA_VERSION, "size": size, "slices": slices, "seed": SEED}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if {k: manifest.get(k) for k in wanted} == wanted and (workdir / FIXTURE_DIR).is_dir():
            print(f"reusing data in {workdir}", file=sys.stderr)
            return manifest["voxel_counts"]
        print(f"{workdir} holds data made with other parameters: regenerating", file=sys.stderr)
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
    from DicomAnnotEmbedLib.files.segio import write_seg_nrrd

    for name in (SERIES_DIR, FIXTURE_DIR, RUNS_DIR):
        shutil.rmtree(workdir / name, ignore_errors=True)
    (workdir / SEG_FILE).unlink(missing_ok=True)
    manifest_path.unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    rng = np.random.default_rng(SEED)
    geometry = make_geometry(size, slices)
    labels = make_labels(geometry, place_blobs(geometry, rng))
    segmentation = make_segmentation(geometry, labels)
    counts = count_voxels(segmentation)
    if min(counts.values()) == 0:
        raise RuntimeError(f"a generated segment is empty: {counts}")
    volume = make_ct(geometry, labels, rng)
    print(f"generated volume and {N_SEGMENTS} segments in {time.perf_counter() - start:.1f} s; writing files",
          file=sys.stderr)
    dicomize_array(volume, geometry, workdir / SERIES_DIR, modality="CT", series_description="Benchmark CT")
    write_seg_nrrd(workdir / SEG_FILE, segmentation)
    api.export_overlay(workdir / SERIES_DIR, segmentation, out_dir=workdir / FIXTURE_DIR)
    manifest_path.write_text(json.dumps(dict(wanted, voxel_counts=counts), indent=1))
    print(f"data ready in {workdir} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return counts


def warm_cache(workdir: Path) -> int:
    """Read every input file once so that all variants start with a warm page cache; bytes read."""
    total = 0
    for path in [workdir / SEG_FILE, *sorted((workdir / SERIES_DIR).rglob("*")),
                 *sorted((workdir / FIXTURE_DIR).rglob("*"))]:
        if path.is_file():
            total += len(path.read_bytes())
    return total


# --- the variants, run in a child process ---------------------------------------------------

def _series_files(workdir: Path) -> List[Path]:
    return sorted(p for p in (workdir / SERIES_DIR).iterdir() if p.is_file())


def _overlay_files(workdir: Path) -> List[Path]:
    return sorted(p for p in (workdir / FIXTURE_DIR).iterdir() if p.is_file())


class _Clock:
    """Wall time of the work (``seconds``) and this process's CPU time (``cpu_seconds``): on a
    shared machine, CPU time shows how much of a slow run was other processes."""

    def __enter__(self) -> "_Clock":
        self.result: dict = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.result = {"seconds": time.perf_counter() - self._wall, "cpu_seconds": time.process_time() - self._cpu}


def run_read_write(workdir: Path, out: Path) -> dict:
    """pydicom peer of export: dcmread every file and save_as it unchanged into ``out``."""
    import pydicom

    files = _series_files(workdir)
    with _Clock() as clock:
        for path in files:
            pydicom.dcmread(path).save_as(out / path.name)
    return dict(clock.result, files=len(files))


def _read_files(files: List[Path]) -> dict:
    import pydicom  # before the clock, as in the other variants

    size = 0
    with _Clock() as clock:
        for path in files:
            size += len(pydicom.dcmread(path).PixelData)
    return dict(clock.result, files=len(files), bytes=size)


def run_read_overlay_files(workdir: Path, out: Path) -> dict:
    """pydicom peer of import: dcmread every file the import reads (the overlay-embedded series:
    ~104 elements and ~650 KB a file, against ~55 and ~525 KB for the source) and touch
    PixelData."""
    return _read_files(_overlay_files(workdir))


def run_read(workdir: Path, out: Path) -> dict:
    """Context: the same for the source series. Until the notes' second round this was the
    import's peer, though the import does not read these files."""
    return _read_files(_series_files(workdir))


def run_read_overlays(workdir: Path, out: Path) -> dict:
    """Context for import: dcmread every overlay file and unpack each overlay plane with pydicom's
    Dataset.overlay_array (what any overlay reader must at least do; no geometry, no segments)."""
    import pydicom

    files = _overlay_files(workdir)
    planes = 0
    with _Clock() as clock:
        for path in files:
            ds = pydicom.dcmread(path)
            for group in range(0x6000, 0x6020, 2):
                if (group, 0x3000) in ds:
                    planes += int(ds.overlay_array(group).any() or 1)
    return dict(clock.result, files=len(files), planes=planes)


def _import_ours() -> None:
    """Import everything our code paths load lazily, so the clock measures work, not imports."""
    import nrrd  # noqa: F401
    import pydicom.pixels  # noqa: F401
    import slicerio  # noqa: F401

    from DicomAnnotEmbedLib import api

    from DicomAnnotEmbedLib.files import markups_io, segio

    from DicomAnnotEmbedLib.encodings import overlay

    from DicomAnnotEmbedLib.core import rasterize, series  # noqa: F401


def _export_result(clock: _Clock, result) -> dict:
    return dict(clock.result, files=sum(len(s.files) for s in result.series),
                planes=sum(len(s.planes) for s in result.series))


def run_export(workdir: Path, out: Path) -> dict:
    """Ours: api.export_overlay(series folder, .seg.nrrd, out_dir)."""
    _import_ours()
    from DicomAnnotEmbedLib import api

    with _Clock() as clock:
        result = api.export_overlay(workdir / SERIES_DIR, workdir / SEG_FILE, out_dir=out)
    return _export_result(clock, result)


def run_export_in_memory(workdir: Path, out: Path) -> dict:
    """Ours: api.export_overlay(series folder, Segmentation, out_dir), the segmentation read from
    the .seg.nrrd before the clock (as the Slicer module and API callers hold it in memory): the
    same files read and written as by the peer, plus the series' header pass."""
    _import_ours()
    from DicomAnnotEmbedLib import api
    from DicomAnnotEmbedLib.files.segio import load_segmentation

    segmentation = load_segmentation(workdir / SEG_FILE)
    with _Clock() as clock:
        result = api.export_overlay(workdir / SERIES_DIR, segmentation, out_dir=out)
    return _export_result(clock, result)


def run_import(workdir: Path, out: Path) -> dict:
    """Ours: api.import_overlay(overlay folder) into an in-memory Segmentation."""
    _import_ours()
    from DicomAnnotEmbedLib import api

    with _Clock() as clock:
        annotations = api.import_overlay(workdir / FIXTURE_DIR)
    return dict(clock.result, voxel_counts=count_voxels(annotations.segmentation))


def run_load_series(workdir: Path, out: Path) -> dict:
    """Ours: series.load_series(series folder) (headers, pixel data deferred)."""
    _import_ours()
    from DicomAnnotEmbedLib.core.series import load_series

    with _Clock() as clock:
        series = load_series(workdir / SERIES_DIR)
    return dict(clock.result, files=len(series.files))


def run_imports_only(workdir: Path, out: Path) -> dict:
    """Floor: interpreter + our imports, no work (shows the RSS every child starts from)."""
    _import_ours()
    return {"seconds": 0.0, "cpu_seconds": 0.0}


#: name -> (label, function, name of its peer or None)
VARIANTS: Dict[str, Tuple[str, Callable[[Path, Path], dict], Optional[str]]] = {
    "read_write": ("pydicom read+write unchanged", run_read_write, None),
    "read_overlay_files": ("pydicom read of the overlay files (+PixelData)", run_read_overlay_files, None),
    "export_in_memory": ("ours: overlay export (in-memory segmentation)", run_export_in_memory, "read_write"),
    "export": ("ours: overlay export (.seg.nrrd)", run_export, "read_write"),
    "import": ("ours: overlay import", run_import, "read_overlay_files"),
    "read": ("(context) pydicom read of the source series (+PixelData)", run_read, None),
    "read_overlays": ("(context) pydicom read + overlay_array", run_read_overlays, None),
    "load_series": ("ours: load series headers", run_load_series, None),
    "imports_only": ("(floor) interpreter + imports only", run_imports_only, None),
}


def child_main(variant: str, workdir: Path, out: Path) -> None:
    """Run one variant in this (fresh) process and print its result as one JSON line."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    result = VARIANTS[variant][1](workdir, out)
    result["maxrss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB.

    VmHWM from /proc/self/status: Linux carries ``ru_maxrss`` over fork + exec, so a child's
    ``getrusage(RUSAGE_SELF)`` (and the parent's RUSAGE_CHILDREN) would report the parent's peak
    when that is larger; VmHWM belongs to the new address space only. Falls back to ru_maxrss.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# --- the parent: repeats, table, machine info, profile --------------------------------------

def run_child(variant: str, workdir: Path, out: Path) -> dict:
    """One fresh subprocess for ``variant``; returns its JSON result plus the process wall time."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # Start every run with no dirty pages: the kernel writing back the previous run's files
    # (up to 130 MB) slowed whichever variant came next by up to 50 % (mostly the peer).
    os.sync()
    command = [sys.executable, str(Path(__file__).resolve()), "--child", variant,
               "--workdir", str(workdir), "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"variant {variant} failed ({done.returncode}):\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = wall
    return result


def check_result(variant: str, result: dict, expected_counts: Dict[str, int], n_files: int) -> None:
    """Make sure each variant did the whole job (a fast wrong answer is no benchmark)."""
    if "files" in result and result["files"] != n_files:
        raise RuntimeError(f"{variant}: {result['files']} files instead of {n_files}")
    if variant in ("export", "export_in_memory", "read_overlays") and result["planes"] < N_SEGMENTS:
        raise RuntimeError(f"export wrote {result['planes']} planes instead of {N_SEGMENTS}")
    if variant == "import" and result["voxel_counts"] != expected_counts:
        raise RuntimeError(f"import gave voxel counts {result['voxel_counts']}, expected {expected_counts}")


def machine_info(workdir: Path) -> List[str]:
    """CPU model, cores, RAM, file system of the workdir and library versions."""
    import pydicom

    cpu = cpu_model()
    ram = memory_text()
    fs = "unknown"
    try:
        best = ""
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, kind = line.split()[:3]
            if str(workdir.resolve()).startswith(mount) and len(mount) > len(best):
                best, fs = mount, f"{kind} on {mount}"
    except (OSError, ValueError):
        pass
    return [f"- CPU: {cpu}; cores: {os.cpu_count()}; RAM: {ram}",
            (f"- Python {platform.python_version()} ({platform.system()} {platform.release()}), "
             f"pydicom {pydicom.__version__}, numpy {np.__version__}"),
            f"- workdir file system: {fs}"]


#: Targets: ours / peer, at most.
TARGETS = {"export": 1.5, "export_in_memory": 1.5, "import": 1.5}


def benchmark(workdir: Path, repeats: int, expected_counts: Dict[str, int], n_files: int,
              only: Optional[List[str]] = None) -> None:
    """Run every variant (or those in ``only`` and their peers) ``repeats`` times (fresh
    subprocesses) and print the Markdown table."""
    chosen = [v for v in VARIANTS if only is None or v in only or any(
        VARIANTS[o][2] == v for o in only if o in VARIANTS)]
    # Rounds of one run of each variant, so that a busy spell of the machine (other processes)
    # slows peers and ours alike instead of all the repeats of one variant.
    runs: Dict[str, List[dict]] = {variant: [] for variant in chosen}
    for n in range(repeats):
        for variant in chosen:
            result = run_child(variant, workdir, workdir / RUNS_DIR / variant)
            check_result(variant, result, expected_counts, n_files)
            runs[variant].append(result)
            print(f"  {VARIANTS[variant][0]}: run {n + 1}/{repeats}: {result['seconds']:.2f} s "
                  f"(process {result['process_seconds']:.2f} s, peak RSS {result['maxrss_mib']:.0f} MiB)",
                  file=sys.stderr)
    summary: Dict[str, dict] = {}
    for variant, results in runs.items():
        summary[variant] = {
            "seconds": statistics.median(r["seconds"] for r in results),
            "min_seconds": min(r["seconds"] for r in results),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in results),
            "process_seconds": statistics.median(r["process_seconds"] for r in results),
            "max_rss": max(r["maxrss_mib"] for r in results)}
    shutil.rmtree(workdir / RUNS_DIR, ignore_errors=True)

    print()
    print("| variant | median s | min s | median CPU s | median process s | peak RSS MiB | ratio to peer "
          "(median s; median CPU s; min s; per round) | target |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for variant in chosen:
        label, _, peer = VARIANTS[variant]
        m = summary[variant]
        ratio = target = ""
        if peer is not None:
            value = m["seconds"] / summary[peer]["seconds"]
            # Ratios within each round (runs next to each other) vary less than the times do.
            rounds = sorted(a["seconds"] / b["seconds"] for a, b in zip(runs[variant], runs[peer]))
            ratio = (f"{value:.2f}x; {m['cpu_seconds'] / summary[peer]['cpu_seconds']:.2f}x; "
                     f"{m['min_seconds'] / summary[peer]['min_seconds']:.2f}x "
                     f"(rounds {rounds[0]:.2f}-{rounds[-1]:.2f}x) {VARIANTS[peer][0]}")
            target = f"<= {TARGETS[variant]}x: {'met' if value <= TARGETS[variant] else 'MISSED'}"
        timed = variant != "imports_only"
        seconds = f"{m['seconds']:.3f} | {m['min_seconds']:.3f} | {m['cpu_seconds']:.3f}" if timed else "- | - | -"
        print(f"| {label} | {seconds} | {m['process_seconds']:.2f} | {m['max_rss']:.0f} | {ratio} | {target} |")
    print()
    print(f"{repeats} rounds of fresh subprocesses, one per variant a round. 's' is timed in the child "
          f"after its imports, 'CPU s' is the child's CPU time over the same work; 'process s' is the "
          f"whole child (interpreter start + imports + work). Peak RSS is the largest VmHWM of the "
          f"child over the repeats. Page cache warm (one read of every input before the runs, nothing "
          f"dropped); writes are not fsync'ed. The targets are judged on the median wall times.")
    print()
    print("\n".join(machine_info(workdir)))


def print_profile(profile: cProfile.Profile, title: str, top: int = 15, by: str = "cumulative") -> None:
    """Top ``top`` functions by cumulative (or own) time as a Markdown table."""
    total = pstats.Stats(profile).total_tt  # type: ignore[attr-defined]
    profile_table(profile, f"### {title}: top {top} by {by} time (total {total:.2f} s)", top, by,
                  str(Path(__file__).resolve()))


def profile(workdir: Path, top: int) -> None:
    """Run our export and import once each under cProfile (in this process, after a warm cache and
    with the imports done) and print the top functions by cumulative and by own time."""
    _import_ours()
    from DicomAnnotEmbedLib import api

    out = workdir / RUNS_DIR / "profile_export"
    shutil.rmtree(out, ignore_errors=True)
    for title, call in (
            ("overlay export", lambda: api.export_overlay(workdir / SERIES_DIR, workdir / SEG_FILE, out_dir=out)),
            ("overlay import", lambda: api.import_overlay(workdir / FIXTURE_DIR))):
        profiler = cProfile.Profile()
        profiler.runcall(call)
        print_profile(profiler, title, top, "cumulative")
        print_profile(profiler, title, top, "own")
    shutil.rmtree(workdir / RUNS_DIR, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry: prepare data, warm the cache, benchmark and/or profile."""
    parser = argparse.ArgumentParser(
        description="Time overlay export/import against plain pydicom on a synthetic 512x512x200 CT "
                    "series with 10 segments (fresh subprocess per run, median of --repeats).")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for the generated data (reused when it holds data of the same "
                             "parameters); default: a temporary folder, deleted at the end")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns (default 512)")
    parser.add_argument("--slices", type=int, default=200, help="number of slices/files (default 200)")
    parser.add_argument("--profile", action="store_true",
                        help="also run our export and import once under cProfile and print the top functions")
    parser.add_argument("--top", type=int, default=15, help="functions shown by --profile (default 15)")
    parser.add_argument("--no-bench", action="store_true", help="skip the timing table (with --profile)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), metavar="NAME",
                        help="run only these variants and their peers (default: all; names: "
                             + ", ".join(VARIANTS) + ")")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child_main(args.child, args.workdir, args.out)
        return 0
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="dae-bench-")) if temporary else args.workdir.resolve()
    try:
        counts = prepare_data(workdir, args.size, args.slices)
        print(f"warm-up: read {warm_cache(workdir) / 2 ** 20:.0f} MiB of inputs once", file=sys.stderr)
        if not args.no_bench:
            benchmark(workdir, args.repeats, counts, args.slices, args.variants)
        if args.profile:
            profile(workdir, args.top)
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
