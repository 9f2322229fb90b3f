"""One case of a batch, as a worker runs it: inputs read, outputs written through the one-case API.

A new annotation format is one entry in :data:`INPUT_KINDS` (how to recognise it, how to load it
into the case), a new output one entry in :data:`OUTPUTS` (run in the table's order). Nothing
here imports Dask: :func:`run_case` is a plain function that the batch runner submits.

The case writes into a hidden temporary folder in the output folder, which is renamed to
``OUT/<id>/`` only when every output is whole, with ``case.json`` (inputs' fingerprint, outputs'
SHA-256) inside; a failed or interrupted case leaves nothing under its final name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ...core.errors import PATH_ERRNOS, DicomAnnotEmbedError, InputError

CASE_FILE = "case.json"
PARTIAL_PREFIX = ".partial-"
OLD_PREFIX = ".replaced-"


@dataclass
class CaseContext:
    """What the steps of one case share: the series (loaded once) and the annotations so far."""

    id: str
    series_dir: str
    work: Path
    options: Dict[str, dict]
    series_uid: Optional[str] = None
    segmentation: Optional[str] = None        # a .seg.nrrd / label map on the series
    markups: List[str] = field(default_factory=list)
    seg_file: Optional[str] = None            # a DICOM SEG of the segments (input or written)
    written: set = field(default_factory=set)  # outputs already written by an input step (a table)
    outputs: List[str] = field(default_factory=list)
    _reference: object = None

    @property
    def reference(self):
        if self._reference is None:
            from ... import api  # noqa: F401  (the API's modules, imported once per worker)
            from ...core.series import load_series

            self._reference = load_series(self.series_dir, self.series_uid)
        return self._reference

    def opts(self, name: str) -> dict:
        return dict(self.options.get(name) or {})


# ---- inputs -------------------------------------------------------------------------------------

def _segmentation(ctx: CaseContext, path: str) -> None:
    if ctx.segmentation is not None:
        raise InputError("a case takes one segmentation; this is the second", path)
    if not Path(path).is_file():
        raise InputError("does not exist", path)
    ctx.segmentation = path


def _markups(ctx: CaseContext, path: str) -> None:
    if not Path(path).is_file():
        raise InputError("does not exist", path)
    ctx.markups.append(path)


def _table(ctx: CaseContext, path: str) -> None:
    from ... import api

    formats = [o for o in ("overlay", "seg", "sr") if o in ctx.outputs]
    options = ctx.opts("table")
    skip_bad_rows = bool(options.pop("skip_bad_rows", False))
    result = api.import_csv(path, ctx.reference, ctx.work, formats=formats, force=True, **options)
    bad = result.conversion.bad_rows
    if bad and not skip_bad_rows:
        raise InputError(f"{len(bad)} of {result.conversion.rows} rows could not be converted (first: {bad[0]}); "
                         "set \"skip_bad_rows\": true in the case's table options to accept the others", path)
    ctx.written.update(formats)
    ctx.segmentation = _existing(ctx.work / "segmentation.seg.nrrd") or ctx.segmentation
    ctx.markups += [m for m in [_existing(ctx.work / "markups.mrk.json")] if m]
    ctx.seg_file = _existing(ctx.work / "seg.dcm") or ctx.seg_file


def _import_seg(ctx: CaseContext, path: str) -> None:
    from ... import api

    out = ctx.work / "imported" / "segmentation.seg.nrrd"
    api.import_seg(path, ctx.reference, segmentation_out=out)
    ctx.segmentation, ctx.seg_file = str(out), path


def _import_sr(ctx: CaseContext, path: str) -> None:
    from ... import api

    out = ctx.work / "imported-sr"
    api.import_sr(path, ctx.reference, seg_folders=[str(Path(path).parent)], out_dir=out, force=True)
    ctx.segmentation = _existing(out / "segmentation.seg.nrrd") or ctx.segmentation
    ctx.markups += [m for m in [_existing(out / "markups.mrk.json")] if m]


def _import_rtstruct(ctx: CaseContext, path: str) -> None:
    from ... import api

    out = ctx.work / "imported-rtstruct"
    api.import_rtstruct(path, ctx.reference, segmentation_out=out / "segmentation.seg.nrrd",
                        markups_out=out / "markups.mrk.json", **ctx.opts("rtstruct"))
    ctx.segmentation = _existing(out / "segmentation.seg.nrrd") or ctx.segmentation
    ctx.markups += [m for m in [_existing(out / "markups.mrk.json")] if m]


def _import_gsps(ctx: CaseContext, path: str) -> None:
    from ... import api

    out = ctx.work / "imported-gsps" / "markups.mrk.json"
    api.import_gsps(path, ctx.reference, markups_out=out)
    ctx.markups += [m for m in [_existing(out)] if m]


@dataclass(frozen=True)
class InputKind:
    """How an annotation input is recognised (file name suffixes, or DICOM Modality) and loaded."""

    load: Callable[[CaseContext, str], None]
    suffixes: tuple = ()
    modalities: tuple = ()
    order: int = 0              # loading order: tables and imports before plain files


#: Annotation inputs by kind: a new format is one entry.
INPUT_KINDS: Dict[str, InputKind] = {
    "segmentation": InputKind(_segmentation, (".seg.nrrd", ".nrrd", ".nii", ".nii.gz", ".mha", ".mhd"), order=1),
    "markups": InputKind(_markups, (".mrk.json",), order=1),
    "table": InputKind(_table, (".csv",), order=2),
    "seg": InputKind(_import_seg, modalities=("SEG",)),
    "sr": InputKind(_import_sr, modalities=("SR",)),
    "rtstruct": InputKind(_import_rtstruct, modalities=("RTSTRUCT",)),
    "gsps": InputKind(_import_gsps, modalities=("PR",)),
}


def input_kind(path: str) -> str:
    """The kind of an annotation file, from its name or (DICOM) its Modality.

    Raises:
        InputError: no kind matches (the message lists the known ones).
    """
    name = Path(path).name.lower()
    for kind, spec in sorted(INPUT_KINDS.items(), key=lambda item: -max(map(len, item[1].suffixes), default=0)):
        if any(name.endswith(s) for s in spec.suffixes):
            return kind
    if not Path(path).exists():
        raise InputError("does not exist", path)
    import pydicom

    try:
        modality = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).get("Modality", ""))
    except Exception:  # pydicom raises many kinds on non-DICOM files
        modality = ""
    for kind, spec in INPUT_KINDS.items():
        if modality and modality in spec.modalities:
            return kind
    raise InputError(f"not a known annotation input (DICOM Modality {modality or 'none'}); known kinds: "
                     f"{', '.join(INPUT_KINDS)} (give one as kind=path in the manifest)", path)


# ---- outputs ------------------------------------------------------------------------------------

def _overlay(ctx: CaseContext) -> None:
    from ... import api

    api.export_overlay(ctx.reference, ctx.segmentation, ctx.markups, ctx.work / "overlay", **ctx.opts("overlay"))


def _seg(ctx: CaseContext) -> None:
    from ... import api

    if ctx.segmentation is None:
        raise InputError("a SEG needs a segmentation among the annotations", ctx.series_dir)
    options = ctx.opts("seg")
    if "options" in options:  # fields of SegExportOptions, e.g. {"series_description": "..."}
        from ...encodings.seg import SegExportOptions

        options["options"] = SegExportOptions(**options["options"])
    api.export_seg(ctx.reference, ctx.segmentation, ctx.work / "seg.dcm", **options)
    ctx.seg_file = str(ctx.work / "seg.dcm")


def _sr(ctx: CaseContext) -> None:
    from ... import api

    if ctx.seg_file is None:  # the SR's segments live in a SEG: write one as the seg output would
        _seg(ctx)
    api.export_sr(ctx.reference, ctx.seg_file, ctx.work / "sr.dcm", segmentation=ctx.segmentation,
                  markups=ctx.markups, **ctx.opts("sr"))


def _rtstruct(ctx: CaseContext) -> None:
    from ... import api

    if ctx.segmentation is None and not ctx.markups:
        raise InputError("an RT Structure Set needs a segmentation or markups among the annotations", ctx.series_dir)
    api.export_rtstruct(ctx.reference, ctx.segmentation, ctx.work / "rtstruct.dcm", markups=ctx.markups,
                        **ctx.opts("rtstruct"))


def _gsps(ctx: CaseContext) -> None:
    from ... import api

    api.export_gsps(ctx.reference, ctx.markups, ctx.work / "gsps.dcm", segmentation=ctx.segmentation,
                    **ctx.opts("gsps"))


def _ml(ctx: CaseContext) -> None:
    from ... import api

    sources = [s for s in (ctx.work / "sr.dcm", ctx.work / "seg.dcm") if s.exists()][:1]
    if not sources and ctx.seg_file:
        sources = [Path(ctx.seg_file)]
    if not sources and (ctx.work / "overlay").is_dir():
        sources = [ctx.work / "overlay"]
    if not sources:
        raise InputError("ml needs a SEG, SR or overlay output (or a SEG input) to export", ctx.series_dir)
    if (ctx.work / "sr.dcm") in sources:
        sources.append(ctx.work / "seg.dcm")
    api.export_ml([*map(str, sources), ctx.series_dir], ctx.work / "ml", **ctx.opts("ml"))


#: Outputs in the order they are written (an SR refers to the SEG; ML reads what was written):
#: a new format is one entry.
OUTPUTS: Dict[str, Callable[[CaseContext], None]] = {
    "overlay": _overlay,
    "seg": _seg,
    "sr": _sr,
    "rtstruct": _rtstruct,
    "gsps": _gsps,
    "ml": _ml,
}


# ---- one case -----------------------------------------------------------------------------------

class _PeakMemory:
    """Peak resident memory of this process while a case runs (sampled from /proc every 10 ms)."""

    def __init__(self):
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    """Resident memory of this process in bytes (/proc on Linux, else psutil, which Dask brings)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except ImportError:
            return 0


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record):
        if len(self.messages) < 20:
            self.messages.append(record.getMessage())


def _existing(path: Path) -> Optional[str]:
    return str(path) if path.exists() else None


def file_hashes(folder: Path) -> Dict[str, str]:
    """SHA-256 of every file below ``folder`` (relative POSIX paths), ``case.json`` excepted."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != CASE_FILE:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            hashes[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return hashes


def output_digests(files: Dict[str, str]) -> Dict[str, str]:
    """One SHA-256 per output (a top-level file or folder of the case): a file's own hash; for a
    folder, the hash of its lines ``relative/path sha256`` in path order. The ledger keeps these
    (a few lines per case, not one per image); ``case.json`` keeps every file's hash."""
    groups: Dict[str, List[str]] = {}
    for path, digest in sorted(files.items()):
        top, sep, _ = path.partition("/")
        groups.setdefault(top + ("/" if sep else ""), []).append(f"{path} {digest}\n")
    return {top: (files[top] if not top.endswith("/") else
                  hashlib.sha256("".join(lines).encode()).hexdigest()) for top, lines in groups.items()}


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _convert(ctx: CaseContext, annotations) -> None:
    loads = []
    for kind, path in annotations:
        kind = kind or input_kind(path)
        loads.append((INPUT_KINDS[kind].order, kind, path))
    for _, kind, path in sorted(loads, key=lambda item: item[0]):
        try:
            INPUT_KINDS[kind].load(ctx, path)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            raise InputError(f"option of '{kind}' not accepted: {exc}") from None
    for name, write in OUTPUTS.items():
        if name in ctx.outputs and name not in ctx.written:
            try:
                write(ctx)
            except TypeError as exc:
                if "unexpected keyword argument" not in str(exc):
                    raise
                raise InputError(f"option of output '{name}' not accepted: {exc}") from None


def _series_folder(series: str):
    """The case's series folder: ``series`` itself, or the series on a node retrieved into a
    temporary folder (removed on exit); see services.pacs.remote."""
    if os.path.isabs(series):
        return contextlib.nullcontext(series)
    from ..pacs.remote import fetched_series

    return fetched_series(series, option="series")


def run_case(spec: dict, out_dir: str, fingerprint: str) -> dict:
    """Convert one case (``CaseSpec.to_dict()``) into ``out_dir/<id>/``; returns its ledger record.

    Errors of the case (bad input, unwritable output, a bug) are caught and recorded with their
    message: one bad case never stops the others.
    """
    out = Path(out_dir)
    started = time.time()
    clock, cpu = time.perf_counter(), time.process_time()
    warnings = _Warnings()
    package_log = logging.getLogger("DicomAnnotEmbedLib")
    record = {"case": spec["id"], "status": "failed", "inputs": fingerprint, "outputs": {}, "error": None,
              "worker": f"{socket.gethostname()}:{os.getpid()}"}
    work = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{spec['id']}-", dir=out))
    package_log.addHandler(warnings)
    try:
        with _PeakMemory() as memory:
            try:
                with _series_folder(spec["series"]) as series_dir:  # a series on a node: retrieved
                    ctx = CaseContext(spec["id"], series_dir, work, spec.get("options") or {},
                                      series_uid=(spec.get("options") or {}).get("series_uid"),
                                      outputs=list(spec["outputs"]))
                    _convert(ctx, spec["annotations"])
                files = file_hashes(work)
                record["outputs"] = output_digests(files)
                _place(work, out / spec["id"], spec, record, fingerprint, files)
                record["status"] = "done"
            except DicomAnnotEmbedError as exc:
                record["error"] = str(exc)
            except MemoryError:
                record["error"] = "out of memory"
            except OSError as exc:  # a path of the manifest (too long, not searchable): the case's input
                record["error"] = (f"{exc.filename}: cannot read: {exc.strerror}" if exc.errno in PATH_ERRNOS
                                   and exc.filename else f"internal error: {exc.__class__.__name__}: {exc}")
            except Exception as exc:  # a bug: recorded, the batch goes on
                record["error"] = f"internal error: {exc.__class__.__name__}: {exc}"
    finally:
        package_log.removeHandler(warnings)
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    record.update(duration_s=round(time.perf_counter() - clock, 3), cpu_s=round(time.process_time() - cpu, 3),
                  peak_memory_mb=round(memory.peak / 2 ** 20, 1),
                  memory_increase_mb=round((memory.peak - memory.start) / 2 ** 20, 1),
                  started=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)) + f".{int(started * 1000) % 1000:03d}Z",
                  warnings=warnings.messages)
    if record["status"] != "done":
        record["outputs"] = {}
    return record


def _place(work: Path, final: Path, spec: dict, record: dict, fingerprint: str, files: Dict[str, str]) -> None:
    """Write ``case.json`` and rename the whole temporary folder to its final name."""
    payload = {"case": spec["id"], "inputs": fingerprint, "outputs": record["outputs"], "files": files, "spec": spec}
    with open(work / CASE_FILE, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    old = None
    if final.exists():  # a rerun with changed inputs: the old outputs go only once the new are whole
        old = final.parent / f"{OLD_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(work, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
