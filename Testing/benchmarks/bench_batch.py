#!/usr/bin/env python
"""Benchmark: the batch command (Dask, 1 and 2 local workers) against a shell loop running one
``dicomannotembed`` process at a time over the same cases, in the same run.

Run by hand (not a pytest test; it asserts that every case succeeded, not timings), on a machine
as quiet as can be had (the report names its load)::

    python3 Testing/benchmarks/bench_batch.py --cases 48 > bench_batch.md   # README's figures; ~15 min on 2 idle cores
    python3 Testing/benchmarks/bench_batch.py                     # 24 cases of 40 x 256 x 256
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
worker's resident memory before the case). CPU time is user + system of the whole process tree
(the loop's shell and commands; the batch command, its nannies and workers), from
``getrusage(RUSAGE_CHILDREN)`` around each run, and per case from the ledger (the worker's time in
the case). The load average of the machine and its runnable processes are printed before and after
each measurement, since it is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "Python" / "services"))
sys.path.insert(0, str(HERE.parent / "Python"))  # conftest: the test helpers batch_collection uses

from machine import cpu_model, memory_text  # noqa: E402


def load() -> str:
    """Load average over 1, 5 and 15 min, and runnable/all processes: "11.2 12.0 10.9 (9/412)"."""
    one, five, fifteen, running = Path("/proc/loadavg").read_text().split()[:4]
    return f"{one} {five} {fifteen} ({running})"


def children_cpu() -> float:
    """User + system seconds of this process's waited-for descendants so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


def shell_loop(manifest: Path, out: Path) -> tuple:
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
    start, cpu = time.perf_counter(), children_cpu()
    subprocess.run(["bash", str(script)], check=True)
    return time.perf_counter() - start, children_cpu() - cpu


def batch(manifest: Path, out: Path, workers: int) -> tuple:
    shutil.rmtree(out, ignore_errors=True)
    start, cpu = time.perf_counter(), children_cpu()
    subprocess.run(["dicomannotembed", "-q", "batch", str(manifest), "--out", str(out), "--workers", str(workers),
                    "--no-dashboard"], check=True, stdout=subprocess.DEVNULL)
    elapsed, cpu = time.perf_counter() - start, children_cpu() - cpu
    records = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    assert all(r["status"] == "done" for r in records), [r["error"] for r in records if r["status"] != "done"]
    return elapsed, cpu, records


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

    print(f"# Batch benchmark\n\nMachine: {os.uname().nodename}, {cpu_model()}, {os.cpu_count()} cores, {memory_text()}; "
          f"load average (1, 5, 15 min; runnable/all processes) at the start: {load()}.\n"
          f"{n} cases of {shape[0]} x {shape[1]} x {shape[2]} (overlay + SEG each).\n")
    print("| run | wall s | cases/min | vs loop | cases/min after start-up | per case s (median) | "
          "CPU s total (process tree) | CPU s per case in the worker (median) | worker peak MB (max) | "
          "case memory increase MB (max) | load before -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    before = load()
    print("shell loop ...", file=sys.stderr)
    loop_s, loop_cpu = (float("nan"), float("nan")) if args.no_loop else shell_loop(manifest, workdir / "out-loop")
    loop_rate = n / loop_s * 60 if loop_s == loop_s else float("nan")
    print(f"| shell loop, 2 processes per case | {loop_s:.1f} | {loop_rate:.1f} | 1.00 | - | {loop_s / n:.2f} | "
          f"{loop_cpu:.1f} | - | - | - | {before} -> {load()} |")
    rates, steady = {}, {}
    for workers in (1, 2):
        before = load()
        print(f"batch --workers {workers} ...", file=sys.stderr)
        elapsed, cpu, records = batch(manifest, workdir / f"out-batch-{workers}", workers)
        rates[workers] = n / elapsed * 60
        steady[workers] = n / busy_span(records) * 60
        durations = sorted(r["duration_s"] for r in records)
        print(f"| batch --workers {workers} | {elapsed:.1f} | {rates[workers]:.1f} | {rates[workers] / loop_rate:.2f} | "
              f"{steady[workers]:.1f} | {durations[len(durations) // 2]:.2f} | {cpu:.1f} | "
              f"{sorted(r.get('cpu_s', 0) for r in records)[len(records) // 2]:.2f} | "
              f"{max(r['peak_memory_mb'] for r in records):.0f} | "
              f"{max(r['memory_increase_mb'] for r in records):.0f} | {before} -> {load()} |")
    print(f"\nThroughput: shell loop {loop_rate:.1f}, batch 1 worker {rates[1]:.1f}, 2 workers {rates[2]:.1f} cases/min; "
          f"scaling 1 -> 2 workers: {rates[2] / rates[1]:.2f}x wall, {steady[2] / steady[1]:.2f}x after start-up. "
          f"Load at the end: {load()} on {os.cpu_count()} cores.")
    if args.big and (workdir / "big.jsonl").exists():
        elapsed, _, records = batch(workdir / "big.jsonl", workdir / "out-big", 1)
        r = records[0]
        print(f"\nLIDC-sized case (130 x 512 x 512, overlay + SEG) on 1 worker: {r['duration_s']:.1f} s in the worker "
              f"({elapsed:.1f} s with cluster start-up), worker peak {r['peak_memory_mb']:.0f} MB, "
              f"increase {r['memory_increase_mb']:.0f} MB; load {load()}.")


if __name__ == "__main__":
    main()
