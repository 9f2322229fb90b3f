#!/usr/bin/env python3
"""Mutation fuzzer of every DicomAnnotEmbed reader.

    python3 Testing/fuzz/fuzz.py --cases 100000 --seed 1 --jobs 2 --report /tmp/fuzz.json
    python3 Testing/fuzz/fuzz.py --seed 1 --replay 1234        # one case again, in process, with traceback

Each case is (reader, seed file, mutation seed): the mutated input is written to a scratch folder and
the reader is called in a worker process (cases are batched: one worker runs many) under a memory
limit (RLIMIT_AS) and a time limit (an interval timer in the worker; the parent kills a worker that
stops answering). A case ends as:

    ok       the reader returned
    error    a DicomAnnotEmbedError (our clear error); "unnamed" when it names no file
    crash    any other exception (distinct by type and innermost line of our code), or a dead worker
    hang     longer than the time limit
    oom      MemoryError under the memory limit
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from commands import install_boundaries  # noqa: E402
from corpus import build_corpus  # noqa: E402
from mutations import mutate  # noqa: E402
from readers import READERS, Context, Outcome  # noqa: E402

DEFAULT_CORPUS = Path(tempfile.gettempdir()) / "dae-fuzz-corpus"


#: Statuses a run must not have.
BAD = ("crash", "hang", "oom", "unnamed")


class Hang(BaseException):
    """Raised by the interval timer in a worker (BaseException: no reader may swallow it)."""


# ------------------------------------------------------------------ cases
def make_cases(corpus: dict, count: int, seed: int, start: int = 0) -> list:
    """``count`` cases, the same for the same seed and corpus."""
    rng = random.Random(seed)
    names = list(READERS)
    weights = [READERS[n][3] for n in names]
    by_kind = {}
    for i, s in enumerate(corpus["seeds"]):
        by_kind.setdefault(s["kind"], []).append(i)
    cases = []
    for i in range(start + count):
        reader = rng.choices(names, weights)[0]
        candidates = [j for kind in READERS[reader][0] for j in by_kind.get(kind, [])]
        seed_index = rng.choice(candidates) if candidates else None
        mutation_seed = rng.getrandbits(48)
        if i >= start and seed_index is not None:
            cases.append(dict(id=i, reader=reader, seed=seed_index, rng=mutation_seed))
    return cases


def _full_suffix(name: str) -> str:
    for double in (".seg.nrrd", ".mrk.json", ".nii.gz"):
        if name.lower().endswith(double):
            return double
    return Path(name).suffix


def materialize(case: dict, corpus: dict, work: Path):
    """Write the mutated input under ``work``; returns (input path, mutated file, description)."""
    seed = corpus["seeds"][case["seed"]]
    fmt = READERS[case["reader"]][1]
    rng = random.Random(case["rng"])
    source = Path(seed["path"])
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
        target = rng.choice(files)
        folder = work / "in"
        for f in files:
            dest = folder / f.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if f != target:
                try:
                    os.link(f, dest)
                except OSError:
                    shutil.copy(f, dest)
        mutated = folder / target.relative_to(source)
        data, how = mutate(target.read_bytes(), fmt, rng)
        mutated.write_bytes(data)
        return folder, mutated, f"{target.name}: {how}"
    data, how = mutate(source.read_bytes(), fmt, rng)
    if seed["kind"] == "image":  # a one-file series
        folder = work / "in"
        folder.mkdir()
        mutated = folder / source.name
        mutated.write_bytes(data)
        return folder, mutated, how
    mutated = work / ("in" + _full_suffix(source.name))
    mutated.write_bytes(data)
    return mutated, mutated, how


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "DicomAnnotEmbedLib" in f.filename]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return exc.__class__.__name__
    where = frame.filename.split("DicomAnnotEmbedLib/")[-1]
    return f"{exc.__class__.__name__} at {where}:{frame.lineno} ({frame.name})"


def run_case(case: dict, corpus: dict, ctx: Context, timeout: float, scratch: Path) -> dict:
    from DicomAnnotEmbedLib.core.errors import DicomAnnotEmbedError

    work = Path(tempfile.mkdtemp(dir=scratch, prefix=f"c{case['id']}-"))
    result = dict(id=case["id"], reader=case["reader"], seed=corpus["seeds"][case["seed"]]["path"])
    os.chdir(work)  # relative paths of a mutated command line land here, and go with it
    try:
        path, mutated, result["mutation"] = materialize(case, corpus, work)
        (work / "out").mkdir()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        started = time.monotonic()
        try:
            READERS[case["reader"]][2](path, work / "out", ctx)
            result["status"] = "ok"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            result["seconds"] = round(time.monotonic() - started, 3)
    except Outcome as outcome:  # a target that judged its case itself (the command line)
        result.update(status=outcome.status, message=outcome.message[:400])
        if outcome.signature:
            result["signature"] = outcome.signature
    except DicomAnnotEmbedError as exc:
        message = str(exc)
        named = bool(exc.path) or any(str(p) in message for p in (path, mutated, path.name, mutated.name))
        result.update(status="error" if named else "unnamed", message=message[:400])
        if "\n" in message:
            result.update(status="unnamed", message="multi-line: " + message[:400])
    except Hang:
        result.update(status="hang")
    except MemoryError as exc:
        result.update(status="oom", signature=_signature(exc))
    except Exception as exc:  # noqa: BLE001 - every other exception is what the fuzzer looks for
        result.update(status="crash", signature=_signature(exc), message=f"{exc.__class__.__name__}: {exc}"[:400])
    finally:
        os.chdir(scratch)
        shutil.rmtree(work, ignore_errors=True)
    return result


# ------------------------------------------------------------------ worker process
def worker_main(corpus_json: str, timeout: float, memory_mb: int, scratch: str) -> None:
    import logging
    import warnings

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)

    def alarm(signum, frame):
        raise Hang()

    signal.signal(signal.SIGALRM, alarm)
    install_boundaries()  # no network, no Dask cluster: commands stop there (commands.Reached)
    corpus = json.loads(Path(corpus_json).read_text())
    ctx = Context(corpus)
    import DicomAnnotEmbedLib.api  # noqa: F401 - imported before the first case's timer starts
    scratch = Path(scratch)  # made and removed by the parent: a worker it kills leaves nothing behind
    os.environ["HOME"] = str(scratch)  # "~" in a mutated command line stays in the scratch folder
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")  # readers that print must not break the protocol
    for line in sys.stdin:
        result = run_case(json.loads(line), corpus, ctx, timeout, scratch)
        out.write(json.dumps(result) + "\n")
        out.flush()


# ------------------------------------------------------------------ parent
class Worker:
    def __init__(self, corpus_json: Path, timeout: float, memory_mb: int):
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="1", PYTHONWARNINGS="ignore")
        self.scratch = tempfile.mkdtemp(prefix="dae-fuzz-")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(corpus_json),
             "--timeout", str(timeout), "--memory-mb", str(memory_mb), "--scratch", self.scratch],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env)

    def ask(self, case: dict, wait: float):
        """The result line, or None when the worker died or stopped answering (then it is killed)."""
        try:
            self.process.stdin.write(json.dumps(case) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None, "died"
        ready, _, _ = select.select([self.process.stdout], [], [], wait)
        if not ready:
            self.stop()
            return None, "hang"
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            return None, f"died (exit {code})"
        return json.loads(line), None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # this worker's own PID
        self.process.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)


def run_fuzz(corpus: dict, corpus_json: Path, cases: list, *, jobs: int = 2, timeout: float = 20.0,
             memory_mb: int = 3072, log=None, minutes: float = None) -> dict:
    """Run ``cases`` on ``jobs`` workers; returns the report (per reader counts, crash signatures)."""
    todo = queue.Queue()
    for case in cases:
        todo.put(case)
    results = []
    lock = threading.Lock()
    started = time.monotonic()

    def slot():
        worker = Worker(corpus_json, timeout, memory_mb)
        try:
            while minutes is None or time.monotonic() - started < minutes * 60:
                try:
                    case = todo.get_nowait()
                except queue.Empty:
                    return
                result, failure = worker.ask(case, timeout + 60)
                if result is None:
                    result = dict(id=case["id"], reader=case["reader"], seed=corpus["seeds"][case["seed"]]["path"],
                                  status="hang" if failure == "hang" else "crash",
                                  signature=f"worker {failure}")
                    if failure != "hang":
                        worker.stop()
                    worker = Worker(corpus_json, timeout, memory_mb)
                with lock:
                    results.append(result)
                    if log and result["status"] in BAD:  # said at once: a long run can be acted on
                        log(f"case {result['id']} {result['reader']}: {result['status']} "
                            f"{result.get('signature') or result.get('message', '')[:160]}")
                    if log and len(results) % 500 == 0:
                        bad = ", ".join(f"{k} {sum(r['status'] == k for r in results)}" for k in BAD)
                        log(f"{len(results)}/{len(cases)} cases, {time.monotonic() - started:.0f} s ({bad})")
        finally:
            worker.process.stdin.close()
            worker.stop()

    threads = [threading.Thread(target=slot) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarize(results, time.monotonic() - started)


def summarize(results: list, seconds: float) -> dict:
    readers = {}
    signatures = {}
    for r in sorted(results, key=lambda r: r["id"]):
        counts = readers.setdefault(r["reader"], dict(cases=0, ok=0, error=0, unnamed=0, crash=0, hang=0, oom=0,
                                                       seconds=0.0))
        counts["cases"] += 1
        counts["seconds"] = round(counts["seconds"] + r.get("seconds", 0.0), 2)
        counts[r["status"]] += 1
        if r["status"] in ("crash", "hang", "oom", "unnamed"):
            key = r.get("signature") or (r["status"] + ": " + r.get("message", "")[:80])
            entry = signatures.setdefault(key, dict(status=r["status"], count=0, first=r))
            entry["count"] += 1
    totals = {k: sum(c[k] for c in readers.values()) for k in ("cases", "ok", "error", "unnamed", "crash", "hang", "oom")}
    return dict(seconds=round(seconds, 1), totals=totals, readers=readers, signatures=signatures)


def format_report(report: dict) -> str:
    lines = [f"{'reader':24} {'cases':>7} {'ok':>6} {'error':>6} {'unnamed':>7} {'crash':>6} {'hang':>5} {'oom':>4}"
             f" {'s/case':>7}"]
    for name, c in sorted(report["readers"].items()):
        lines.append(f"{name:24} {c['cases']:7} {c['ok']:6} {c['error']:6} {c['unnamed']:7} {c['crash']:6} "
                     f"{c['hang']:5} {c['oom']:4} {c.get('seconds', 0) / max(c['cases'], 1):7.3f}")
    t = report["totals"]
    lines.append(f"{'total':24} {t['cases']:7} {t['ok']:6} {t['error']:6} {t['unnamed']:7} {t['crash']:6} "
                 f"{t['hang']:5} {t['oom']:4}   ({report['seconds']} s)")
    for key, entry in sorted(report["signatures"].items(), key=lambda kv: -kv[1]["count"]):
        first = entry["first"]
        lines.append(f"  {entry['count']:5} x {key}\n         e.g. case {first['id']} {first['reader']} "
                     f"{Path(first['seed']).name} [{first.get('mutation', '')[:100]}] {first.get('message', '')[:200]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--start", type=int, default=0, help="first case number (to continue a run)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    parser.add_argument("--memory-mb", type=int, default=3072)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--no-interop", action="store_true")
    parser.add_argument("--reader", action="append", help="only these readers")
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--minutes", type=float, help="stop starting cases after this long (report what ran)")
    parser.add_argument("--replay", type=int, help="run case N in this process and show its traceback")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.timeout, args.memory_mb, args.scratch)
        return 0
    corpus = build_corpus(args.corpus, interop=not args.no_interop)
    corpus_json = args.corpus / "corpus.json"
    if args.replay is not None:
        install_boundaries()
        case = make_cases(corpus, 1, args.seed, start=args.replay)[0]
        work = Path(tempfile.mkdtemp(prefix="dae-replay-"))
        path, mutated, how = materialize(case, corpus, work)
        (work / "out").mkdir()
        print(f"case {case['id']}: {case['reader']} on {corpus['seeds'][case['seed']]['path']}: {how}\ninput: {path}")
        READERS[case["reader"]][2](path, work / "out", Context(corpus))
        print("ok")
        return 0
    cases = make_cases(corpus, args.cases, args.seed, start=args.start)
    if args.reader:
        cases = [c for c in cases if c["reader"] in args.reader]
    report = run_fuzz(corpus, corpus_json, cases, jobs=args.jobs, timeout=args.timeout, memory_mb=args.memory_mb,
                      log=lambda m: print(m, file=sys.stderr, flush=True), minutes=args.minutes)
    print(format_report(report))
    if args.report:
        args.report.write_text(json.dumps(report, indent=1))
    t = report["totals"]
    return 1 if t["crash"] or t["hang"] or t["oom"] else 0


if __name__ == "__main__":
    sys.exit(main())
