"""``dicomannotembed batch``: a whole collection from a manifest, on Dask distributed."""
from __future__ import annotations

import argparse
import logging
import sys

from ._common import UsageError, plural


def register(commands, command) -> None:
    batch = command(commands, "batch", "convert a whole collection listed in a manifest (Dask, resumable)",
        "Convert every case of MANIFEST (CSV or JSON lines: id, series, annotations, outputs, options; see "
        "Resources/Examples/batch_manifest_example.csv) into OUT/<id>/, one Dask task per case, on a local "
        "cluster of worker processes or on a running scheduler (--scheduler). OUT/ledger.jsonl records each "
        "finished case (outputs' SHA-256, duration, peak memory, error); a rerun skips finished cases whose "
        "inputs did not change. The exit code is 3 when any case failed.")
    batch.add_argument("manifest", metavar="MANIFEST", help="the cases: .csv or .jsonl")
    batch.add_argument("--out", required=True, metavar="DIR", help="output folder (one sub-folder per case, the ledger)")
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="local cluster of N worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="a running Dask scheduler (tcp://host:8786) whose workers see the same paths")
    batch.add_argument("--worker-timeout", type=float, default=60, metavar="S",
                       help="with --scheduler: seconds to wait for its first worker once the cases are submitted "
                            "(an adaptive cluster starts workers for them; default 60; 0: wait for ever, e.g. for "
                            "SLURM jobs in a queue)")
    batch.add_argument("--retry-failed", action="store_true", help="run again the cases the ledger lists as failed")
    batch.add_argument("--memory-limit", default="auto", metavar="SIZE",
                       help="per-worker memory limit of the local cluster, e.g. 4GiB, 3.5GB, 800MB; at least 512MiB "
                            "(default auto: memory / workers; 'none': no limit); a worker over it is restarted by its "
                            "nanny and its case retried, then failed as out of memory")
    batch.add_argument("--allowed-failures", type=int, default=2, metavar="N",
                       help="retries of a case whose worker died, before it is failed (local cluster; default 2)")
    batch.add_argument("--no-dashboard", action="store_true", help="do not serve the Dask dashboard")
    batch.set_defaults(run=run)


def run(args: argparse.Namespace, progress) -> int:
    from .. import api
    from ..core.errors import InputError
    from ..services.batch.runner import memory_limit_bytes

    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.allowed_failures < 0:
        raise UsageError("--allowed-failures must be 0 or more")
    if args.worker_timeout < 0:
        raise UsageError("--worker-timeout must be 0 (wait for ever) or more")
    try:
        memory = memory_limit_bytes(args.memory_limit)
    except InputError as exc:
        raise UsageError(f"--memory-limit: {exc}") from None
    if not args.verbose:  # Dask logs each worker's start and stop at INFO (set when it is imported)
        try:
            import distributed  # noqa: F401
        except ImportError:
            pass  # run_batch says what to install
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.ERROR)
    bar = _Bar(enabled=progress.enabled)

    def started(info: dict) -> None:
        if args.quiet:
            return
        if info["to_run"] == 0:
            print(f"nothing to run: all {plural(info['skipped'], 'case')} are in the ledger (done, or failed: --retry-failed) "
                  "with unchanged inputs", file=sys.stderr)
            return
        workers = plural(info["workers"], "worker") if info["workers"] else "no worker yet (--worker-timeout)"
        print(f"{info['cluster']}, {workers}; dashboard: "
              f"{info['dashboard'] or 'off (--no-dashboard, or bokeh not installed)'}", file=sys.stderr)
        print(f"{plural(info['to_run'], 'case')} to run, {info['skipped']} skipped (finished before, inputs unchanged)",
              file=sys.stderr)
        bar.start(info["to_run"])

    def finished(record: dict) -> None:
        bar.update(record)
        if record["status"] != "done" and not bar.enabled and not args.quiet:
            print(f"failed: {record['case']}: {record.get('error')}", file=sys.stderr)

    try:
        result = api.run_batch(args.manifest, args.out, workers=args.workers, scheduler=args.scheduler,
                               retry_failed=args.retry_failed, memory_limit=memory,
                               allowed_failures=args.allowed_failures, dashboard=not args.no_dashboard,
                               worker_timeout=args.worker_timeout or None,
                               on_case=finished, on_start=started)
    finally:
        bar.close()
    print(summary(result))
    return 0 if result.ok else 3


class _Bar:
    """Cases done and failed, with tqdm's ETA (only on a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self.failed = 0

    def start(self, total: int) -> None:
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="cases", unit="case", dynamic_ncols=True, file=sys.stderr)

    def update(self, record: dict) -> None:
        self.failed += record["status"] != "done"
        if self._bar is not None:
            if record["status"] != "done":
                self._bar.write(f"failed: {record['case']}: {record.get('error')}", file=sys.stderr)
            self._bar.set_postfix(failed=self.failed, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def summary(result) -> str:
    """The table printed at the end: counts, times, memory, and every failed case with its error."""
    ran = [result.records[c] for c in result.ran if c in result.records]
    done_now = [r for r in ran if r["status"] == "done"]
    failed_now = [r for r in ran if r["status"] != "done"]
    kept = [result.records[c] for c in result.skipped if c in result.records]
    durations = [r["duration_s"] for r in done_now if r.get("duration_s") is not None]
    peaks = [r["peak_memory_mb"] for r in ran if r.get("peak_memory_mb") is not None]
    rate = len(ran) / result.elapsed_s * 60 if result.elapsed_s and ran else 0.0
    rows = [("done now", len(done_now)), ("failed now", len(failed_now)),
            ("done before (skipped)", sum(r["status"] == "done" for r in kept)),
            ("failed before (not retried)", sum(r["status"] != "done" for r in kept))]
    lines = [f"{'cases':<30}{'count':>7}"] + [f"{name:<30}{count:>7}" for name, count in rows]
    lines.append(f"{'total':<30}{len(result.records):>7}")
    if ran:
        lines.append(f"wall time {result.elapsed_s:.1f} s ({rate:.1f} cases/min on {result.workers} workers); "
                     f"per case {min(durations, default=0):.2f}-{max(durations, default=0):.2f} s, "
                     f"peak worker memory {max(peaks, default=0):.0f} MB")
    failed = [r for r in result.records.values() if r["status"] != "done"]
    if failed:
        width = max(len(r["case"]) for r in failed)
        lines.append("failed cases (--retry-failed runs them again):")
        lines += [f"  {r['case']:<{width}}  {r.get('error')}" for r in failed]
    lines.append(f"ledger: {result.out_dir / 'ledger.jsonl'}")
    return "\n".join(lines)
