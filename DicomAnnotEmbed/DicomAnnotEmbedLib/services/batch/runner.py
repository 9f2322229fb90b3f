"""Run a manifest of cases on Dask distributed: a local cluster of processes, or a given scheduler.

Each case is one task (:func:`steps.run_case`) that a worker runs in its own process, reading
the case's files from storage that the workers share with this machine; only the case's spec
(paths, a few options) goes to the scheduler and only its ledger record comes back. The process
that runs the batch appends each finished case to the ledger; a rerun skips what is finished.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from ...core.errors import InputError, OutputError
from ...core.outputs import existing_output_dir
from ...core.progress import ProgressCallback
from .ledger import Ledger, fingerprint
from .manifest import CaseSpec, read_manifest
from .steps import CASE_FILE, INPUT_KINDS, OLD_PREFIX, OUTPUTS, PARTIAL_PREFIX, run_case

log = logging.getLogger(__name__)
LOCK = ".batch.lock"
#: Events on the scheduler: a case started on a worker (ours), a nanny restarted its worker for memory (Dask's).
CASE_STARTED = "dicomannotembed-case-started"
MEMORY_RESTART = "worker-restart-memory"
#: A worker holds about 340 MB once its modules are loaded, before any case: a smaller limit
#: would have the nanny restart it for ever (and "4" is more likely 4 GB meant than 4 bytes).
MIN_MEMORY_LIMIT = 512 * 2 ** 20
_BYTE_UNITS = {"": 1, "b": 1, **{f"{p}{b}": 1000 ** (i + 1) for i, p in enumerate("kmgtp") for b in ("", "b")},
               **{f"{p}i{b}": 1024 ** (i + 1) for i, p in enumerate("kmgtp") for b in ("", "b")}}

try:  # a plugin class must be importable on the workers; Dask is optional for the rest of the package
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - without dask[distributed] run_batch says what to install
    _WorkerPlugin = object


class PreloadPlugin(_WorkerPlugin):
    """Imports the heavy modules once per worker process, when it joins (not per case)."""

    name = "dicomannotembed-preload"

    def setup(self, worker=None):
        import importlib

        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError:  # an optional module: the case that needs it will say so
                pass
        try:  # highdicom reads its tables of the standard (about 1 s) on first use: read them now
            from highdicom import _standard_utils as tables

            for name in ("get_sop_class_iod_map", "get_iod_module_map", "get_module_attribute_map"):
                getattr(tables, name)()
        except Exception:  # a private helper of highdicom: its absence only costs time
            pass


#: Modules the cases import lazily: loaded once when a worker joins (a cold case took 3.3 s
#: instead of 0.7 s without them, vtk and slicerio being most of the difference).
PRELOAD = ("highdicom", "SimpleITK", "slicerio", "nrrd", "scipy.ndimage", "vtkmodules.vtkCommonDataModel",
           "vtkmodules.vtkFiltersGeneral", "vtkmodules.util.numpy_support",
           *(f"{__package__.rpartition('.')[0].rpartition('.')[0]}.{m}" for m in (
               "api", "core.measurements", "dicom.dcmqi_metadata", "encodings.overlay", "encodings.seg",
               "encodings.sr", "encodings.rtstruct", "encodings.gsps", "files.csv_table", "files.markups_io", "files.ml_export", "files.segio")))


@dataclass
class BatchResult:
    """What a batch did: the last ledger record of every case of the manifest."""

    out_dir: Path
    records: Dict[str, dict] = field(default_factory=dict)
    ran: List[str] = field(default_factory=list)       # cases run by this call
    skipped: List[str] = field(default_factory=list)   # finished before, inputs unchanged
    cluster: str = ""
    workers: int = 0
    dashboard: Optional[str] = None
    elapsed_s: float = 0.0

    @property
    def failed(self) -> List[str]:
        return [c for c, r in self.records.items() if r.get("status") != "done"]

    @property
    def done(self) -> List[str]:
        return [c for c, r in self.records.items() if r.get("status") == "done"]

    @property
    def ok(self) -> bool:
        return not self.failed


def _require_distributed():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise InputError("the batch needs Dask distributed: python3 -m pip install 'dicomannotembed[batch]' "
                         "(or 'dask[distributed]')") from None


@contextlib.contextmanager
def _locked(out: Path):
    """One batch at a time per output folder (it owns the temporary folders and the ledger)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one batch per folder is then up to the user
        yield
        return
    lock = open(out / LOCK, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise OutputError("another batch is running into this folder", out) from None
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _clean_leftovers(out: Path) -> None:
    """Temporary folders of cases interrupted by a crash (never under a final name)."""
    for entry in out.iterdir():
        if entry.is_dir() and entry.name.startswith((PARTIAL_PREFIX, OLD_PREFIX)):
            shutil.rmtree(entry, ignore_errors=True)


def memory_limit_bytes(value: Union[str, float, None]) -> Union[str, int, None]:
    """A per-worker memory limit as given (``"4GiB"``, ``"3.5GB"``, ``"800MB"``, bytes, ``"auto"``,
    ``"none"``/None/0 for no limit) checked and in bytes; "auto" stays "auto".

    Raises:
        InputError: not a size, or under :data:`MIN_MEMORY_LIMIT`.
    """
    import re

    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "0", "")):
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", str(value), re.IGNORECASE)
        if not match or match.group(2).lower() not in _BYTE_UNITS:
            raise InputError(f"memory limit {value!r} is not a size (e.g. 4GiB, 3.5GB, 800MB; or auto, none)")
        number, unit = float(match.group(1)), match.group(2).lower()
    if number == 0:
        return None
    limit = int(number * _BYTE_UNITS[unit])
    if limit < MIN_MEMORY_LIMIT:
        raise InputError(f"memory limit {value!r} is under 512 MiB: a worker holds about 340 MB before its first case")
    return limit


def _settings(case: CaseSpec) -> dict:
    return {"annotations": case.annotations, "outputs": sorted(case.outputs), "options": case.options}


def _finished_folder(out: Path, case: CaseSpec, fp: str) -> Optional[dict]:
    """``case.json`` of the case's final folder when it was written from these very inputs."""
    try:
        data = json.loads((out / case.id / CASE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("inputs") == fp else None


def plan(cases: List[CaseSpec], out: Path, ledger: Ledger, retry_failed: bool):
    """Split the cases into those to run (with their fingerprints) and the ledger records of those
    to skip. A case whose folder is whole but whose ledger line was lost (killed between the two)
    gets its line back from ``case.json``."""
    previous = ledger.read()
    to_run, kept = [], {}
    for case in cases:
        fp = fingerprint(case.input_paths(), _settings(case))
        record = previous.get(case.id)
        same = record is not None and record.get("inputs") == fp
        if same and record["status"] == "done" and _finished_folder(out, case, fp) is not None:
            kept[case.id] = record
        elif same and record["status"] != "done" and not retry_failed:
            kept[case.id] = record
        elif (finished := _finished_folder(out, case, fp)) is not None:
            record = {"case": case.id, "status": "done", "inputs": fp, "outputs": finished.get("outputs", {}),
                      "error": None, "recovered": "the case's folder was whole but not in the ledger"}
            ledger.append(record)
            kept[case.id] = record
        else:
            to_run.append((case, fp))
    return to_run, kept


def _cluster(workers: Optional[int], scheduler: Optional[str], memory_limit, allowed_failures: int,
             dashboard: bool):
    """(client, cluster or None, description)."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler: {exc}", scheduler) from None
        return client, None, True, f"scheduler {scheduler}"  # its workers are awaited once the cases are in
    n = workers or os.cpu_count() or 1
    have_bokeh = True
    try:
        import bokeh  # noqa: F401
    except ImportError:
        have_bokeh = False
    # worker-saturation 1.0: a worker holds only the case it runs, so that when it dies (killed,
    # over its memory limit) only that case counts a failure, not one queued behind it.
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures,
                          "distributed.scheduler.worker-saturation": 1.0,
                          "distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               scheduler_port=0, dashboard_address="127.0.0.1:0",  # its HTTP server always runs
                               memory_limit=memory_limit, silence_logs=logging.ERROR)
        client = Client(cluster, set_as_default=False)
    return client, cluster, have_bokeh, f"local cluster of {n} worker processes on 127.0.0.1"


def run_batch(manifest: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
              workers: Optional[int] = None, scheduler: Optional[str] = None, retry_failed: bool = False,
              memory_limit: Union[str, float, None] = "auto", allowed_failures: int = 2, dashboard: bool = True,
              worker_timeout: Optional[float] = 60,
              progress: Optional[ProgressCallback] = None, on_case: Optional[Callable[[dict], None]] = None,
              on_start: Optional[Callable[[dict], None]] = None) -> BatchResult:
    """Convert every case of ``manifest`` (CSV or JSON lines, see :mod:`.manifest`) into ``out_dir/<id>/``.

    Args:
        workers: size of the local cluster (default: this machine's cores); ignored with ``scheduler``.
        scheduler: address of a running Dask scheduler (``tcp://host:8786``) whose workers see the
            same paths; without it a local cluster of processes is started on 127.0.0.1 and stopped.
        retry_failed: run again the cases the ledger lists as failed (else they are kept as failed).
        memory_limit: per-worker memory limit of the local cluster (``"4GiB"``, ``"3.5GB"``, bytes,
            ``"auto"``: the machine's memory shared among the workers; None or "none": no limit;
            at least 512 MiB), checked before anything else. A worker over it is restarted by its
            nanny and its case retried; a case that goes over it on every try is failed with a
            message saying so.
        allowed_failures: how often a case may be retried after its worker died (local cluster;
            a given scheduler uses its own ``distributed.scheduler.allowed-failures``).
        dashboard: serve the Dask dashboard on a free port (needs bokeh).
        worker_timeout: with ``scheduler``, seconds to wait for its first worker once the cases are
            submitted (an adaptive cluster, e.g. dask-jobqueue's ``adapt``, starts workers only
            for submitted work); None waits for ever (workers queued on SLURM).
        progress: ``progress(done, total, "Cases")`` after each finished case.
        on_case: called with each finished case's ledger record; on_start with a dict of cluster,
            workers, dashboard, to_run, skipped.

    Paths in and out are files and folders (no coordinates pass this boundary: each case's
    conversions keep their formats' frames, LPS for DICOM and .seg.nrrd).

    Raises:
        InputError: a bad memory limit, a bad manifest (names it and the line), an unreachable
            scheduler, no Dask.
        OutputError: ``out_dir`` is not writable, or another batch runs into it.
    Failed cases do not raise: see ``result.failed`` and the ledger.
    """
    start = time.perf_counter()
    memory_limit = memory_limit_bytes(memory_limit)
    cases = read_manifest(manifest, tuple(OUTPUTS), tuple(INPUT_KINDS))
    out = existing_output_dir(out_dir)
    out = out.resolve()
    result = BatchResult(out)
    ledger = Ledger(out)
    with _locked(out):
        _clean_leftovers(out)
        to_run, kept = plan(cases, out, ledger, retry_failed)
        result.skipped = list(kept)
        info = {"cluster": None, "workers": 0, "dashboard": None, "to_run": len(to_run), "skipped": len(kept)}
        records: Dict[str, dict] = dict(kept)
        if to_run:
            _require_distributed()
            client, cluster, have_bokeh, result.cluster = _cluster(workers, scheduler, memory_limit, allowed_failures, dashboard)
            try:
                result.workers = len(client.scheduler_info().get("workers", {}))
                served = "dashboard" in client.scheduler_info().get("services", {}) and have_bokeh and dashboard
                result.dashboard = client.dashboard_link if served and (cluster is None or dashboard) else None
                info.update(cluster=result.cluster, workers=result.workers, dashboard=result.dashboard)
                if on_start:
                    on_start(info)
                _register(client)
                _run(client, to_run, out, ledger, records, result, progress, on_case,
                     worker_timeout if cluster is None else None, scheduler)
                _clean_leftovers(out)  # folders of cases whose worker died (the case ran again elsewhere)
            finally:
                with contextlib.suppress(Exception):
                    client.close(timeout=10)
                if cluster is not None:
                    with contextlib.suppress(Exception):
                        cluster.close(timeout=20)
        elif on_start:
            on_start(info)
    result.records = {c.id: records[c.id] for c in cases if c.id in records}
    result.elapsed_s = time.perf_counter() - start
    return result


def _register(client) -> None:
    plugin = PreloadPlugin()
    if hasattr(client, "register_plugin"):
        client.register_plugin(plugin)
    else:  # distributed < 2023.9
        client.register_worker_plugin(plugin)


def _case_task(spec: dict, out_dir: str, fp: str, key: str) -> dict:
    """:func:`steps.run_case` on a worker, after telling the scheduler which worker runs it, so
    that a case whose worker dies can be told apart: killed, or restarted for its memory limit."""
    try:
        from distributed import get_worker

        worker = get_worker()
        limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
        worker.log_event(CASE_STARTED, {"key": key, "worker": worker.address, "memory_limit": limit})
    except Exception:  # not on a worker (called directly): nothing to tell
        pass
    return run_case(spec, out_dir, fp)


def _size(n) -> str:
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.0f} MiB"


class _Deaths:
    """The workers each case started on, and those restarted by their nanny for going over their
    memory limit, from the scheduler's events as they come (its own log keeps only the last 1,000)."""

    def __init__(self, client):
        self.client, self.started, self.memory = client, {}, {}
        client.subscribe_topic(CASE_STARTED, self._started)
        client.subscribe_topic(MEMORY_RESTART, self._memory)

    def _started(self, event) -> None:
        self.started.setdefault(event[1].get("key"), []).append(event[1])

    def _memory(self, event) -> None:
        self.memory[event[1].get("worker")] = event[1]

    def close(self) -> None:
        for topic in (CASE_STARTED, MEMORY_RESTART):
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(topic)

    def error(self, case: CaseSpec, key: str, exc) -> str:
        """The ledger's message for a case whose workers all died (distributed's KilledWorker)."""
        tries = exc.allowed_failures + 1
        deadline = time.monotonic() + 3  # a nanny's event may come just after its worker's death
        while True:
            runs = list(self.started.get(key, []))
            over = [dict(self.memory[r["worker"]], limit=r.get("memory_limit")) for r in runs if r["worker"] in self.memory]
            if (runs and len(over) >= len(runs)) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        last = getattr(exc.last_worker, "address", None) or "unknown"
        if not over:
            return (f"case {case.id}: the worker running it died on each of its {tries} tries (killed, or lost; "
                    f"--allowed-failures {tries - 1}); last on {last}")
        limit = next((o["limit"] for o in reversed(over) if o.get("limit")), None)
        return (f"case {case.id}: out of memory: its worker went over its memory limit"
                f"{f' of {_size(limit)}' if limit else ''} ({_size(max(o.get('rss') or 0 for o in over))} resident) "
                f"and was restarted by its nanny, on {len(over)} of its {tries} tries (--allowed-failures {tries - 1}); "
                "the case needs more memory than a worker has: raise --memory-limit, or run it with fewer workers")


def _run(client, to_run, out: Path, ledger: Ledger, records: dict, result: BatchResult, progress, on_case,
         worker_timeout: Optional[float] = None, scheduler: Optional[str] = None) -> None:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    token = uuid.uuid4().hex[:8]
    deaths = _Deaths(client)  # subscribed before any case is submitted (same stream, in order)
    cases = {}
    for case, fp in to_run:
        key = f"case-{case.id}-{token}"
        future = client.submit(_case_task, case.to_dict(), str(out), fp, key, key=key, pure=False)
        cases[future] = (case, fp)
    total, done = len(cases), 0
    if progress:
        progress(0, total, "Cases")
    try:
        if scheduler and worker_timeout is not None:
            try:
                client.wait_for_workers(1, timeout=worker_timeout)
            except (OSError, TimeoutError):
                raise InputError(f"the Dask scheduler has no workers (none joined within {worker_timeout:g} s)",
                                 scheduler) from None
        for future in as_completed(list(cases), loop=client.loop):
            case, fp = cases[future]
            try:
                record = future.result()
            except KilledWorker as exc:
                record = _failed(case, fp, deaths.error(case, future.key, exc))
            except Exception as exc:  # the task could not run (lost scheduler, unpicklable result)
                record = _failed(case, fp, f"{exc.__class__.__name__}: {exc}")
            future.release()
            ledger.append(record)
            records[case.id] = record
            result.ran.append(case.id)
            done += 1
            if progress:
                progress(done, total, "Cases")
            if on_case:
                on_case(record)
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(cases))
        raise
    finally:
        deaths.close()


def _failed(case: CaseSpec, fp: str, message: str) -> dict:
    return {"case": case.id, "status": "failed", "inputs": fp, "outputs": {}, "error": message,
            "worker": None, "duration_s": None, "peak_memory_mb": None}
