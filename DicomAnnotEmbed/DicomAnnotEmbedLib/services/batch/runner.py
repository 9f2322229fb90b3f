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
PRELOAD = ("highdicom", "SimpleITK", "slicerio", "nrrd", "scipy.spatial", "vtkmodules.vtkCommonDataModel",
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
        try:
            client.wait_for_workers(1, timeout=60)
        except (OSError, TimeoutError):
            client.close()
            raise InputError("the Dask scheduler has no workers (none joined within 60 s)", scheduler) from None
        return client, None, True, f"scheduler {scheduler}"
    n = workers or os.cpu_count() or 1
    have_bokeh = True
    try:
        import bokeh  # noqa: F401
    except ImportError:
        have_bokeh = False
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures,
                          "distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               scheduler_port=0, dashboard_address="127.0.0.1:0",  # its HTTP server always runs
                               memory_limit=memory_limit, silence_logs=logging.ERROR)
        client = Client(cluster, set_as_default=False)
    return client, cluster, have_bokeh, f"local cluster of {n} worker processes on 127.0.0.1"


def run_batch(manifest: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
              workers: Optional[int] = None, scheduler: Optional[str] = None, retry_failed: bool = False,
              memory_limit: Union[str, float, None] = "auto", allowed_failures: int = 2, dashboard: bool = True,
              progress: Optional[ProgressCallback] = None, on_case: Optional[Callable[[dict], None]] = None,
              on_start: Optional[Callable[[dict], None]] = None) -> BatchResult:
    """Convert every case of ``manifest`` (CSV or JSON lines, see :mod:`.manifest`) into ``out_dir/<id>/``.

    Args:
        workers: size of the local cluster (default: this machine's cores); ignored with ``scheduler``.
        scheduler: address of a running Dask scheduler (``tcp://host:8786``) whose workers see the
            same paths; without it a local cluster of processes is started on 127.0.0.1 and stopped.
        retry_failed: run again the cases the ledger lists as failed (else they are kept as failed).
        memory_limit: per-worker memory limit of the local cluster (``"4GiB"``, bytes, ``"auto"``:
            the machine's memory shared among the workers; None: no limit). A worker over it is
            restarted and its case retried.
        allowed_failures: how often a case may be retried after its worker died (local cluster;
            a given scheduler uses its own ``distributed.scheduler.allowed-failures``).
        dashboard: serve the Dask dashboard on a free port (needs bokeh).
        progress: ``progress(done, total, "Cases")`` after each finished case.
        on_case: called with each finished case's ledger record; on_start with a dict of cluster,
            workers, dashboard, to_run, skipped.

    Paths in and out are files and folders (no coordinates pass this boundary: each case's
    conversions keep their formats' frames, LPS for DICOM and .seg.nrrd).

    Raises:
        InputError: a bad manifest (names it and the line), an unreachable scheduler, no Dask.
        OutputError: ``out_dir`` is not writable, or another batch runs into it.
    Failed cases do not raise: see ``result.failed`` and the ledger.
    """
    start = time.perf_counter()
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
                _run(client, to_run, out, ledger, records, result, progress, on_case)
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


def _run(client, to_run, out: Path, ledger: Ledger, records: dict, result: BatchResult, progress, on_case) -> None:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    token = uuid.uuid4().hex[:8]
    cases = {}
    for case, fp in to_run:
        future = client.submit(run_case, case.to_dict(), str(out), fp, key=f"case-{case.id}-{token}", pure=False)
        cases[future] = (case, fp)
    total, done = len(cases), 0
    if progress:
        progress(0, total, "Cases")
    try:
        for future in as_completed(list(cases), loop=client.loop):
            case, fp = cases[future]
            try:
                record = future.result()
            except KilledWorker as exc:
                last = getattr(getattr(exc, "last_worker", None), "address", None) or "unknown"
                record = _failed(case, fp, "the worker running this case died each time it was tried (killed, "
                                           f"or over its memory limit); last on {last}")
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


def _failed(case: CaseSpec, fp: str, message: str) -> dict:
    return {"case": case.id, "status": "failed", "inputs": fp, "outputs": {}, "error": message,
            "worker": None, "duration_s": None, "peak_memory_mb": None}
