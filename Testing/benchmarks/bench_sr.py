#!/usr/bin/env python
"""Benchmark: SR measurements and the SR export on case C (100 segments on 512x512x200), with
pyradiomics (the radiomics community's shape and first-order features) and our BINARY SEG export
measured in the same run.

Run by hand (not a pytest test; it asserts values, not timings)::

    python Testing/benchmarks/bench_sr.py                      # Markdown tables on stdout
    python Testing/benchmarks/bench_sr.py --repeats 5 --workdir /tmp/dae-seg-bench
    python Testing/benchmarks/bench_sr.py --no-pyradiomics     # when pyradiomics is not installed

The data are bench_seg.py's (same work folder: the synthetic CT series and case C's labels).

What it measures
----------------
1. In this process, warm, median of ``--repeats``: ``measure_segmentation`` of the 100 segments
   with the CT under them (volume, mean/SD/min/max HU, surface area, maximum 3D diameter), against
   pyradiomics' shape (MeshVolume, SurfaceArea, Maximum3DDiameter, VoxelVolume) and first-order
   (Mean, Minimum, Maximum) features of the same segments, one extractor call per segment as
   pyradiomics users run it. Values are compared segment by segment (table of the largest
   relative differences).
2. (Run first.) Fresh processes, ``--repeats`` interleaved rounds (each command once a round, in turn):
   ``dicomannotembed seg export --type binary`` (the reference the issue names) and
   ``dicomannotembed sr export`` of that SEG (reads the SEG and the series, measures, writes the
   document with its image library); with ``--before TREE`` also the ``sr export`` of another
   commit's source tree (``git archive``), through PYTHONPATH, in the same rounds. Wall and CPU
   seconds (user + system, rusage of the children: on a loaded machine wall time mostly measures
   the other users) and peak RSS of each. Peak RSS: until 2026-12-05 the
   benchmark loaded the CT and the labels before starting the children, and a child's ru_maxrss
   starts from its parent's RSS at fork (execve keeps it): every child showed at least ~346 MiB.
   README's 373 MiB for the BINARY SEG export was that floor (/usr/bin/time: 117 MiB); the SR
   export's 404 MiB at 8006383 was its own (/usr/bin/time: 404 MiB). The children now run while
   this process is small.

Notes (profiles; figures in README "DICOM SR" > "Speed")
---------------------------------------------------------
* Before: ``measure_segmentation`` took 11 s on case C (cProfile): convex hulls of the lattice-
  reduced mesh vertices 3.3 s (745,000 candidates), pairwise distances among 78,000 hull vertices
  3.2 s, VTK's mesh 2.4 s, the lattice reduction 1.3 s, importing scipy 0.8 s.
* Now: the surface area is a histogram of the 256 cell configurations (8 shifted uint8 ORs and
  a bincount per segment) times a table of their areas on the grid (VTK's own triangulation,
  computed once); the diameter's candidates are the first and last boundary crossing of each
  grid line (argmax on the crop), pruned with the triangle inequality around the centroid
  (745,000 -> 77,000 points), hull only above 4,000 remaining points (2 of 100 segments).
  1.2 s CPU warm.
* 2026-12-05, the whole ``sr export`` of case C in a fresh process, CPU seconds per part
  (time.process_time around each function, unprofiled; cProfile inflates the call-heavy pydicom
  and highdicom parts several times over), load 2-6: 7.5 s in all: measurements 3.0 (of which
  the diameter 1.6), pydicom's writer 1.0, the 100 highdicom groups 0.87, the image library 0.70,
  SEG import 0.68, the document 0.26, reading the CT 0.21, imports 0.33.
  - The measurements took 1.1 s with OPENBLAS_NUM_THREADS=1 and 3.0 s without: OpenBLAS runs a
    matrix product above 65,536 x 4 multiply-adds on both cores and its threads then spin between
    calls, so every numpy step after a product was charged twice (and took a core from the other
    users). The products were the diameter's pair distances (blocks of 512 x N x 3) and the
    mapping of the boundary extremes to LPS (N x 3 x 3, N up to 40,000 a segment). Now the pair
    distances are an einsum (no BLAS) and the mapping goes in chunks of 16,384 rows (one
    thread; each row's result is the same). 3.0 -> 1.0 s warm.
  - The pairwise stage compared 66 million pairs: the grid-line reduction and the hull ran only
    above 4,000 candidates, so segments with 1,000-4,000 compared all pairs. Now the grid-line
    reduction runs above 512 and the hull above 600: 6.5 million pairs, the diameter 0.78 ->
    0.30 s warm. The values are the same to the last bit (case C, and
    Testing/Python/core/test_measurements_unchanged.py against the commit before).
  - The surface area's table of the 256 cell configurations is kept in the module (tested equal
    to VTK's triangulation): importing VTK and triangulating took 0.2 s.
  - pydicom's writer, ~13 microseconds an element for 75,000 elements: the Content Sequence is
    encoded by encodings/sr/writer.py (the same bytes, tested; other elements, raw elements and
    ambiguous VRs go to pydicom's own writer) and handed to pydicom as a raw element: 1.0 ->
    0.2 s.
  - highdicom's group constructor searched each measurement's content tree for coordinates
    (0.55 s of 0.87); each NUM item cost ~0.6 ms of checks and code conversions. The groups are
    now built without measurements, which are inserted where highdicom puts them, and each NUM
    item is a copy of highdicom's item of its kind with its own value: 0.87 -> 0.21 s
    (test_sr_speed_equivalence.py: element by element equal to the highdicom engine's document).
  - The image library's 199 copied entries share the template's unchanged content items (only
    the SOP reference and the X, Y, Z items are copied): 0.45 -> 0.11 s warm (its first call
    also pays highdicom's module tables, ~0.3 s, which the document constructor needs anyway).
  - The check for non-ASCII text walked the 75,000 elements with Dataset.iterall: 0.12 s; reading
    the datasets' own dictionaries: 0.06 s.
  - After: 4.2 s CPU in a fresh process. Left: SEG import 0.64-0.74 (encodings/seg, not this
    path's code), importing scipy.spatial for the hull 0.3, highdicom's import and module
    tables ~0.45, the measurements 1.0 warm (bounding boxes 0.26, surface 0.18, diameter 0.30),
    reading the CT 0.2-0.35, the image library and document 0.3, imports 0.33.
* 2026-12-05, later (issue 14, highdicom out of ``sr export``). highdicom still cost ~1 s CPU of
  the 4.2: ``import highdicom`` (+ pydicom.sr.codedict) 0.18, its 22 MB table of the standard's
  modules 0.33 (read by ``does_iod_have_pixel_data`` for the image library's descriptors and the
  contributing equipment, and for the patient/study module copy), the groups 0.27, the image
  library 0.59 with the tables, the document 0.19. encodings/sr/template.py now builds the whole
  document with pydicom (content items, TID 1500/1600/1410/1411/1501 templates, header modules,
  evidence; highdicom only for source SOP classes it does not list); the documents are equal
  element by element but for highdicom's own Contributing Equipment item
  (test_sr_speed_equivalence.py), and a fresh process imports no highdicom (test_sr_template.py).
  Content items set their elements directly (``Dataset.__setattr__`` checks and converts each
  value, ~10 microseconds; 75,000 elements) and share one code item per code: the 100 groups
  0.27 -> 0.05 s; the content writer encodes an item that several sequences share once (the code,
  algorithm and image library items, ~40,000 of the elements): 0.21 -> 0.06-0.09 s; the character
  set and coding scheme walks visit it once: 0.1 -> 0.05 s; the library's copies set their
  elements directly: 0.12 -> 0.05 s. Fresh process, case C, CPU s, median of 3 interleaved
  rounds, load 3.6: the tree before these commits (245fc13) 3.53, with only this work (encodings/sr and
  dicom/header_items.py of c1c5b1e on it) 2.30, the tree at c1c5b1e (with the SEG decoding work
  of the same day) 2.05, the working tree 2.04; BINARY SEG 0.99: ratio 2.07-2.11 (target 2).
  Left (time.process_time, unprofiled): the measurements 0.73-0.8 and the SEG import (neither is
  this encoder's), imports 0.33 (pydicom 0.15, numpy 0.14), the image library 0.1 with its
  first entry, the document 0.08, the groups 0.05, writing 0.06-0.09.
* 2026-12-05, the measurements and the reading around them (time.process_time per function in a
  fresh process, then warm in process):
  - numpy advises transparent huge pages for arrays of 4 MB and more; faulting in a fresh 100 MB
    volume took 0.01-0.46 s with the advice (the kernel had the pages ready or not) and 0.05 s on
    4 KiB pages. The CLI switches the advice off (core.arrays.prefer_small_pages), and the series'
    volumes are arrays.zeros: sr export's system time 0.5-1.4 -> 0.25-0.5 s.
  - scipy.spatial (0.2-0.3 s to import) was only there for the convex hull of the diameter's
    candidates. Dropping the mesh vertices that lie between two others along 13 lattice
    directions (the axes, 6 face and 4 body diagonals) instead of the 3 axes leaves 1,900 of the
    largest segment's 17,800 (the axes alone: 6,400), few enough to compare pairwise: no hull, no
    scipy; the values are the same to the last bit (case C's 700; test_measurements_unchanged).
  - Bounding boxes: arrays.label_extents (the changes along rows, one pass) 0.26 -> 0.04 s, and
    the SR export takes its empty segments from them instead of counting voxels (0.07 s).
  - Surface: the cell configurations built one axis at a time (3 shifted ORs, not 8): 0.19 -> 0.12 s.
  - The farthest-point steps over the 1.8 million boundary points: the squared coordinates summed
    column by column (np.linalg.norm(axis=1) to the bit, without its strided reduction): 0.17 -> 0.09 s.
  - Reading the CT: the Pixel Data value read at the offset the header scan found
    (core.header_blocks.native_pixel_data) instead of pydicom parsing each file again: 0.19 -> 0.12 s.
  - measure_segmentation warm: 1.05 -> 0.72-0.78 s CPU. Final run (2d27c53, load 0.35-0.67,
    5 rounds): sr export 2.08 s CPU (1.98 wall), BINARY SEG export 1.12 (1.09): ratio 1.86
    (1.82 wall), target 2: met. 8006383 in the same rounds: 5.39 s (4.82 x). Peak RSS 260 MiB
    against the SEG export's 117 (2.2 x): the SR holds the CT (int16, 100 MB) for the statistics
    and the labels (52 MB); the SEG export holds the labels. Streaming the statistics slice by
    slice would drop the CT; not done.
* 2026-12-05, evening (b3d6d64 -> b0a384e), quiet machine (load 0.1-0.5), 7 rounds:
  - Memory. RSS sampled every 2 ms with the main thread's stack at the peak: with the CT gone the
    peak was in ``_surface_area`` of a large segment (labels 52 MB + interpreter and headers ~60 MB
    + the gathered values + that segment's temporaries). Gathering every segment's values first and
    concatenating them at the end held 2 x 32 MB (pieces and result) and the heap kept it (199
    MiB); letting each segment's values go as soon as its last plane is in (statistics computed
    then) leaves only the segments crossing the current plane: 155 MiB against the SEG export's
    117 (1.32 x; was 231, 1.96-2.0 x). ``ReferenceSeries.modality_planes`` + ``_statistics_by_planes``:
    0.06 s reading + ~0.06 s gathering warm, against 0.12 s for ``read_int16_volume`` and the
    per-segment ``image[box][crop]`` before.
  - The diameter's pair stage compared 22 million pairs (the radius bound keeps every candidate of
    a round object): comparing only the point pairs of grid cells whose boxes can beat the bound
    leaves 0.8 million (per axis min(10, round((N / 2) ** (1/3))) cells), 0.09 -> 0.04 s warm on the
    largest 19 segments, 0.29 -> 0.23 s for all 100; the same 100 values to the bit.
  - Tried and dropped: the statistics from int16 sums (bit-identical, 0.01 s); fewer farthest-point
    steps (1 to 4: the same time, the bound matters little once the cells prune); run-based
    ``label_extents`` reductions (0.002 s).
  - Fresh process, CPU s: sr export 2.14 (b3d6d64) -> 1.93; BINARY SEG export 0.87 (it was 1.12 at
    2d27c53: the CLI's one OpenBLAS thread and gc.freeze at exit, bench_startup.py notes): ratio
    2.21 (wall 2.00), target 2 missed. Per function (time.process_time, fresh process): imports
    0.31, SEG decoding 0.28, diameter 0.25 (mean and centring of the 1.8 million boundary points
    0.04, radius and farthest-point steps 0.05, lattice reduction 0.07, cell pairs 0.07), planes and
    statistics 0.24, boundary extremes 0.15 (argmax along the crop's axes, 0.1), surface 0.14,
    document and image library 0.15, series headers 0.08, bounding boxes 0.04.
  - ``--bytecode`` (new: the children keep their bytecode, as an installed package runs; this VM
    sets PYTHONDONTWRITEBYTECODE), 7 rounds, load 1.0-1.8 (a fuzz run had just ended): BINARY SEG
    export 0.78 s, sr export 1.96 s, b3d6d64's 2.05 s: 2.50 x (wall 2.25 x). The SEG export gains
    ~0.09 s from cached bytecode, the SR nothing measurable: the ratio is further from 2 as users
    run it, not nearer.
* 2026-12-05, fourth session (abebac7 -> 5090795): the three parts of the SR's own work, each
  profiled (py-spy of the fresh process, then time.process_time per function and per line, warm
  in process on case C's 100 crops, old and new module side by side), each change checked to
  give the same values to the bit (the 100 crops and 228 random ones on an axial and an oblique
  grid; test_measurements_unchanged) or the same bytes:
  - Surface: ``np.bincount`` of the 33 million cell configurations was 0.066 of the 0.117 s: it
    casts every uint8 cell to a 64-bit index first. Only cells with corners on both sides carry
    surface (1.8 million, 1 in 18): counting those alone 0.016 s. The pad is a zeros array filled
    in place and the shifted ORs write into their shifted operand: 0.117 -> 0.071 s.
  - Boundary extremes: argmax along an axis that is not the last copies the crop with that axis
    last, twice (first and last). The last inside voxel + 1 is the maximum of the mask times the
    voxel steps 1..n (uint8 up to 255, else uint16), the first is n minus the maximum with the
    steps reversed: reductions across the lines, no copy. 0.11 -> 0.055 s for the six; 0.14 ->
    0.083 s with the points' assembly.
  - Diameter: the farthest-point steps and the cell pairs index rows of 3 (``points[i] -
    points[j]``: 0.036 s for 1.26 million pairs); with the centred coordinates as three
    contiguous columns each pair is two single-value gathers per axis (0.006 s), the same
    arithmetic. The lattice reduction: np.lexsort of (position, line) was half of its 0.06 s and
    numpy's integer matrix products a plain loop; one stably sorted combined key (the lexsort's
    order, tested) and projections column by column, the points taken once at the end: 0.034 s.
    The centring stays a strided mean over the 1.8 million points (its bits set the values').
    Tried and left: more or fewer cells per axis (2 points a cell stays best), the mean as a
    sequential cumsum (the same bits, 0.008 s less: relies on numpy's reduction order).
  - Statistics: a boolean index into the plane's strided box view is slower than into a copy of
    the box (4,926 boxes: 0.052 -> 0.035 s). Gathering all segments of a plane at once by sorting
    its labelled voxels was slower (80,000 a plane). The CT's slope-1 rescale: 16-bit adds modulo
    2**16 where the result is known to fit int16 (0.029 -> 0.008 s for 200 slices).
  - ``measure_segmentation`` in the fresh process: 0.82 -> 0.61-0.65 s; warm, the crops' part
    0.53 -> 0.33 s.
  - SEG reading (encodings/seg, a helper's work, bench_startup.py has the SEG notes): BINARY frames'
    boxes in one pass, a segment's consecutive frames unpacked together, per-frame items that are
    alike read with numpy: 0.273 -> 0.209 s fresh.
  - The document (encodings/sr, a helper's work): the image library's copies share the template's
    element objects (0.122 -> 0.028 s), content items from an empty Dataset's state
    (header_items.new_dataset, ~1.3 instead of ~5 microseconds each), the collector paused while
    the document is built and written (~0.05 s of passes over objects that all stay alive):
    0.32 -> 0.15 s, the same bytes.
  - Fresh processes, 9 rounds, load ~1.0 (the benchmark alone): BINARY SEG export 0.90 s, sr export
    2.05 s (abebac7) -> 1.56 s: **1.73 x** (wall 1.55 x; target 2: met). With ``--bytecode``, 7
    rounds: 0.83, 2.02 -> 1.55 s: **1.87 x** (wall 1.65 x). Peak RSS 152 -> 142 MiB against 117
    (1.21 x).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_seg  # noqa: E402  (the data: series and case C labels)
from machine import cpu_model, memory_text  # noqa: E402

CASE = "C"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> str:
    return (f"{os.cpu_count()}-core {cpu_model()}, {memory_text()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}; load average at start "
            f"{os.getloadavg()[0]:.2f}")


def ours(segmentation, image):
    from DicomAnnotEmbedLib.core.measurements import measure_segmentation

    return measure_segmentation(segmentation, image, "CT")


def pyradiomics_features(labels: np.ndarray, ct: np.ndarray, geometry, chosen) -> dict:
    """{label: {feature: value}} from pyradiomics for the ``chosen`` labels, one execute() per label
    (as its users run it)."""
    import logging

    import SimpleITK as sitk
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor()
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(shape=["MeshVolume", "VoxelVolume", "SurfaceArea", "Maximum3DDiameter"],
                                   firstorder=["Mean", "Minimum", "Maximum"])
    image = geometry.to_sitk_image(ct)
    mask = geometry.to_sitk_image(labels)
    results = {}
    for value in chosen:
        features = extractor.execute(image, mask, label=value)
        results[value] = {k.split("_")[-1]: float(v) for k, v in features.items() if k.startswith("original_")}
    return results


def radiomics_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("pyradiomics")


def compare(measured: dict, segmentation, radiomics: dict) -> list:
    """Largest relative difference per quantity between ours and pyradiomics."""
    pairs = {"volume": "VoxelVolume", "surface_area": "SurfaceArea", "maximum_diameter": "Maximum3DDiameter",
             "mean": "Mean", "minimum": "Minimum", "maximum": "Maximum"}
    rows = []
    by_label = {s.label_value: measured[s.id] for s in segmentation.segments}
    for ours_name, theirs in pairs.items():
        worst, where = 0.0, None
        for label, theirs_values in radiomics.items():
            a = getattr(by_label[label], ours_name).value
            b = theirs_values[theirs]
            diff = abs(a - b) / max(abs(b), 1e-12)
            if diff >= worst:
                worst, where = diff, label
        rows.append((ours_name, theirs, worst, where))
    return rows


def timed_child(command: list, env=None) -> tuple:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one run of ``command``, from
    that child's own rusage (os.wait4)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dae-seg-bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pyradiomics", action="store_true")
    parser.add_argument("--before", type=Path, metavar="TREE", action="append", default=[],
                        help="a source tree of another commit (git archive): its `sr export` is run too, in the same "
                             "rounds, with TREE/DicomAnnotEmbed first on PYTHONPATH (repeatable)")
    parser.add_argument("--no-in-process", action="store_true", help="skip part 1 (measurements in this process)")
    parser.add_argument("--bytecode", type=Path, metavar="DIR",
                        help="children keep compiled bytecode in DIR (PYTHONPYCACHEPREFIX) even where "
                             "PYTHONDONTWRITEBYTECODE is set (this VM), after one round that is not counted: "
                             "as an installed package runs (bench_startup.py has the same option)")
    parser.add_argument("--radiomics-segments", type=int, default=10,
                        help="segments measured by both tools for the side-by-side comparison (pyradiomics takes "
                             "minutes per ten segments here; 100 for all)")
    args = parser.parse_args()

    from DicomAnnotEmbedLib.core.model import Segmentation
    from DicomAnnotEmbedLib.core.series import load_series
    from DicomAnnotEmbedLib.files.segio import write_seg_nrrd

    print(f"Machine: {machine()}\n")
    bench_seg.prepare_data(args.workdir, [CASE])
    geometry = bench_seg.make_geometry()
    series_dir = args.workdir / bench_seg.SERIES_DIR

    # 1. Fresh processes: BINARY SEG export, then the SR export of that SEG. First, while this process
    # is small: a child's peak RSS (ru_maxrss) starts from its parent's RSS at fork, which execve
    # keeps (with the CT and labels loaded here every child showed at least 346 MiB).
    out = args.workdir / "bench_sr"
    out.mkdir(exist_ok=True)
    seg_nrrd = out / "case_C.seg.nrrd"
    if not seg_nrrd.exists():
        write_seg_nrrd(seg_nrrd, Segmentation.from_label_map(geometry, np.load(args.workdir / f"labels_{CASE}.npy")))
    cli = [sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q"]
    seg_file, sr_file = out / "seg.dcm", out / "sr.dcm"
    runs = {"`seg export --type binary`": (cli + ["seg", "export", "--series", str(series_dir), "--segmentation",
                                                str(seg_nrrd), "--type", "binary", "--out", str(seg_file), "--force"],
                                         None),
            "`sr export` of that SEG (all measurements + document)": (
                cli + ["sr", "export", "--series", str(series_dir), "--seg", str(seg_file), "--out", str(sr_file),
                       "--force"], None)}
    for tree in args.before:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(tree.resolve() / "DicomAnnotEmbed")] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        runs[f"`sr export`, {tree.name}"] = (
            cli + ["sr", "export", "--series", str(series_dir), "--seg", str(seg_file), "--out",
                   str(out / f"sr_{tree.name}.dcm"), "--force"], env)
    if args.bytecode:
        for name, (command, env) in list(runs.items()):
            env = dict(env or os.environ, PYTHONPYCACHEPREFIX=str(args.bytecode))
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            runs[name] = (command, env)
    # the SEG first (the SR reads it), then the rounds: each command once a round, in turn
    results = {name: [] for name in runs}
    for round_number in range(-1 if args.bytecode else 0, args.repeats):
        for name, (command, env) in runs.items():
            results[name].append(timed_child(command, env))
        log(f"round {round_number + 1}: " + ", ".join(
            f"{name.split('`')[1]} {values[-1][0]:.2f} s wall {values[-1][1]:.2f} s CPU" for name, values in results.items()))
        if round_number < 0:  # the round that compiled the bytecode: not counted
            for values in results.values():
                values.clear()
    load_end = os.getloadavg()[0]
    print(f"\nFresh processes, {args.repeats} interleaved rounds; load average {load_end:.2f} at the end\n")
    print("| case C, fresh process | wall s (median) | CPU s (median) | CPU s (all rounds) | peak RSS MiB |\n"
          "|---|---:|---:|---|---:|")
    medians = {}
    for name, values in results.items():
        wall_s, cpu_s = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
        medians[name] = wall_s, cpu_s
        print(f"| {name} | {wall_s:.2f} | {cpu_s:.2f} | {', '.join(f'{v[1]:.2f}' for v in values)} | "
              f"{max(v[2] for v in values):.0f} |")
    seg_name = list(runs)[0]
    for name, label in zip(list(runs)[1:], ["SR / BINARY SEG (target <= 2)"] + [
            f"SR {tree.name} / BINARY SEG" for tree in args.before]):
        print(f"| ratio {label} | {medians[name][0] / medians[seg_name][0]:.2f} | "
              f"{medians[name][1] / medians[seg_name][1]:.2f} | | |")
    # 2. In process, warm.
    labels = np.load(args.workdir / f"labels_{CASE}.npy")
    series = load_series(series_dir)
    ct = series.read_volume()  # modality values (HU), as the SR export reads them
    segmentation = Segmentation.from_label_map(geometry, labels)
    cpu, wall = [0.0], [0.0]
    for _ in range(0 if args.no_in_process else args.repeats):
        c, w = time.process_time(), time.perf_counter()
        measured = ours(segmentation, ct)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    if not args.no_in_process:
        cpu, wall = cpu[1:], wall[1:]
        print("| measurements, case C, in process (warm) | wall s | CPU s |\n|---|---:|---:|")
        print(f"| ours: measure_segmentation (100 segments, all quantities) | {statistics.median(wall):.2f} | "
              f"{statistics.median(cpu):.2f} |")
    if not args.no_pyradiomics:
        # The same segments for both: every n-th label, largest first (labels are sorted by size).
        chosen = [int(v) for v in np.linspace(1, int(labels.max()), args.radiomics_segments).round()]
        subset = Segmentation.from_label_map(geometry, np.where(np.isin(labels, chosen), labels, 0))
        c, w = time.process_time(), time.perf_counter()
        measured_subset = ours(subset, ct)
        ours_wall, ours_cpu = time.perf_counter() - w, time.process_time() - c
        c, w = time.process_time(), time.perf_counter()
        radiomics = pyradiomics_features(labels, ct, geometry, chosen)
        theirs_wall, theirs_cpu = time.perf_counter() - w, time.process_time() - c
        print(f"| ours, the same {len(chosen)} segments | {ours_wall:.2f} | {ours_cpu:.2f} |")
        print(f"| pyradiomics {radiomics_version()}: shape + first order, one execute() per segment, "
              f"{len(chosen)} segments | {theirs_wall:.2f} | {theirs_cpu:.2f} |")
        print(f"\nCPU ratio ours / pyradiomics on the same segments: {ours_cpu / theirs_cpu:.3f}")
        print("\n| ours | pyradiomics | largest relative difference | at label |\n|---|---|---:|---:|")
        for name, theirs, worst, where in compare(measured_subset, subset, radiomics):
            print(f"| {name} | {theirs} | {worst:.2e} | {where} |")

    json.dump({"measure_wall": statistics.median(wall), "medians": medians, "load_end": load_end}, sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
