#!/usr/bin/env python
"""Memory and time of importing a FRACTIONAL SEG, in one process (run by hand).

Uses the data of ``bench_seg.py`` (run it once first; default workdir /tmp/dae-bench-seg): the CT
series and case B's labels (20 segments, 11.6 % of a 512x512x200 grid), written as a FRACTIONAL
SEG (JPEG-LS), then read back with ``seg.import_seg``. Prints the resident memory the import adds
and the slices whose fraction planes it keeps.

Notes: before ``model.FractionPlanes`` the import kept a full float32 plane for each of the 1303
(segment, slice) frames: +1390 MB and 3.0 s on the benchmark VM; keeping each plane's non-zero box,
+89 MB and 0.47 s (same run, same machine as README's SEG table).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "DicomAnnotEmbed"))

from DicomAnnotEmbedLib.core.model import Segmentation  # noqa: E402
from DicomAnnotEmbedLib.encodings.seg import export_seg, import_seg  # noqa: E402
from DicomAnnotEmbedLib.core.series import load_series  # noqa: E402


def resident_mib() -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dae-bench-seg"))
    args = parser.parse_args()
    series = load_series(args.workdir / "series")
    path = args.workdir / "fractional_B.dcm"
    if not path.exists():
        labels = np.load(args.workdir / "labels_B.npy")
        export_seg(series, Segmentation.from_label_map(series.geometry, labels), path, seg_type="fractional")
    before, start = resident_mib(), time.perf_counter()
    imported = import_seg(path, series)
    seconds, added = time.perf_counter() - start, resident_mib() - before
    kept = sum(len(planes) for planes in imported.segmentation.fractions.values())
    print(f"FRACTIONAL import, case B: {seconds:.2f} s, resident memory +{added} MiB, {kept} fraction planes kept")


if __name__ == "__main__":
    main()
