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
2. Fresh processes, median of ``--repeats``: ``dicomannotembed seg export --type binary`` (the
   reference the issue names) and ``dicomannotembed sr export`` of that SEG (reads the SEG and the
   series, measures, writes the document with its image library); peak RSS of each.

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
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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


def timed_child(command: list, repeats: int) -> tuple:
    """Median wall seconds and the largest peak RSS (MiB) of ``command`` run ``repeats`` times."""
    times, peaks = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        peaks.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024)
    return statistics.median(times), max(peaks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dae-seg-bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pyradiomics", action="store_true")
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
    labels = np.load(args.workdir / f"labels_{CASE}.npy")
    series_dir = args.workdir / bench_seg.SERIES_DIR
    series = load_series(series_dir)
    ct = series.read_volume()  # modality values (HU), as the SR export reads them
    segmentation = Segmentation.from_label_map(geometry, labels)

    # 1. In process, warm.
    ours(segmentation, ct)
    cpu, wall = [], []
    for _ in range(args.repeats):
        c, w = time.process_time(), time.perf_counter()
        measured = ours(segmentation, ct)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
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

    # 2. Fresh processes: BINARY SEG export, then the SR export of that SEG.
    out = args.workdir / "bench_sr"
    out.mkdir(exist_ok=True)
    seg_nrrd = out / "case_C.seg.nrrd"
    if not seg_nrrd.exists():
        write_seg_nrrd(seg_nrrd, segmentation)
    cli = [sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q"]
    seg_file, sr_file = out / "seg.dcm", out / "sr.dcm"
    seg_time, seg_peak = timed_child(cli + ["seg", "export", "--series", str(series_dir), "--segmentation",
                                            str(seg_nrrd), "--type", "binary", "--out", str(seg_file), "--force"],
                                     args.repeats)
    sr_time, sr_peak = timed_child(cli + ["sr", "export", "--series", str(series_dir), "--seg", str(seg_file),
                                          "--out", str(sr_file), "--force"], args.repeats)
    print("\n| case C, fresh process | wall s (median) | peak RSS MiB |\n|---|---:|---:|")
    print(f"| `seg export --type binary` | {seg_time:.2f} | {seg_peak:.0f} |")
    print(f"| `sr export` of that SEG (all measurements + document) | {sr_time:.2f} | {sr_peak:.0f} |")
    print(f"| ratio SR / BINARY SEG (target <= 2) | {sr_time / seg_time:.2f} | |")
    json.dump({"measure_wall": statistics.median(wall), "seg": seg_time, "sr": sr_time},
              sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
