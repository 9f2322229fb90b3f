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
   single-frame files written with :func:`DicomAnnotEmbedLib.dicomize.dicomize_array`; a
   segmentation with 10 non-overlapping ellipsoids (3 mm to 70 mm semi-axes, spread through
   the volume) built as an in-memory :class:`Segmentation` and saved as ``.seg.nrrd``; and one
   overlay export of it, used as the input of the import benchmark.
2. Reads every input file once (warm-up) so that every variant sees a warm OS page cache.
   Nothing is dropped from the page cache, and written files are not fsync'ed by anyone.
3. Runs each variant ``--repeats`` times, each time in a fresh Python subprocess. The child
   imports the modules the variant uses, then times only the work (``s``). ``process s`` is
   the wall time of the whole child (interpreter start + imports + work). Peak RSS is the
   child's own VmHWM (see :func:`peak_rss_mib`). Output folders are emptied between repeats,
   outside the clock. Each child checks its result (files, planes, voxel counts per segment).

Variants: pydicom read+write unchanged (peer of export), pydicom read with PixelData (peer of
import), our overlay export (headers + .seg.nrrd + 200 files written), our overlay import
(headers + overlay planes into an in-memory Segmentation, nothing written), for context pydicom
read + ``Dataset.overlay_array`` of every plane, our series header loading, and the
interpreter + imports floor. Targets: export <= 1.5 x read+write, import <= 1.5 x read.

Notes (2-core AMD EPYC VM, 23.5 GiB, ext4; Python 3.11.7, pydicom 3.0.2, numpy 2.4.6)
------------------------------------------------------------------------------------
Current figures (medians of 5, after the changes below): export 1.37 s = 3.7 x read+write
(0.37 s), peak 166 MiB; import 0.52 s = 8.1 x bare read (0.06 s) and ~1.9 x "read +
overlay_array" (0.27 s), peak 189 MiB. Both 1.5 x targets are missed. Our times vary more than
pydicom's on this VM (import 0.41 to 0.52 s within one run).

What the first profile found, and what was changed because of it:

* ``Segmentation.voxel_counts`` did one ``np.bincount`` over the whole 52 M-voxel layer, an int64
  temporary of 420 MB, 0.1 to 0.9 s and the export's 516 MiB peak. Now one bincount per slice
  (``Segmentation.slice_voxel_counts``), 0.06 s; the per-slice counts also let the export skip
  the mask comparison on slices where a segment is absent.
* ROI statistics decoded every image to float (``modality_frames``). Now taken on the stored
  values under the mask and rescaled (``overlay._RoiStatistics``); pixels are decoded only on
  images that carry a segment.
* Import filled ten whole-volume boolean masks (10 x 52 MB; page faults charged to ``_paste``)
  and scanned them again in ``add_segment``. Now overlay planes are kept as packed bits per
  slice and segments are stored slice by slice (``Segmentation.add_segment_slices``): 405 ->
  189 MiB.
* Headers are read with ``stop_before_pixels`` (one pass reads the overlay planes too; no
  re-open per deferred element); the same private metadata JSON is parsed once per series.

Where the time still goes (cProfile, which inflates pydicom's share about 2 x):

* Export: pydicom writing is the largest item: output files have ~121 elements against ~55 in
  the source (per plane: rows, columns, description, type, origin, bits allocated, bit position,
  ROI area/mean/SD, label, data), and ``write_data_element`` costs per element, not per byte.
  Then the fixed costs the peer does not have: ``.seg.nrrd`` inflate 0.14 s (zlib), header
  pass and geometry ~0.11 s. Writing the overlay groups as pre-encoded bytes would cut the
  per-element cost; not done (it bypasses pydicom's writer).
* Import: pydicom element access (``Dataset.__getitem__`` / value conversion, ~25 k calls for
  200 files x 16 groups) dominates; the bare-read peer converts nothing, which is why the ratio
  to it is large while the ratio to reading the same overlays with pydicom is ~1.9 x.
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
    from DicomAnnotEmbedLib.geometry import VolumeGeometry

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
    y = geometry.origin[1] + np.arange(rows)[:, None] * SPACING_MM[1]
    x = geometry.origin[0] + np.arange(columns)[None, :] * SPACING_MM[0]
    half_x, half_y = 0.45 * columns * SPACING_MM[0], 0.35 * rows * SPACING_MM[1]
    plane = np.full((rows, columns), -1000, dtype=np.int16)
    plane[(x / half_x) ** 2 + (y / half_y) ** 2 <= 1.0] = 40
    for side in (-1, 1):
        lung = ((x - side * 0.45 * half_x) / (0.3 * half_x)) ** 2 + ((y + 0.1 * half_y) / (0.6 * half_y)) ** 2 <= 1
        plane[lung] = -850
    plane[(x / 15.0) ** 2 + ((y - 0.7 * half_y) / 15.0) ** 2 <= 1.0] = 700
    volume = np.broadcast_to(plane, geometry.shape) + rng.integers(-25, 26, size=geometry.shape, dtype=np.int16)
    offsets = np.arange(N_SEGMENTS + 1, dtype=np.int16) * 15  # label n: +15 n HU
    volume += offsets[labels]
    return volume


def make_segmentation(geometry, labels: np.ndarray):
    """The in-memory Segmentation: one layer, one segment per label, with names, colours, codes."""
    from DicomAnnotEmbedLib.model import Code, Segment, Segmentation, Terminology, _default_color

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
    from DicomAnnotEmbedLib.dicomize import dicomize_array
    from DicomAnnotEmbedLib.segio import write_seg_nrrd

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


def run_read_write(workdir: Path, out: Path) -> dict:
    """pydicom peer of export: dcmread every file and save_as it unchanged into ``out``."""
    import pydicom

    files = _series_files(workdir)
    start = time.perf_counter()
    for path in files:
        pydicom.dcmread(path).save_as(out / path.name)
    return {"seconds": time.perf_counter() - start, "files": len(files)}


def run_read(workdir: Path, out: Path) -> dict:
    """pydicom peer of import: dcmread every file and touch PixelData (its bytes are read)."""
    import pydicom

    files = _series_files(workdir)
    start = time.perf_counter()
    size = 0
    for path in files:
        size += len(pydicom.dcmread(path).PixelData)
    return {"seconds": time.perf_counter() - start, "files": len(files), "bytes": size}


def run_read_overlays(workdir: Path, out: Path) -> dict:
    """Context for import: dcmread every overlay file and unpack each overlay plane with pydicom's
    Dataset.overlay_array (what any overlay reader must at least do; no geometry, no segments)."""
    import pydicom

    files = sorted(p for p in (workdir / FIXTURE_DIR).iterdir() if p.is_file())
    start = time.perf_counter()
    planes = 0
    for path in files:
        ds = pydicom.dcmread(path)
        for group in range(0x6000, 0x6020, 2):
            if (group, 0x3000) in ds:
                planes += int(ds.overlay_array(group).any() or 1)
    return {"seconds": time.perf_counter() - start, "files": len(files), "planes": planes}


def _import_ours() -> None:
    """Import everything our code paths load lazily, so the clock measures work, not imports."""
    import nrrd  # noqa: F401
    import pydicom.pixels  # noqa: F401
    import slicerio  # noqa: F401

    from DicomAnnotEmbedLib import api, markups_io, overlay, rasterize, segio, series  # noqa: F401


def run_export(workdir: Path, out: Path) -> dict:
    """Ours: api.export_overlay(series folder, .seg.nrrd, out_dir)."""
    _import_ours()
    from DicomAnnotEmbedLib import api

    start = time.perf_counter()
    result = api.export_overlay(workdir / SERIES_DIR, workdir / SEG_FILE, out_dir=out)
    return {"seconds": time.perf_counter() - start, "files": sum(len(s.files) for s in result.series),
            "planes": sum(len(s.planes) for s in result.series)}


def run_import(workdir: Path, out: Path) -> dict:
    """Ours: api.import_overlay(overlay folder) into an in-memory Segmentation."""
    _import_ours()
    from DicomAnnotEmbedLib import api

    start = time.perf_counter()
    annotations = api.import_overlay(workdir / FIXTURE_DIR)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "voxel_counts": count_voxels(annotations.segmentation)}


def run_load_series(workdir: Path, out: Path) -> dict:
    """Ours: series.load_series(series folder) (headers, pixel data deferred)."""
    _import_ours()
    from DicomAnnotEmbedLib.series import load_series

    start = time.perf_counter()
    series = load_series(workdir / SERIES_DIR)
    return {"seconds": time.perf_counter() - start, "files": len(series.files)}


def run_imports_only(workdir: Path, out: Path) -> dict:
    """Floor: interpreter + our imports, no work (shows the RSS every child starts from)."""
    _import_ours()
    return {"seconds": 0.0}


#: name -> (label, function, name of its peer or None)
VARIANTS: Dict[str, Tuple[str, Callable[[Path, Path], dict], Optional[str]]] = {
    "read_write": ("pydicom read+write unchanged", run_read_write, None),
    "read": ("pydicom read (+PixelData)", run_read, None),
    "export": ("ours: overlay export", run_export, "read_write"),
    "import": ("ours: overlay import", run_import, "read"),
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
    if variant in ("export", "read_overlays") and result["planes"] < N_SEGMENTS:
        raise RuntimeError(f"export wrote {result['planes']} planes instead of {N_SEGMENTS}")
    if variant == "import" and result["voxel_counts"] != expected_counts:
        raise RuntimeError(f"import gave voxel counts {result['voxel_counts']}, expected {expected_counts}")


def machine_info(workdir: Path) -> List[str]:
    """CPU model, cores, RAM, file system of the workdir and library versions."""
    import pydicom

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kib / 1024 ** 2:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
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
TARGETS = {"export": 1.5, "import": 1.5}


def benchmark(workdir: Path, repeats: int, expected_counts: Dict[str, int], n_files: int) -> None:
    """Run every variant ``repeats`` times (fresh subprocesses) and print the Markdown table."""
    summary: Dict[str, dict] = {}
    for variant, (label, _, _) in VARIANTS.items():
        results = []
        for n in range(repeats):
            result = run_child(variant, workdir, workdir / RUNS_DIR / variant)
            check_result(variant, result, expected_counts, n_files)
            results.append(result)
            print(f"  {label}: run {n + 1}/{repeats}: {result['seconds']:.2f} s "
                  f"(process {result['process_seconds']:.2f} s, peak RSS {result['maxrss_mib']:.0f} MiB)",
                  file=sys.stderr)
        summary[variant] = {
            "seconds": statistics.median(r["seconds"] for r in results),
            "min_seconds": min(r["seconds"] for r in results),
            "process_seconds": statistics.median(r["process_seconds"] for r in results),
            "max_rss": max(r["maxrss_mib"] for r in results)}
    shutil.rmtree(workdir / RUNS_DIR, ignore_errors=True)

    print()
    print("| variant | median s | min s | median process s | peak RSS MiB | ratio to peer (median) | target |")
    print("|---|---:|---:|---:|---:|---|---|")
    for variant, (label, _, peer) in VARIANTS.items():
        m = summary[variant]
        ratio = target = ""
        if peer is not None:
            value = m["seconds"] / summary[peer]["seconds"]
            ratio = f"{value:.2f}x {VARIANTS[peer][0]}"
            target = f"<= {TARGETS[variant]}x: {'met' if value <= TARGETS[variant] else 'MISSED'}"
        timed = variant != "imports_only"
        seconds = f"{m['seconds']:.2f} | {m['min_seconds']:.2f}" if timed else "- | -"
        print(f"| {label} | {seconds} | {m['process_seconds']:.2f} | {m['max_rss']:.0f} | {ratio} | {target} |")
    print()
    print(f"{repeats} fresh subprocesses per variant. 's' is timed in the child after its imports; "
          f"'process s' is the whole child (interpreter start + imports + work). Peak RSS is the "
          f"largest VmHWM of the child over the repeats. Page cache warm (one read of every input "
          f"before the runs, nothing dropped); writes are not fsync'ed.")
    print()
    print("\n".join(machine_info(workdir)))


def _short(filename: str) -> str:
    """A readable location: package-relative for site-packages and our library."""
    for marker in ("site-packages/", "DicomAnnotEmbed/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def print_profile(profile: cProfile.Profile, title: str, top: int = 15, by: str = "cumulative") -> None:
    """Top ``top`` functions by cumulative (or own) time as a Markdown table."""
    stats = pstats.Stats(profile)
    column = 3 if by == "cumulative" else 2
    rows = sorted(stats.stats.items(), key=lambda item: item[1][column], reverse=True)  # type: ignore[attr-defined]
    print(f"\n### {title}: top {top} by {by} time (total {stats.total_tt:.2f} s)\n")  # type: ignore[attr-defined]
    print("| cumulative s | own s | calls | function |")
    print("|---:|---:|---:|---|")
    shown = 0
    this_file = str(Path(__file__).resolve())
    for (filename, line, name), (_, calls, own, cumulative, _) in rows:
        if filename == this_file:
            continue  # the benchmark's own wrapper
        where = name if filename == "~" else f"{_short(filename)}:{line}({name})"
        print(f"| {cumulative:.2f} | {own:.2f} | {calls} | `{where}` |")
        shown += 1
        if shown == top:
            break


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
            benchmark(workdir, args.repeats, counts, args.slices)
        if args.profile:
            profile(workdir, args.top)
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
