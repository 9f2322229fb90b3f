#!/usr/bin/env python
"""Benchmark: a 10,000-row annotation table into overlays, SEG and SR, and back out as ML formats.

Run by hand (not a pytest test; it asserts results, not timings)::

    python Testing/benchmarks/bench_csv.py                        # timing table (Markdown) on stdout
    python Testing/benchmarks/bench_csv.py --workdir /tmp/dae-csv-bench --repeats 3
    # the commands against their peers, fresh processes in interleaved rounds, CPU time (issue 14);
    # --lib: also other copies of the library in the same rounds (git archive REV DicomAnnotEmbed | tar -x -C DIR)
    python Testing/benchmarks/bench_csv.py --commands --repeats 5 --lib before=DIR/DicomAnnotEmbed
    # CPU time of each stage of one csv import (start-up, table, .seg.nrrd, overlay, SEG, SR), fresh processes
    python Testing/benchmarks/bench_csv.py --stages --repeats 3

What it does
------------
1. Generates (or reuses, when ``--workdir`` holds data made with the same parameters) a synthetic
   CT series, 512 x 512 x 200 int16, 0.7 mm pixels, 1.25 mm slices, 200 single-frame files
   (:func:`dicomize.dicomize_array`), and a 10,000-row table on it: 10 area findings (two of them
   overlapping, so the segmentation has 2 layers) with 5 shapes on each of 199 slices — a 60-vertex
   freehand contour, an 8-vertex polygon with LIDC's "outside" vertices, an ellipse given by its
   axes, a circle, and a rectangle that every other slice is an exclusion (a hole) — named by SOP
   Instance UID, slice position, Image Position z, slice index or patient coordinates in turn; one
   finding of 46 points and 4 polylines (15 overlay planes in all); LIDC malignancy and subtlety.
2. Times, in this process after one warm-up run, median of ``--repeats``:
   * reading the table: **parse** (file, CSV, header), **rows** (image lookup, checks), **build**
     (the shapes drawn, each on a window around it, many at a time; joining each finding's shapes per
     slice, layers, segments, markups, evaluations) — phases told apart by the progress callback;
   * **overlay**, **SEG**, **SR** writing through :func:`api.export_overlay`, :func:`api.export_seg`,
     :func:`api.export_sr` (the SR reads the SEG back and the pixel data for its statistics);
   * the whole command ``dicomannotembed csv import`` in a fresh process (interpreter start, imports,
     series headers, all of the above; peak RSS of the child);
   * ``dicomannotembed export-ml`` of its SEG, SR and series (label maps, image, sidecars, table), and
     the same with ``--png``.
3. Checks each result: rows converted, segments, voxels of every finding against the conversion.

``--commands`` instead runs whole commands, each a fresh process, every variant once per round
(the machine is shared: the child's CPU time, user + sys from wait4, is the figure; wall time and
the load average are printed beside it): ``csv import`` of the table and its peer, ``overlay
export`` of the same segmentation and markups onto the same series (what issue 14 compares it
with: at most 3x); ``export-ml`` of the SEG, SR and series that ``csv import`` wrote, and its peer,
SimpleITK reading the series and writing the image and the label map as .nii.gz
(``bench_startup.SITK_ML``).

Notes (figures: README, "CSV in, ML out" > "Speed")
----------------------------------------------------
The SR export took 12 s of a 17 s ``csv import``. cProfile of ``sr.export_sr`` on the 200-image
series: with the image library (TID 1600, 17 content items per image) handed to
MeasurementReport, highdicom's SR constructor deep-copied the whole content (3.6 s profiled),
searched it for references (2.1 s) and converted it item by item (1.5 s). Without the library,
the export took 2.05 s; with it, 8.45 s. ``sr._insert_image_library`` now adds highdicom's own
ImageLibrary after the document is built: 5.8 s, the same content. What remains: highdicom
building the entries (it checks the IOD tables for every image, ~1.7 s), pydicom writing ~47,000
elements (~2 s, of which a third is its ambiguous-VR pass), the measurements (~1 s).

Issue 14, 2026-12-04 (CPU time: the machine was shared, load average 6 to 9 on 2 cores). CPU per
stage of one ``csv import`` in one process (``time.process_time`` around the api calls; cProfile of
the whole command for the detail), library at f105c92: imports 0.41 s, reading the table 2.2
(rasterising the 9,950 shapes about 1.5 of it: some 30 numpy calls of a few microseconds per
shape; joining them per finding and slice 0.3), ``segmentation.seg.nrrd`` 0.52 (pynrrd's
Fortran-order copy of the 104 MB of layers and zlib), overlay export 0.64, SEG export 1.11, SR
export 3.55. In the SEG and SR exports: the SR decoded the SEG it had just been handed by the SEG
export (0.57 s: 2,000 1-bit frames unpacked and laid into new layers), read the pixels as a
float32 volume (0.47 s in a fresh process, mostly page faults of its 210 MB), and the voxels were
counted per slice four times (0.12 s each: ``np.bincount`` of every 512x512 slice) and the SEG's
overlap test looked every voxel up in a table (0.24 s). Changed:

* ``api.export_sr(..., seg_written=)``: ``csv import`` hands the SR the SEG export's result; the SEG's
  segments are then its header's descriptions (``seg.read_seg_segments``, as import names them) on
  the layers in memory, paired by the Segment Numbers the export reports
  (``SegExportResult.segment_numbers``). No encoding imports another: the api layer passes them.
* ``ReferenceSeries.read_int16_volume``: the pixels as int16 where the rescale is by whole numbers
  and every value fits (CT), the same values as ``read_volume`` (float32 holds each intermediate
  exactly); the SR measures on it (and export-ml writes it).
* ``arrays.slice_label_counts``: per-slice counts on the box of labelled voxels only (row and
  column maxima find it), 0.055 s instead of 0.12; ``Segmentation.has_overlap`` compares with 0
  when every value a layer holds is a segment's (0.08 s instead of 0.24).

After (the same stages, only these changes on f105c92): SEG export 0.71 s, SR export 2.72 s, the
whole run 6.83 s instead of 8.20 s. Tests: ``Testing/Python/files/test_csv_speed_equivalence.py``
compares the files that ``csv import`` writes with those of the read-back path (overlay planes and
pixel data, SEG pixel data and segments, every element of the SR documents) and the pieces with
their references; ``Testing/Python/core/test_series_from_headers.py`` the int16 volume.

Then the rasteriser (cProfile of read_annotation_table: ``_clip_segments`` and ``np.roll`` were
~20 numpy calls of each of the 3,980 polygons' outline and fill): shapes are drawn on windows
around them, so the Liang-Barsky clip returned the segments unchanged; it is skipped when every
end lies in the box (the same values to the bit, tested), and the next vertices are sliced.
Reading the table 2.27 -> 1.87 s CPU (best of 3, warm), the same layers.

Left, in the order of their cost: reading the table (1.9 s; a batched rasteriser over all shapes
of a slice would remove the per-shape overhead), the SR document (highdicom building it and its
200-entry image library, pydicom writing ~47,000 elements: ~1.7 s, twice as much since the SR's
markups went into a second document with its own library), ``segmentation.seg.nrrd`` (0.5 s),
the SEG (0.7 s) and start-up (0.4 s). The overlay export that the target compares with takes 1.4 s
as a command, so 3x is 4.2 s: out of reach without the first two.

Issue 14, 2026-12-05, reading the table. ``--stages`` (CPU per stage of one ``csv import``, fresh
process, ``time.process_time`` around the api calls, median of 3; load average 3.4, a niced fuzz
run on both cores) at 69b4d0b: start-up 0.37 s, series headers 0.08, reading the table 1.87,
``.seg.nrrd`` 0.49, overlay export 0.54, SEG export 0.71, SR export 3.12; 7.27 in all. In reading
the table (``process_time`` around its functions, warm): drawing the 9,950 shapes 0.88 s, the rows'
parsing and checks about 0.6 (splitting the coordinates 0.19, the axis ends of every oval and
circle, for GSPS, 0.13), joining and layering 0.15 warm but 0.44 in a fresh process (each layer a
new 52 MB volume, page-faulted, then copied into the stack). Drawing the shapes many at a time did
not pay by itself: with per-pixel index arithmetic, the 3,980 polygons (6.5 M window pixels) took
as long as one by one; the cost was per pixel (some 40 ns), not per numpy call. What did:

* polygons (``rasterize.polygon_masks``): the even-odd fill's toggles go where the pixels are in one
  buffer holding every window of a pass, so one ``bincount`` and one uint8 cumulative sum give the
  parity of each pixel's crossings (was two int64 ``bincount`` s, an int64 cumulative sum and a copy
  per shape); the outline's pixels are set ("inside") or cleared ("outside") in place, not drawn
  into a second mask and joined: 0.49 -> 0.11 s for the freehand shapes and LIDC polygons;
* ellipses and circles (``ellipse_masks``): as in ``ellipse_mask``, a pixel's u and v are a column
  term plus a row term, computed once per column and per row; the windows' rows stacked: 0.13 ->
  0.065 s; rectangles (``rectangle_masks``): slices of one buffer, 0.021 -> 0.006 s;
* the rows: an oval's axis ends are computed for the findings drawn only with ovals and circles (the
  only ones GSPS draws as ellipses; was every such row), its centre and axes once (was 3 times);
  ``slice_position`` / ``image_z`` looked up once per distinct text, shape / space / boundary names
  normalised once per distinct text; coordinates split by ``str.translate`` and ``str.split`` (the
  same tokens as the regular expression: tested over every code point) and checked finite by their
  sum;
* the layers (``csv_shapes._Layers``): the findings' planes are kept and written once into the final
  stack; a finding's layer is found by comparing its planes with the layer's planes that share a
  32-pixel tile with them (compared with all planes of the slice, a table of 5,000 small circles
  on one slice took 7.05 s to read instead of 1.21 s at 69b4d0b; with the tiles 1.23 s).

Each batch function gives what the one-shape function gives, to the bit, and the table's pieces and
layers are those of the former per-shape rasteriser and layer volumes (kept verbatim in
``Testing/Python/files/test_csv_batch_rasterize.py`` as the reference, on axial, oblique and rotated
series with the shapes of this benchmark). Reading the table: 1.87 -> 0.56 s warm, 1.95 -> 0.65 s
in a fresh process; the same layers, segments, markups, warnings and bad rows as 69b4d0b on this
table (compared field by field).

Then, a cProfile of reading the table in a fresh process: ``_Layers.volume`` 0.30 s, the first
writes into the 104 MB stack faulting in numpy's 2 MB huge pages (numpy advises them for large
arrays; core.arrays notes). On 4 KiB pages (``core.arrays.zeros``) only the pages the planes touch
are faulted in: 0.024 s, reading the table 0.57 s in a fresh process. Stages after (the working
tree at 349266d, with the SR and SEG work others had not committed; load 4.6): start-up 0.39,
series headers 0.08, reading the table 0.57, ``.seg.nrrd`` 0.29, overlay export 0.57, SEG export
0.25, SR export 1.83; 4.10 s.

``--commands``, 5 rounds, 2026-12-05, load 3.1 to 3.6, CPU of the child: ``csv import`` at 69b4d0b
7.72 s, 69b4d0b with this work's table reader (to b3b874e) 6.53 s, HEAD 653de18 (also the SR work
others committed) 4.60 s, the working tree 4.57 s, against ``overlay export`` 1.21 s: 6.4, 5.4, 3.8
and 3.8 x. Target 3 x (3.63 s) missed. Peak RSS 456 -> 379 MiB for this work alone. What is left
above 3 x is mostly the SR export (1.8 to 3.1 s); with the table read for free HEAD would take
~4.0 s (3.3 x).

Issue 14, 2026-12-05, ``export-ml`` of the SEG, both SRs and the series against SimpleITK. Profile
(``time.process_time`` around its functions in one process, cProfile for the detail) at 8006383,
5.2 s CPU: sorting the inputs 1.48 s, 1.41 of it the sequence check of the two SRs
(``core.inputs.check_sequences`` opening every sequence of each report, mostly the 200 entries of
its image library, which nothing reads; ``import_sr`` on the datasets took 0.04 s); writing the case
2.7 (``image.nii.gz`` 1.55, the peer's same zlib; the 2 label layers as NIfTI and NRRD 0.27, plus
0.16 making each layer's SimpleITK image twice; ``.seg.nrrd`` 0.31; voxels counted twice, 0.12);
SEG 0.3; start-up 0.35. Changed: ``sr.decode.check_report_sequences`` checks every sequence but the
library's entries (0.09 s for both reports; the same ``import_sr`` on the same datasets, compared
on other tools' and our reports in ``Testing/Python/encodings/test_sr_read_checks.py``); one
SimpleITK image per layer for both files; voxels counted once per case. export-ml imports no
highdicom. ``--commands``, 5 rounds, load 3.0 to 4.6, CPU of the child: export-ml at 8006383
6.14 s, 8006383 with only this work 3.86, HEAD 0fa9639 (also the SEG and series work others
committed) 3.40, working tree 3.32; SimpleITK 2.49: 2.47, 1.55, 1.37 and 1.33 x (target 1.5, met
from 0fa9639). Left: ``image.nii.gz`` (as the peer), start-up, ``.seg.nrrd`` and the label maps
(~0.3 s each), the SRs (0.13 s; parsing their content from the raw bytes would save at most 0.1).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "DicomAnnotEmbed"))

from DicomAnnotEmbedLib import __version__, api  # noqa: E402
from DicomAnnotEmbedLib.files.csv_table import read_annotation_table  # noqa: E402
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array  # noqa: E402
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry  # noqa: E402
from DicomAnnotEmbedLib.core.series import load_series  # noqa: E402
from machine import cpu_model, memory_text

PARAMS = {"size": 512, "slices": 200, "pixel": 0.7, "gap": 1.25, "findings": 10, "shapes": 5, "seed": 7, "v": 1}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> str:
    cpu, memory = cpu_model(), memory_text()
    import pydicom

    return (f"{os.cpu_count()}-core {cpu}, {memory}, {platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}, numpy {np.__version__}, pydicom {pydicom.__version__}, "
            f"DicomAnnotEmbed {__version__}")


def make_series(folder: Path) -> None:
    size, slices = PARAMS["size"], PARAMS["slices"]
    geometry = VolumeGeometry.from_origin_spacing_directions(
        (slices, size, size), (-size * PARAMS["pixel"] / 2, -size * PARAMS["pixel"] / 2, -100.0),
        (PARAMS["pixel"], PARAMS["pixel"], PARAMS["gap"]), np.eye(3))
    rng = np.random.default_rng(PARAMS["seed"])
    k, j, i = np.ogrid[:slices, :size, :size]
    volume = np.where((i - size / 2) ** 2 / 0.9 + (j - size / 2) ** 2 <= (size * 0.45) ** 2, 40, -1000)
    volume = (volume + rng.normal(0, 15, (slices, size, size))).astype(np.int16)
    dicomize_array(volume, geometry, folder, patient_name="Bench^CSV", series_description="bench csv")


def ring(center, radius, count, wobble, rng):
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    radii = radius * (1 + wobble * rng.uniform(-1, 1, count))
    return np.column_stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)])


def make_table(series, path: Path) -> int:
    import csv

    rng = np.random.default_rng(PARAMS["seed"])
    geometry = series.geometry
    to_lps = geometry.ijk_to_lps_points
    normal = geometry.slice_normal
    header = ["finding", "label", "shape", "sop_instance_uid", "slice_position", "image_z", "slice_index", "space",
              "coordinates", "boundary", "inclusion", "malignancy", "subtlety"]
    rows = []
    centers = [(130 + 60 * (f % 5), 170 + 150 * (f // 5)) for f in range(PARAMS["findings"])]
    centers[1] = (centers[0][0] + 25, centers[0][1])  # F0 and F1 overlap: a second layer
    fmt = lambda points: " ".join(f"{v:.2f}" for v in np.asarray(points).ravel())  # noqa: E731
    for f, center in enumerate(centers):
        for k in range(1, PARAMS["slices"]):
            base = dict(finding=f"F{f}", label=f"Lesion {f}", malignancy=str(1 + f % 5) if k == 1 else "",
                        subtlety=str(1 + (f + 2) % 5) if k == 1 else "")
            locator = k % 4
            where = {0: dict(sop_instance_uid=series.slices[k].sop_instance_uid),
                     1: dict(slice_position=f"{float(to_lps([[0, 0, k]])[0] @ normal):.3f}"),
                     2: dict(image_z=f"{float(to_lps([[0, 0, k]])[0, 2]):.3f}"),
                     3: dict(slice_index=str(k))}[locator]
            radius = 18 + 10 * np.sin(np.pi * k / PARAMS["slices"])
            freehand = ring(center, radius, 60, 0.08, rng)
            rows.append(dict(base, shape="freehand", coordinates=fmt(freehand), **where))
            polygon = ring((center[0] + 10, center[1] - 8), radius * 0.6, 8, 0.15, rng)
            if k % 10 == 0:  # patient coordinates now and then
                lps = to_lps(np.column_stack([polygon, np.full(len(polygon), k)]))
                rows.append(dict(base, shape="polygon", space="patient", coordinates=fmt(lps), boundary="outside"))
            else:
                rows.append(dict(base, shape="polygon", coordinates=fmt(polygon), boundary="outside", **where))
            a, b, t = radius * 0.7, radius * 0.4, rng.uniform(0, np.pi)
            axis_a, axis_b = a * np.array([np.cos(t), np.sin(t)]), b * np.array([-np.sin(t), np.cos(t)])
            ellipse = np.array([center - axis_a, center + axis_a, center - axis_b, center + axis_b]) + [0, 12]
            rows.append(dict(base, shape="ellipse", coordinates=fmt(ellipse), **where))
            rows.append(dict(base, shape="circle", coordinates=fmt([center[0] - 12, center[1] + 6, radius * 0.35]),
                             **where))
            hole = k % 2 == 0
            size = 4 if hole else 10
            rows.append(dict(base, shape="rectangle", inclusion="false" if hole else "",
                             coordinates=fmt([center[0] - size, center[1] - size, center[0] + size, center[1] + size]),
                             **where))
    for n in range(46):
        k = 4 * n + 5
        rows.append(dict(finding="P", label="Landmarks", shape="point", slice_index=str(k),
                         coordinates=fmt([256 + 40 * np.cos(n), 400 + 20 * np.sin(n)])))
    for n in range(4):
        k = 40 * n + 20
        rows.append(dict(finding=f"D{n}", label=f"Diameter {n}", shape="polyline", slice_index=str(k),
                         coordinates=fmt([[100 + 5 * n, 100], [160 + 5 * n, 140]])))
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, header, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def prepare(workdir: Path):
    stamp = workdir / "params.json"
    if stamp.exists() and json.loads(stamp.read_text()) == PARAMS:
        log(f"reusing {workdir}")
        return load_series(workdir / "series"), workdir / "table.csv"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    log("writing the synthetic series ...")
    make_series(workdir / "series")
    series = load_series(workdir / "series")
    log("writing the table ...")
    rows = make_table(series, workdir / "table.csv")
    log(f"{rows} rows")
    stamp.write_text(json.dumps(PARAMS))
    return series, workdir / "table.csv"


class Phases:
    """Times the phases of read_annotation_table from its progress callback."""

    def __init__(self):
        self.marks = {}
        self.start = time.perf_counter()

    def __call__(self, done, total, message):
        now = time.perf_counter()
        self.marks.setdefault(("first", message), now)
        self.marks[("last", message)] = now


def median(values):
    return statistics.median(values)


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def commands(workdir: Path, table: Path, repeats: int, libraries: Sequence[str]) -> int:
    """``--commands``: csv import and overlay export, export-ml and SimpleITK, interleaved rounds."""
    from bench_startup import SITK_ML, interleaved, print_runs

    out = workdir / "out" / "commands"
    inputs = out / "inputs"  # one csv import's outputs: the peers' and export-ml's inputs
    cli = [sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q"]
    series = workdir / "series"
    if not (inputs / "seg.dcm").exists():
        log("writing the commands' inputs (csv import) ...")
        fresh(inputs)
        subprocess.run(cli + ["csv", "import", str(table), "--series", str(series), "--out", str(inputs)], check=True,
                       capture_output=True)
    reports = [str(p) for p in sorted(inputs.glob("sr*.dcm"))]
    (out / "sitk").mkdir(parents=True, exist_ok=True)
    table_of = {
        "csv_import": cli + ["csv", "import", str(table), "--series", str(series), "--out", str(out / "csv"),
                             "--force"],
        "overlay_export": cli + ["overlay", "export", "--series", str(series), "--segmentation",
                                 str(inputs / "segmentation.seg.nrrd"), "--markups", str(inputs / "markups.mrk.json"),
                                 "--out", str(out / "overlay"), "--force"],
        "export_ml": cli + ["export-ml", str(inputs / "seg.dcm"), *reports, str(series), "--out", str(out / "ml"),
                            "--force"],
        "sitk_ml": [sys.executable, "-c", SITK_ML, str(series), str(inputs / "segmentation.seg.nrrd"),
                    str(out / "sitk")],
    }
    names = list(table_of)
    environments = {}
    for library in libraries:  # LABEL=DIR: the same commands with that library, their own output folders
        label, folder = library.split("=", 1)
        for name in ("csv_import", "export_ml"):
            table_of[f"{name}_{label}"] = table_of[name][:-2] + [str(out / f"{name}_{label}"), "--force"]
            environments[f"{name}_{label}"] = dict(os.environ, PYTHONPATH=folder)
            names.insert(names.index(name), f"{name}_{label}")
    runs, loads = interleaved(table_of, names, environments, repeats)
    if runs is None:
        return 1
    print(f"Fresh processes, {repeats} interleaved rounds; CPU = user + sys of the child. Machine: {machine()}\n")
    print_runs(runs, loads, repeats)
    cpu = {name: median([v[0] for v in values]) for name, values in runs.items()}
    print(f"\ncsv import / overlay export (CPU): {cpu['csv_import'] / cpu['overlay_export']:.2f} x (target 3); "
          f"export-ml / SimpleITK: {cpu['export_ml'] / cpu['sitk_ml']:.2f} x (target 1.5)")
    return 0


STAGES = (  # (label, module, function) that --stages times inside one csv import
    ("read table", "DicomAnnotEmbedLib.api.csv_pipeline", "read_annotation_table"),
    ("series headers", "DicomAnnotEmbedLib.api.csv_pipeline", "load_series"),
    (".seg.nrrd", "DicomAnnotEmbedLib.files.segio", "write_seg_nrrd"),
    ("overlay export", "DicomAnnotEmbedLib.api.conversions", "export_overlay"),
    ("SEG export", "DicomAnnotEmbedLib.api.conversions", "export_seg"),
    ("SR export", "DicomAnnotEmbedLib.api.conversions", "export_sr"),
)


def stages_child(table: Path, series: Path, out: Path) -> None:
    """One ``csv import`` in this (fresh) process, as the command runs it; prints the CPU time
    (``time.process_time``) of start-up and of each of :data:`STAGES`, which are wrapped here
    to be timed, as JSON on stdout."""
    import importlib

    from DicomAnnotEmbedLib.cli import main as cli_main

    spent = {"start-up (interpreter, imports)": time.process_time()}

    def timed(label, function):
        def wrapper(*args, **kwargs):
            before = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - before
        return wrapper

    for label, module, name in STAGES:
        module = importlib.import_module(module)
        setattr(module, name, timed(label, getattr(module, name)))
    code = cli_main(["-q", "csv", "import", str(table), "--series", str(series), "--out", str(out), "--force"])
    spent["whole process"] = time.process_time()
    spent["other"] = spent["whole process"] - sum(v for k, v in spent.items() if k != "whole process")
    assert not code, code
    print(json.dumps(spent))


def stages(workdir: Path, table: Path, repeats: int) -> int:
    """``--stages``: CPU per stage of ``csv import``, each run a fresh process; medians."""
    runs = []
    for repeat in range(repeats):
        log(f"stages {repeat + 1}/{repeats} ...")
        result = subprocess.run([sys.executable, __file__, "--stages-child", "--workdir", str(workdir)],
                                capture_output=True, text=True, check=True)
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"CPU s per stage of one csv import (fresh process, time.process_time), median of {repeats}; "
          f"load average {os.getloadavg()[0]:.1f}. Machine: {machine()}\n")
    print("| stage | CPU s |\n|---|---:|")
    for label in runs[0]:
        print(f"| {label} | {median([run[label] for run in runs]):.2f} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/dae-csv-bench", type=Path)
    parser.add_argument("--repeats", default=3, type=int)
    parser.add_argument("--commands", action="store_true", help="only the commands against their peers "
                        "(fresh processes, interleaved rounds, CPU time)")
    parser.add_argument("--lib", action="append", default=[], metavar="LABEL=DIR",
                        help="with --commands: a folder holding another DicomAnnotEmbedLib, whose csv import and "
                        "export-ml run too, as <command>_LABEL (through PYTHONPATH); may be repeated")
    parser.add_argument("--stages", action="store_true", help="CPU time of each stage of csv import (fresh "
                        "processes)")
    parser.add_argument("--stages-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages_child:
        stages_child(args.workdir / "table.csv", args.workdir / "series", args.workdir / "out" / "stages")
        return 0
    series, table = prepare(args.workdir)
    if args.stages:
        return stages(args.workdir, table, args.repeats)
    if args.commands:
        return commands(args.workdir, table, args.repeats, args.lib)
    out = args.workdir / "out"
    times = {key: [] for key in ("parse", "rows", "build", "table", "overlay", "seg", "sr")}
    conversion = None
    for repeat in range(args.repeats + 1):  # the first run warms caches and imports; it is not counted
        log(f"run {repeat}/{args.repeats} ...")
        phases = Phases()
        conversion = read_annotation_table(table, series, progress=phases)
        end = time.perf_counter()
        first = phases.marks[("first", "Reading annotation table")]
        last = phases.marks[("last", "Reading annotation table")]
        timing = {"parse": first - phases.start, "rows": last - first, "build": end - last, "table": end - phases.start}
        assert not conversion.bad_rows, conversion.bad_rows[:3]
        segmentation, markups = conversion.segmentation, conversion.markups
        t0 = time.perf_counter()
        api.export_overlay(series, segmentation, markups, fresh(out / "overlay"))
        t1 = time.perf_counter()
        seg = api.export_seg(series, segmentation, fresh(out / "seg") / "seg.dcm")
        t2 = time.perf_counter()
        sr = api.export_sr(series, seg.paths[0], out / "seg" / "sr.dcm", segmentation=segmentation, markups=markups,
                           evaluations=conversion.evaluations, seg_written=seg)  # as csv import does
        t3 = time.perf_counter()
        timing.update(overlay=t1 - t0, seg=t2 - t1, sr=t3 - t2)
        if repeat:
            for key, value in timing.items():
                times[key].append(value)
    counts = segmentation.voxel_counts()
    assert conversion.rows == conversion.converted_rows == 10000, conversion.summary()
    assert len(segmentation.segments) == PARAMS["findings"] and segmentation.layers.shape[0] == 2
    assert all(counts[f.segment_id] == f.voxels > 0 for f in conversion.findings if f.segment_id)
    assert sr.groups >= PARAMS["findings"] + 4

    def command(*argv):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", *map(str, argv)],
                                capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        assert result.returncode == 0, result.stderr
        return elapsed, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024.0

    cli, ml, ml_png = [], [], []
    rss = 0.0
    for repeat in range(args.repeats):
        log(f"command line {repeat + 1}/{args.repeats} ...")
        elapsed, peak = command("csv", "import", table, "--series", args.workdir / "series", "--out",
                                fresh(out / "cli"))
        cli.append(elapsed)
        rss = max(rss, peak)
        ml.append(command("export-ml", out / "cli" / "seg.dcm", out / "cli" / "sr.dcm", args.workdir / "series",
                          "--out", fresh(out / "ml"))[0])
        ml_png.append(command("export-ml", out / "cli" / "seg.dcm", out / "cli" / "sr.dcm", args.workdir / "series",
                              "--out", fresh(out / "ml_png"), "--png")[0])

    print(f"10,000-row table -> overlay, SEG, SR; 512x512x200 CT (200 files); medians of {args.repeats}")
    print(f"Machine: {machine()}\n")
    print("| step | median s |")
    print("|---|---:|")
    rows = [("read table: parse (file, CSV, header)", "parse"),
            ("read table: rows (image lookup, checks)", "rows"),
            ("read table: build (draw 9,950 shapes, join them per finding and slice, layers, segments)", "build"),
            ("**read table, total** (`csv_table.read_annotation_table`)", "table"),
            ("overlay export (`api.export_overlay`: 15 planes, 200 files)", "overlay"),
            ("SEG export (`api.export_seg`: BINARY, 10 segments)", "seg"),
            ("SR export (`api.export_sr`: SEG's segments from memory, reads pixels, measures, 16 groups)", "sr")]
    for label, key in rows:
        print(f"| {label} | {median(times[key]):.2f} |")
    print(f"| **`dicomannotembed csv import`** (fresh process, everything above) | {median(cli):.2f} |")
    print(f"| `dicomannotembed export-ml` of its SEG + SR + series (NIfTI, NRRD, image, sidecars, CSV) | "
          f"{median(ml):.2f} |")
    print(f"| the same with `--png` (200 PNG masks per layer) | {median(ml_png):.2f} |")
    print(f"\nPeak RSS of `csv import`: {rss:.0f} MiB. Rows per second (read table): "
          f"{10000 / median(times['table']):,.0f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
