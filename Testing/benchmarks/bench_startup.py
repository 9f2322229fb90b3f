#!/usr/bin/env python
"""Benchmark: ``seg export`` / ``seg import`` (LABELMAP, case C) end to end in fresh processes,
against dcmqi's ``itkimage2segimage`` / ``segimage2itkimage`` on the same inputs (issue 14,
"Speed where users wait now", target 1).

Run by hand, after ``bench_seg.py --cases C`` has generated its data (default workdir
/tmp/dae-seg-bench)::

    python Testing/benchmarks/bench_startup.py                 # 3 rounds
    python Testing/benchmarks/bench_startup.py --repeats 5 --only ours_import,dcmqi_import
    # also an older version of the library, in the same rounds (git archive REV DicomAnnotEmbed | tar -x -C DIR):
    python Testing/benchmarks/bench_startup.py --workdir /tmp/dae-seg-bench --before DIR/DicomAnnotEmbed

Each command is a whole process (interpreter start, imports, reading, work, writing), as a user
waits for it; rounds are interleaved (every variant once per round). Reported: median CPU seconds
(user + sys of the child, from wait4: the machine is shared, so wall time mostly measures the
other users), median wall seconds, largest peak RSS (ru_maxrss of the child) and the load average.

* ours_export: ``dicomannotembed seg export --type labelmap`` of the int16 ``labels.nrrd`` that
  dcmqi reads, with the same dcmqi metadata JSON (JPEG-LS, our default); dcmqi_export:
  ``itkimage2segimage --segmentationType labelmap`` (uncompressed, dcmqi does not compress).
* ours_import: ``seg import`` of our file into ``.seg.nrrd`` with the series (grid of the series),
  ours_import_noseries: on the SEG's own grid (as dcmqi); dcmqi_import: ``segimage2itkimage
  --mergeSegments`` of its own file into a gzip ``.nrrd``.

Notes: see bench_seg.py, "Command start-up (issue 14)". ``export-ml`` (issue 14, target 5) was
measured the same way by hand, 2026-12-04, load average 16.8 to 20.5, 3 interleaved rounds: the
command on our case C SEG + its 200-file series, against a SimpleITK script reading the series
(ImageSeriesReader) and writing image.nii.gz and label.nii.gz (the dcmqi_C labels.nrrd):
before (d0cdecf) 9.07 s CPU = 3.4 x the peer's 2.63 s, after 4.15 s = 1.58 x (target 1.5 x:
missed); peak RSS 575 -> 469 MB against 426 MB (1.10 x). What changed: the .seg.nrrd it writes
(gzip level, extents: bench_seg.py notes) and the int16 test of the CT (np.mod + min + max 0.82 s
-> cast and compare back 0.28 s). Left: every header is read twice (pydicom in ml_export._discover
to classify the files, then our scanner in load_series, ~0.2 s), read_volume 0.5 s, and the extra
outputs the peer does not write (labels.nrrd, segmentation.seg.nrrd, JSON sidecars, measurements).

Later the same day the variants ``ours_export_ml`` and ``sitk_ml`` (``SITK_ML``) were added here
(``--only ours_export,ours_export_ml,sitk_ml --lib before=DIR --lib mine=DIR --repeats 5``, load
average 5.0 to 7.0): f105c92 3.85 s CPU = 1.64 x the peer's 2.35 s; with the image read as int16
(``ReferenceSeries.read_int16_volume``: the float32 volume and its test cost 0.23 to 0.97 s in a
fresh process, this 0.15 to 0.19 s) and the series built from the headers that sorted the inputs
(``series_from_headers``: warm, 0.085 s of re-reading became 0.025 s), 3.29 s = 1.40 x (target 1.5 x:
met); peak RSS 470 -> 403 MiB against 326 MiB (1.24 x). The rest of the gap: image.nii.gz is the
same 1.6 s of zlib for both; ours also writes labels.nrrd, segmentation.seg.nrrd (0.5 s) and the
sidecars, and decodes the SEG (0.3 s).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


#: The peer of ``export-ml``: SimpleITK reads the series and writes the image and the label map as
#: .nii.gz (argv: series folder, label map, output folder).
SITK_ML = """
import sys, SimpleITK as sitk
series, labels, out = sys.argv[1:4]
reader = sitk.ImageSeriesReader()
reader.SetFileNames(reader.GetGDCMSeriesFileNames(series))
sitk.WriteImage(reader.Execute(), out + "/image.nii.gz", True)
sitk.WriteImage(sitk.ReadImage(labels), out + "/label.nii.gz", True)
"""


def commands(workdir: Path, out: Path) -> dict:
    series, dcmqi = workdir / "series", workdir / "dcmqi_C"
    cli = [sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", "seg"]
    return {
        "ours_export": cli + ["export", "--series", str(series), "--segmentation", str(dcmqi / "labels.nrrd"),
                              "--metadata", str(dcmqi / "meta.json"), "--type", "labelmap",
                              "--out", str(out / "ours.dcm"), "--force"],
        "dcmqi_export": ["itkimage2segimage", "--inputImageList", str(dcmqi / "labels.nrrd"),
                         "--inputDICOMDirectory", str(series), "--outputDICOM", str(out / "dcmqi.dcm"),
                         "--inputMetadata", str(dcmqi / "meta.json"), "--segmentationType", "labelmap"],
        "ours_import": cli + ["import", str(out / "ours.dcm"), "--series", str(series),
                              "--out", str(out / "ours.seg.nrrd"), "--force"],
        "ours_import_noseries": cli + ["import", str(out / "ours.dcm"), "--out", str(out / "own.seg.nrrd"), "--force"],
        "dcmqi_import": ["segimage2itkimage", "--inputDICOM", str(out / "dcmqi.dcm"),
                         "--outputDirectory", str(out / "dcmqi_import"), "--mergeSegments"],
        # export-ml of our LABELMAP SEG (ours_export's) and its series, against SimpleITK (SITK_ML)
        "ours_export_ml": cli[:-1] + ["export-ml", str(out / "ours.dcm"), str(series), "--out", str(out / "ml"),
                                      "--force"],
        "sitk_ml": [sys.executable, "-c", SITK_ML, str(series), str(dcmqi / "labels.nrrd"), str(out / "sitk_ml")],
    }


def interleaved(table: dict, names: list, environments: dict, repeats: int):
    """Run every command of ``names`` once per round, ``repeats`` rounds: {name: [(CPU s of the
    child (user + sys, from wait4), wall s, peak RSS MiB)]} and the 1-minute load averages seen
    (before the first round and after each). None when a command failed (its stderr is printed)."""
    runs = {name: [] for name in names}
    loads = [os.getloadavg()[0]]
    for _ in range(repeats):
        for name in names:
            start = time.perf_counter()
            child = subprocess.Popen(table[name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=environments.get(name))
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - start
            if status:
                print(f"{name} failed: {child.stderr.read().decode()[-2000:]}", file=sys.stderr)
                return None, loads
            child.stderr.close()
            runs[name].append((usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024))
        loads.append(os.getloadavg()[0])
    return runs, loads


def print_runs(runs: dict, loads: list, repeats: int) -> None:
    """The table of :func:`interleaved`'s results (Markdown) and the load."""
    print(f"| variant | CPU s (median of {repeats}) | wall s | peak RSS MiB |\n|---|---|---|---|")
    for name, values in runs.items():
        print(f"| {name} | {statistics.median(v[0] for v in values):.2f} | "
              f"{statistics.median(v[1] for v in values):.2f} | {max(v[2] for v in values):.0f} |")
    print(f"\nload average (1 min) during the run: {min(loads):.1f} to {max(loads):.1f}, {os.cpu_count()} CPUs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dae-bench-seg"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/dae-bench-startup"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="comma-separated variants (exports before imports: they write the inputs)")
    parser.add_argument("--before", type=Path, help="folder holding another DicomAnnotEmbedLib: its ours_* "
                        "variants run too (as <name>_before, through PYTHONPATH)")
    parser.add_argument("--lib", action="append", default=[], metavar="LABEL=DIR",
                        help="as --before, for any number of libraries: the ours_* variants as <name>_LABEL")
    args = parser.parse_args()
    (args.out / "dcmqi_import").mkdir(parents=True, exist_ok=True)
    table = commands(args.workdir, args.out)
    names = args.only.split(",") if args.only else list(table)
    environments = {name: None for name in table}
    libraries = ([f"before={args.before}"] if args.before else []) + args.lib
    for name in [n for n in names if n.startswith("ours_")]:
        for label, folder in (library.split("=", 1) for library in libraries):
            table[f"{name}_{label}"] = table[name]
            environments[f"{name}_{label}"] = dict(os.environ, PYTHONPATH=folder)
            names.insert(names.index(name), f"{name}_{label}")
    (args.out / "sitk_ml").mkdir(parents=True, exist_ok=True)
    runs, loads = interleaved(table, names, environments, args.repeats)
    if runs is None:
        return 1
    print_runs(runs, loads, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
