#!/usr/bin/env python
"""Benchmark: the batch command (Dask, 1 and 2 local workers) against a shell loop running one
``dicomannotembed`` process at a time over the same cases, in the same run.

Run by hand (not a pytest test; it asserts that every case succeeded, not timings)::

    python Testing/benchmarks/bench_batch.py                      # 24 cases of 40 x 256 x 256
    python Testing/benchmarks/bench_batch.py --cases 24 --shape 40,256,256 --workdir /tmp/dae-bench-batch
    python Testing/benchmarks/bench_batch.py --big                # also one LIDC-sized case (130 x 512 x 512)

The report (Markdown) goes to stdout, progress to stderr.

Method: ``--cases`` synthetic CT cases (Testing/Python/services/batch_collection.write_case:
a series, a .seg.nrrd with two overlapping segments, a .mrk.json) are written once into
``--workdir``. Each case asks for an overlay series and a SEG. The loop runs, per case,
``dicomannotembed overlay export`` then ``dicomannotembed seg export`` (two processes, one after
the other; what a shell loop over the one-case commands does). The batch runs
``dicomannotembed batch MANIFEST --workers W`` for W = 1 and 2 (a fresh output folder each time;
the whole command is timed, cluster start-up included). Per-case time and memory come from the
batch's ledger (peak resident memory of the worker while the case ran, and its increase over the
worker's resident memory before the case). The load average of the machine is printed before
and after each measurement, since it is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Python" / "services"))

from machine import cpu_model, memory_text  # noqa: E402


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def build(workdir: Path, n: int, shape, big: bool) -> Path:
    from batch_collection import write_case

    stamp = {"n": n, "shape": list(shape), "big": big, "version": 1}
    marker = workdir / "data.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return workdir / "manifest.jsonl"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    rows = []
    for index in range(n):
        print(f"writing case {index + 1}/{n}", file=sys.stderr)
        files = write_case(workdir / "cases" / f"case-{index:03d}", index, shape=shape)
        rows.append({"id": f"case-{index:03d}", "series": str(files["series"]),
                     "annotations": [str(files["segmentation"]), str(files["markups"])], "outputs": ["overlay", "seg"]})
    (workdir / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if big:
        print("writing the LIDC-sized case", file=sys.stderr)
        files = write_case(workdir / "big" / "case-big", 7, shape=(130, 512, 512))
        (workdir / "big.jsonl").write_text(json.dumps(
            {"id": "case-big", "series": str(files["series"]),
             "annotations": [str(files["segmentation"]), str(files["markups"])], "outputs": ["overlay", "seg"]}) + "\n")
    marker.write_text(json.dumps(stamp))
    return workdir / "manifest.jsonl"


def shell_loop(manifest: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    lines = []
    for row in map(json.loads, manifest.read_text().splitlines()):
        seg, markups = row["annotations"]
        case = out / row["id"]
        lines.append(f"dicomannotembed -q overlay export --series '{row['series']}' --segmentation '{seg}' "
                     f"--markups '{markups}' --out '{case}/overlay' >/dev/null || exit 1")
        lines.append(f"dicomannotembed -q seg export --series '{row['series']}' --segmentation '{seg}' "
                     f"--out '{case}/seg.dcm' >/dev/null || exit 1")
    script = out / "loop.sh"
    script.write_text("set -e\n" + "\n".join(lines) + "\n")
    start = time.perf_counter()
    subprocess.run(["bash", str(script)], check=True)
    return time.perf_counter() - start


def batch(manifest: Path, out: Path, workers: int) -> tuple:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(["dicomannotembed", "-q", "batch", str(manifest), "--out", str(out), "--workers", str(workers),
                    "--no-dashboard"], check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert all(r["status"] == "done" for r in records), [r["error"] for r in records if r["status"] != "done"]
    return elapsed, records


def busy_span(records) -> float:
    """Seconds from the first case's start to the last case's end (the cluster's start-up excluded)."""
    from datetime import datetime

    starts = [datetime.strptime(r["started"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() for r in records]
    return max(s + r["duration_s"] for s, r in zip(starts, records)) - min(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--shape", default="40,256,256", help="slices,rows,columns of each case")
    parser.add_argument("--workdir", default="/tmp/dae-bench-batch")
    parser.add_argument("--big", action="store_true", help="also time one 130 x 512 x 512 case on 1 worker")
    parser.add_argument("--no-loop", action="store_true", help="only the batch runs (scaling on a loaded machine)")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    workdir = Path(args.workdir)
    manifest = build(workdir, args.cases, shape, args.big)
    n = args.cases

    print(f"# Batch benchmark\n\nMachine: {cpu_model()}, {os.cpu_count()} cores, {memory_text()}; "
          f"{n} cases of {shape[0]} x {shape[1]} x {shape[2]} (overlay + SEG each).\n")
    print("| run | wall s | cases/min | vs loop | cases/min after start-up | per case s (median) | "
          "CPU s per case (median) | worker peak MB (max) | case memory increase MB (max) | load before -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    before = load()
    print("shell loop ...", file=sys.stderr)
    loop_s = float("nan") if args.no_loop else shell_loop(manifest, workdir / "out-loop")
    loop_rate = n / loop_s * 60 if loop_s == loop_s else float("nan")
    print(f"| shell loop, 2 processes per case | {loop_s:.1f} | {loop_rate:.1f} | 1.00 | - | {loop_s / n:.2f} | - | - | - | "
          f"{before} -> {load()} |")
    rates, steady = {}, {}
    for workers in (1, 2):
        before = load()
        print(f"batch --workers {workers} ...", file=sys.stderr)
        elapsed, records = batch(manifest, workdir / f"out-batch-{workers}", workers)
        rates[workers] = n / elapsed * 60
        steady[workers] = n / busy_span(records) * 60
        durations = sorted(r["duration_s"] for r in records)
        print(f"| batch --workers {workers} | {elapsed:.1f} | {rates[workers]:.1f} | {rates[workers] / loop_rate:.2f} | "
              f"{steady[workers]:.1f} | {durations[len(durations) // 2]:.2f} | "
              f"{sorted(r.get('cpu_s', 0) for r in records)[len(records) // 2]:.2f} | "
              f"{max(r['peak_memory_mb'] for r in records):.0f} | "
              f"{max(r['memory_increase_mb'] for r in records):.0f} | {before} -> {load()} |")
    print(f"\nScaling 1 -> 2 workers: {rates[2] / rates[1]:.2f}x wall, {steady[2] / steady[1]:.2f}x after start-up.")
    if args.big and (workdir / "big.jsonl").exists():
        elapsed, records = batch(workdir / "big.jsonl", workdir / "out-big", 1)
        r = records[0]
        print(f"\nLIDC-sized case (130 x 512 x 512, overlay + SEG) on 1 worker: {r['duration_s']:.1f} s in the worker "
              f"({elapsed:.1f} s with cluster start-up), worker peak {r['peak_memory_mb']:.0f} MB, "
              f"increase {r['memory_increase_mb']:.0f} MB; load {load()}.")


if __name__ == "__main__":
    main()
