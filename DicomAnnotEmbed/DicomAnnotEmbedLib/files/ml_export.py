"""Machine-learning formats from DICOM annotations: label maps, sidecars and a measurements table.

:func:`export_ml` takes files and folders (searched recursively) holding any of:

* DICOM SEG (ours or another tool's; BINARY, FRACTIONAL thresholded at 0.5, LABELMAP), read with
  :func:`seg.import_seg` onto its referenced image series when that series is among the inputs,
  else onto an input series with the same Frame of Reference and image size (e.g. our overlay
  copy of it), else onto the SEG's own frame grid;
* TID 1500 SR (ours, dcmqi's, highdicom's), read with :func:`sr.import_sr`: its measurements and
  evaluations go to the table, its coordinates to markups; the SEG it references is taken from
  the inputs, else looked for beside the SR and in the input folders;
* overlay series (ours, scanner-written, legacy overlays in unused pixel bits), read with
  :func:`overlay.import_overlays`;
* RT Structure Sets (ours or another tool's), read with :func:`rtstruct.import_rtstruct` onto the
  series they reference (among the inputs, else beside the file): closed contours become label
  maps, points and open contours markups;
* plain image series: the images the others refer to (never a case by themselves).

Other files (non-DICOM, presentation states, other SR templates, ...) are passed over and counted.

Output layout (``OUT``)::

    cases.csv                  one row per case: name, kind, source, image, label maps, sidecar, ...
    measurements.csv           one row per finding of every case, one column per concept
    CASE/                      one folder per SEG, overlay series, RTSTRUCT, or SR without a SEG
      image.nii.gz             the image (modality values, HU for CT; int16 when they are integers),
                               when its series is among the inputs
      labels.nii.gz            label map of the first layer (NIfTI), and labels.nrrd (NRRD)
      labels_layer2.nii.gz ... one label map per further layer when segments overlap
      labels.json              sidecar: segments (file, label value, name, colour, codes, tracking
                               id/UID, voxels), the grid, markups, and whether segments overlap
      labels.dcmqi.json        the same segments as dcmqi metadata (``seg export --metadata``,
                               ``itkimage2segimage``)
      segmentation.seg.nrrd    all segments, for 3D Slicer and the way back to DICOM
      markups.mrk.json         markups (LPS) when there are any
      png/labels/slice_0000.png ...   with ``png``: one mask per slice (values = label values;
                               8-bit, 16-bit when a label value is above 255), rows and columns
                               as the DICOM image (no flip)

Label maps keep the model's label values (``Segment.label_value`` in its layer); the sidecar
maps each value to its segment. **Overlapping segments** (a voxel in several segments) cannot
share one label map: each layer of the segmentation is its own file, and the sidecar says so
(``"overlapping": true`` and a note). Label maps and the image are written by SimpleITK with
the DICOM geometry: NRRD in LPS ("left-posterior-superior"), NIfTI with its usual RAS qform and
sform, so any reader places them on the image. Arrays are [k, j, i] (slice, row, column).

``measurements.csv``: one row per finding: a segment of a case (keyed by its SEG and segment
number, else its Tracking UID) or an SR measurement group without a segment (a markup; keyed by
its Tracking UID). Columns: ``case``, ``kind``, ``source``, ``finding`` (Tracking Identifier,
else the segment or markup name — the ``finding`` id of a CSV that went through ``csv
import``), ``tracking_uid``, ``segment``, ``segment_number``, ``label_map``, ``label_value``,
``voxels``, ``volume_mm3`` (voxel count x voxel volume), ``markup``, ``finding_code``,
``finding_site``; then one column per SR concept: numeric ``Concept (Derivation) [unit]``
(e.g. ``Attenuation Coefficient (Mean) [[hnsf'U]]``), coded ``Concept`` = its score when the
code table knows the value (``Malignancy`` = 4) else its meaning, plus ``Concept code`` = the
code; text ``Concept`` = the text.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..core.errors import DicomAnnotEmbedError, GeometryError, InputError
from ..core.geometry import VolumeGeometry
from ..core.headers import header_value
from ..core.inputs import check_sequences, reading
from ..core.model import Markup, Segmentation, safe_file_stem
from ..core.outputs import atomic_path, check_output_dir, relocate, staged_folder
from ..core.progress import ProgressCallback, track
from ..core.series import ReferenceSeries, load_series, read_headers, series_from_headers

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

SIDECAR_FORMAT = "DicomAnnotEmbed ML label maps"
SIDECAR_VERSION = 1
_NOT_SUPPORTED = {"PR", "KO", "RTPLAN", "RTDOSE", "REG", "DOC"}
_BASE_COLUMNS = ("case", "kind", "source", "finding", "tracking_uid", "segment", "segment_number", "label_map",
                 "label_value", "voxels", "volume_mm3", "markup", "finding_code", "finding_site")
_OVERLAP_NOTE = ("segments overlap: each layer is its own label map (a voxel may carry a label in several maps); "
                 "find a segment's map by its 'label_map' and 'label_value'")


@dataclass
class MlCase:
    """One exported case: an annotation object and what was written for it.

    Attributes:
        name: the case folder's name (from the source's path below the inputs' common folder).
        kind: "seg", "overlay", "rtstruct" or "sr".
        source: the SEG file, overlay series folder, RTSTRUCT file or SR file.
        segmentation: its segments (None for an SR without a SEG).
        markups: its markups (LPS).
        series: the image series it lies on, when among the inputs.
        geometry: the grid of the label maps.
        files: what was written, by role ("image", "labels", "sidecar", ...).
        label_maps: label map files (NIfTI), one per layer with segments.
        voxels: the voxels of each segment by id, once counted.
    """

    name: str
    kind: str
    source: str
    segmentation: Optional[Segmentation] = None
    markups: List[Markup] = field(default_factory=list)
    series: Optional[ReferenceSeries] = None
    geometry: Optional[VolumeGeometry] = None
    seg_sop_instance_uid: str = ""
    segment_numbers: Dict[str, int] = field(default_factory=dict)
    files: Dict[str, str] = field(default_factory=dict)
    label_maps: List[str] = field(default_factory=list)
    voxels: Optional[Dict[str, int]] = field(default=None, repr=False)  # by segment id (_voxel_counts)

    def summary(self) -> str:
        segments = len(self.segmentation.segments) if self.segmentation is not None else 0
        layers = f" in {len(self.label_maps)} label maps (overlapping)" if len(self.label_maps) > 1 else ""
        image = ", image" if "image" in self.files else ""
        return (f"{self.kind} {self.source}: {segments} segments{layers}, {len(self.markups)} markups{image}")


@dataclass
class MlExportResult:
    """What :func:`export_ml` wrote.

    Attributes:
        out_dir: the output folder.
        cases: one per SEG, overlay series, RTSTRUCT and SR without a SEG.
        measurements_path, cases_path: the two tables.
        findings: rows of ``measurements.csv``.
        skipped: files passed over, with the reason.
        problems: inputs that could not be converted (the rest was written).
    """

    out_dir: Path
    cases: List[MlCase] = field(default_factory=list)
    measurements_path: Optional[Path] = None
    cases_path: Optional[Path] = None
    findings: int = 0
    skipped: Dict[str, str] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Finding the inputs
# ----------------------------------------------------------------------------------------------

@dataclass
class _Inputs:
    segs: List[Tuple[str, Dataset]] = field(default_factory=list)
    srs: List[Tuple[str, Dataset]] = field(default_factory=list)
    rtstructs: List[Tuple[str, Dataset]] = field(default_factory=list)
    images: Dict[str, List[Tuple[str, Dataset]]] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)
    #: every header read (or why not), by absolute path: the series are built from them
    headers: Dict[str, object] = field(default_factory=dict)


def _discover(inputs: Sequence[PathLike], progress) -> _Inputs:
    from ..encodings.rtstruct.common import RT_STRUCTURE_SET_STORAGE
    from ..encodings.seg import SEG_SOP_CLASSES
    from ..encodings.sr import SR_SOP_CLASSES
    from ..encodings.sr.decode import check_report_sequences

    paths: List[Path] = []
    for item in inputs:
        item = Path(item)
        if not item.exists():
            raise InputError("does not exist", item)
        paths.extend(sorted(p for p in item.rglob("*") if p.is_file()) if item.is_dir() else [item])
    if not paths:
        raise InputError("no files in " + ", ".join(str(i) for i in inputs))
    found = _Inputs()
    # Read as load_series reads headers, and kept: the series are built from them (_CaseBuilder.load)
    # instead of being read a second time (the export-ml profile, issue 14).
    for path, ds in read_headers(paths, progress):
        found.headers[os.path.abspath(path)] = ds
        if isinstance(ds, Exception):  # not DICOM (pydicom raises many kinds): passed over
            found.skipped[str(path)] = f"not DICOM ({ds.__class__.__name__})"
            continue
        try:  # values pydicom cannot decode, a sequence a corrupted VR turned into text: passed over, saying why
            sop_class = str(header_value(ds, "SOPClassUID", "", path))
            modality = str(header_value(ds, "Modality", "", path))
            series_uid = str(header_value(ds, "SeriesInstanceUID", "", path))
            is_seg = sop_class in SEG_SOP_CLASSES or modality == "SEG"
            is_sr = not is_seg and (sop_class in SR_SOP_CLASSES or modality == "SR")
            if is_sr:  # its image library left unopened: nothing reads it (1.3 s of the SR's 1.5 s, issue 14)
                check_report_sequences(ds, path)
            elif is_seg or modality == "RTSTRUCT":
                check_sequences(ds, path)  # (images: their few sequences are read through core.headers)
        except InputError as error:
            found.skipped[str(path)] = error.problem
            continue
        if is_seg:
            found.segs.append((str(path), ds))
        elif is_sr:
            found.srs.append((str(path), ds))
        elif sop_class == RT_STRUCTURE_SET_STORAGE or modality == "RTSTRUCT":
            found.rtstructs.append((str(path), ds))
        elif modality in _NOT_SUPPORTED:
            found.skipped[str(path)] = f"not supported ({modality})"
        elif "Rows" in ds and "Columns" in ds and series_uid:
            found.images.setdefault(series_uid, []).append((str(path), ds))
        else:
            found.skipped[str(path)] = f"not an image, SEG, RTSTRUCT or SR ({modality or 'no modality'})"
    return found


def _name_cases(cases: Sequence["MlCase"]) -> None:
    """Folder names from the sources' paths below their common folder: ``p01/seg.dcm`` and
    ``p02/seg.dcm`` give ``p01_seg`` and ``p02_seg``; a single source gives its own name."""
    if not cases:
        return
    folders = [Path(c.source) if Path(c.source).is_dir() else Path(c.source).parent for c in cases]
    root = Path(os.path.commonpath([str(f) for f in folders]))
    used: set = set()
    for case in cases:
        target = Path(case.source)
        relative = target.relative_to(root) if target != root else Path(target.name)
        parts = list(relative.parts) or [target.name]
        if Path(parts[-1]).suffix.lower() in (".dcm", ".dicom", ".ima"):
            parts[-1] = Path(parts[-1]).stem
        base = safe_file_stem("_".join(parts)) or "case"
        name, n = base, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        case.name = name


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------

def export_ml(inputs: Union[PathLike, Sequence[PathLike]], out_dir: PathLike, *, png: bool = False,
              image: bool = True, code_table: str = "lidc", force: bool = False,
              progress: Optional[ProgressCallback] = None,
              source_names: Optional[Callable[[str], str]] = None) -> MlExportResult:
    """Write label maps, sidecars and the measurements table (layout: module docstring).

    Args:
        inputs: DICOM files and folders (searched recursively).
        out_dir: output folder (must be empty unless ``force``).
        png: also write per-slice PNG masks.
        image: write ``image.nii.gz`` when the image series is among the inputs.
        code_table: turns coded evaluations back into scores in the table (a bundled name or file).
        progress: progress callback.
        source_names: how the tables and sidecars name a source file or folder (default: its
            path); e.g. a series on a node rather than the temporary folder it was retrieved into.

    Raises:
        InputError: an input does not exist, or nothing among the inputs can be exported.
        OutputError: the output folder is not empty or not writable.

    An input that fails (a broken SEG, a series with bad geometry) does not stop the others: it
    is listed in ``result.problems``.
    """
    from ..dicom.evaluations import load_code_table

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    table = load_code_table(code_table)
    found = _discover(inputs, progress)
    check_output_dir(out_dir, force)
    # The export is written into a hidden folder beside out_dir and appears whole (core.outputs).
    with staged_folder(out_dir, force) as out:
        result = _export_ml(found, inputs, out, png=png, image=image, table=table, progress=progress,
                            source_names=source_names)
    return relocate(result, out, Path(out_dir))


def _export_ml(found, inputs, out: Path, *, png: bool, image: bool, table, progress,
               source_names=None) -> MlExportResult:
    result = MlExportResult(out, skipped=dict(found.skipped))
    builder = _CaseBuilder(found, result, progress)
    builder.overlay_cases()
    builder.seg_cases()
    builder.rtstruct_cases()
    rows = _Rows(table)
    builder.sr_cases(rows)
    _name_cases(result.cases)
    if source_names is not None:  # named after the folders, then as the caller names them
        for case in result.cases:
            case.source = source_names(case.source)
        rows.pending = [(record, source_names(source), case) for record, source, case in rows.pending]
    if not result.cases:
        passed = [f"{Path(p).name} {why}" for p, why in list(result.skipped.items())[:3]]  # (SRs refused too)
        detail = "; ".join(result.problems[:5]) or (
            f"{len(result.skipped)} files passed over ({'; '.join(passed)})" if result.skipped
            else "no SEG, RTSTRUCT, SR or overlay series")
        raise InputError(f"nothing to export from {', '.join(str(i) for i in inputs)}: {detail}")
    for case in track(result.cases, progress, "Writing label maps"):
        try:
            _write_case(case, out / case.name, png=png, image=image, progress=None)
        except DicomAnnotEmbedError as error:
            result.problems.append(f"{case.source}: {error.problem}")
            log.warning("%s: %s", case.source, error.problem)
        rows.add_case(case)
    rows.add_pending_records()
    result.measurements_path = out / "measurements.csv"
    result.findings = rows.write(result.measurements_path)
    result.cases_path = out / "cases.csv"
    _write_cases_csv(result.cases_path, result.cases)
    return result


class _CaseBuilder:
    """Turns the discovered objects into cases (reading SEGs, RTSTRUCTs, SRs and overlay series)."""

    def __init__(self, found: _Inputs, result: MlExportResult, progress):
        self.found = found
        self.result = result
        self.progress = progress
        self.series: Dict[str, Optional[ReferenceSeries]] = {}
        self.seg_cases_by_uid: Dict[str, MlCase] = {}
        self.seg_paths = {os.path.abspath(p) for p, _ in found.segs}

    def problem(self, source: str, message: str) -> None:
        self.result.problems.append(f"{source}: {message}")
        log.warning("%s: %s", source, message)

    def load(self, uid: str) -> Optional[ReferenceSeries]:
        """The image series of that UID among the inputs (loaded once), or None."""
        if uid not in self.series:
            files = self.found.images.get(uid)
            self.series[uid] = None
            if files:
                folder = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p, _ in files])
                try:
                    self.series[uid] = series_from_headers(folder, uid, self.found.headers) or load_series(folder, uid)
                except DicomAnnotEmbedError as error:
                    self.problem(folder, f"series {uid} cannot be used: {error.problem}")
        return self.series[uid]

    def overlay_cases(self) -> None:
        from ..encodings.overlay import import_overlays, used_overlay_groups

        for uid, files in self.found.images.items():
            if not used_overlay_groups([ds for _, ds in files]):
                continue
            series = self.load(uid)
            if series is None:
                continue
            try:
                annotations = import_overlays(series, progress=self.progress)
            except DicomAnnotEmbedError as error:
                self.problem(series.folder, error.problem)
                continue
            self.result.cases.append(MlCase(
                "", "overlay", os.path.abspath(series.folder),
                annotations.segmentation, list(annotations.markups), series, series.geometry))

    def _reference_for(self, ds: Dataset, path: str) -> List[ReferenceSeries]:
        """Input series a SEG or SR may lie on: the one it references, else those of its Frame of
        Reference with its image size."""
        try:
            with reading(path):
                wanted = _referenced_series_uids(ds)
        except DicomAnnotEmbedError:  # (as _readable: the file's own reader says what is wrong with it)
            wanted = []
        candidates = [uid for uid in wanted if uid in self.found.images]
        frame_of_reference = str(_readable(ds, "FrameOfReferenceUID", path) or "")
        size = (_readable(ds, "Rows", path), _readable(ds, "Columns", path))
        for uid, files in self.found.images.items():
            image_path, header = files[0]
            if uid in candidates or not frame_of_reference:
                continue
            if str(_readable(header, "FrameOfReferenceUID", image_path) or "") == frame_of_reference and \
                    (size == (None, None) or
                     (_readable(header, "Rows", image_path), _readable(header, "Columns", image_path)) == size):
                candidates.append(uid)
        return [s for s in (self.load(uid) for uid in candidates) if s is not None]

    def seg_cases(self) -> None:
        from ..encodings.seg import import_seg

        for path, ds in self.found.segs:
            imported = None
            try:  # (decoded first: a value that cannot be names the file; fuzz seed 61206 case 4177)
                uid = str(header_value(ds, "SOPInstanceUID", "", path))
            except DicomAnnotEmbedError as error:
                self.problem(path, error.problem)
                continue
            for series in self._reference_for(ds, path):
                try:
                    imported = import_seg(path, series, self.progress)
                    break
                except GeometryError as error:
                    log.info("%s does not lie on %s: %s", path, series.folder, error.problem)
            try:
                if imported is None:
                    imported = import_seg(path, None, self.progress)
            except DicomAnnotEmbedError as error:
                self.problem(path, error.problem)
                continue
            case = MlCase("", "seg", os.path.abspath(path),
                          imported.segmentation, [],
                          imported.series, imported.segmentation.geometry, uid,
                          dict(imported.segment_numbers))
            self.result.cases.append(case)
            self.seg_cases_by_uid[case.seg_sop_instance_uid] = case

    def rtstruct_cases(self) -> None:
        """A case per RT Structure Set, on the series it references (among the inputs, else the
        one beside the file): label maps of its closed contours, markups of the rest (LPS)."""
        from ..encodings.rtstruct import import_rtstruct
        from ..encodings.rtstruct.decode import referenced_series_uid

        for path, ds in self.found.rtstructs:
            series_uid = referenced_series_uid(ds)[0]
            series = self.load(series_uid) if series_uid else None
            try:
                imported = import_rtstruct(path, series, progress=self.progress)
            except DicomAnnotEmbedError as error:
                self.problem(path, error.problem)
                continue
            for message in imported.skipped:
                log.info("%s: %s", path, message)
            segmentation = imported.segmentation
            self.result.cases.append(MlCase(
                "", "rtstruct", os.path.abspath(path), segmentation, list(imported.markups), imported.series,
                segmentation.geometry if segmentation is not None else imported.annotations.geometry))

    def sr_cases(self, rows: "_Rows") -> None:
        from ..encodings.seg import import_seg
        from ..encodings.sr import companion_report_uids, import_sr, read_sr_dataset

        folders = sorted({os.path.dirname(os.path.abspath(p)) for p, _ in self.found.segs + self.found.srs})
        companions: set = set()  # a report's markups' own report is read with it (its pertinent evidence), not alone
        readable = []
        for path, ds in self.found.srs:
            try:  # (values are decoded here first: one that cannot be names the file)
                with reading(path, "the SR"):
                    uid = str(ds.get("SOPInstanceUID", ""))
                    companions.update(companion_report_uids(ds))
            except InputError as error:
                self.result.skipped[path] = error.problem
                continue
            readable.append((path, ds, uid))
        # the reports as _discover read them: import_sr takes them from here, not from the files again
        read_reports = {uid: (path, ds) for path, ds, uid in readable}
        for path, ds, uid in readable:
            if uid in companions:
                continue
            try:
                read_sr_dataset(path, ds)
            except InputError as error:
                self.result.skipped[path] = error.problem
                continue
            series = next(iter(self._reference_for(ds, path)), None)
            try:
                imported = import_sr(path, series, progress=self.progress, read_reports=read_reports)
                if any(uid not in self.seg_cases_by_uid for uid in imported.referenced_seg_uids):
                    imported = import_sr(path, series, seg_folders=folders, seg_reader=import_seg,
                                         progress=self.progress, read_reports=read_reports)
            except DicomAnnotEmbedError as error:
                self.problem(path, error.problem)
                continue
            for message in imported.missing:
                self.problem(path, message)
            for seg_import in imported.seg_imports:
                seg_path = os.path.abspath(seg_import.path)
                header = pydicom.dcmread(seg_path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
                uid = str(header.get("SOPInstanceUID", ""))
                if seg_path in self.seg_paths or uid in self.seg_cases_by_uid:
                    continue
                case = MlCase("", "seg", seg_path,
                              seg_import.segmentation, [], seg_import.series, seg_import.segmentation.geometry, uid,
                              dict(seg_import.segment_numbers))
                self.result.cases.append(case)
                self.seg_cases_by_uid[uid] = case
            # The SR's markups go with the case of the SEG it references, else to a case of their own.
            target = next((self.seg_cases_by_uid[uid] for uid in imported.referenced_seg_uids
                           if uid in self.seg_cases_by_uid), None)
            if target is None:
                target = MlCase("", "sr", os.path.abspath(path), None, [],
                                series,
                                series.geometry if series is not None else None)
                self.result.cases.append(target)
            target.markups.extend(imported.markups)
            rows.add_records(imported.records, os.path.abspath(path), target)


def _readable(ds: Dataset, keyword: str, path: str):
    """A header value that only narrows the search for a series: None when absent or when it cannot
    be decoded (the file's own reader then says what is wrong with it, naming it)."""
    try:
        return header_value(ds, keyword, None, path)
    except DicomAnnotEmbedError:
        return None


def _referenced_series_uids(ds: Dataset) -> List[str]:
    """Image series a SEG or SR says it refers to (Referenced Series, evidence sequences)."""
    from ..encodings.seg import SEG_SOP_CLASSES
    from ..encodings.sr import SR_SOP_CLASSES

    uids = [str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence", []) or []]
    for key in ("StudiesContainingOtherReferencedInstancesSequence", "CurrentRequestedProcedureEvidenceSequence",
                "PertinentOtherEvidenceSequence"):
        for study in ds.get(key, []) or []:
            for item in study.get("ReferencedSeriesSequence", []) or []:
                instances = item.get("ReferencedSOPSequence", []) or item.get("ReferencedInstanceSequence", []) or []
                if any(str(i.get("ReferencedSOPClassUID", "")) in SEG_SOP_CLASSES
                       or str(i.get("ReferencedSOPClassUID", "")) in SR_SOP_CLASSES for i in instances):
                    continue
                uids.append(str(item.get("SeriesInstanceUID", "")))
    return [u for u in dict.fromkeys(uids) if u]


# ----------------------------------------------------------------------------------------------
# Writing a case
# ----------------------------------------------------------------------------------------------

def _write_image(paths: Sequence[Path], array: np.ndarray, geometry: VolumeGeometry) -> None:
    """``array`` on ``geometry`` into each of ``paths`` (their formats by suffix), through one
    SimpleITK image (a label map's NIfTI and NRRD: each image is a 52 MB copy, 0.04 s)."""
    import SimpleITK as sitk

    image = geometry.to_sitk_image(array)
    for path in paths:
        with atomic_path(path) as tmp:
            sitk.WriteImage(image, tmp, useCompression=True)


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def _code_json(code) -> Optional[dict]:
    return None if code is None else {"value": code.value, "scheme": code.scheme, "meaning": code.meaning}


def _write_case(case: MlCase, folder: Path, *, png: bool, image: bool, progress) -> None:
    from .markups_io import write_markups
    from .segio import write_seg_nrrd

    folder.mkdir(parents=True, exist_ok=True)
    geometry = case.geometry
    segmentation = case.segmentation
    sidecar = {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION, "case": case.name,
               "source": case.source, "source_kind": case.kind, "image": None, "label_maps": [],
               "overlapping": False, "segments": [], "markups": []}
    if case.series is not None:
        ds, image_path = case.series.datasets[0], case.series.files[0]
        sidecar.update(series_instance_uid=case.series.series_instance_uid,
                       frame_of_reference_uid=str(_readable(ds, "FrameOfReferenceUID", image_path) or ""),
                       study_instance_uid=str(_readable(ds, "StudyInstanceUID", image_path) or ""),
                       patient_id=str(_readable(ds, "PatientID", image_path) or ""), modality=case.series.modality)
    if geometry is not None:
        sidecar["grid"] = {
            "shape_kji": list(geometry.shape), "size_ijk": list(geometry.shape[::-1]),
            "spacing_ijk_mm": [float(v) for v in geometry.spacing],
            "origin_lps_mm": [float(v) for v in geometry.origin],
            "ijk_to_lps": geometry.ijk_to_lps.tolist(), "ijk_to_ras": geometry.ijk_to_ras.tolist(),
            "in_patient_space": geometry.in_patient_space,
            "conventions": "arrays [k, j, i] (slice, row, column); affines map (i, j, k, 1) to millimetres"}
    if image and case.series is not None:
        # int16 when every value is a whole number in its range. Read as such where the rescale says
        # so (CT; case C: 0.15-0.19 s CPU in a fresh process, against 0.23-0.97 s for the float32
        # volume and the cast compared back below; np.mod, min and max took 0.82 s before that).
        volume = case.series.read_int16_volume()
        if volume is None:
            volume = case.series.read_volume()
            with np.errstate(invalid="ignore"):
                whole = volume.astype(np.int16)
            if np.array_equal(whole, volume):
                volume = whole
        _write_image([folder / "image.nii.gz"], volume, case.series.geometry)
        case.files["image"] = str(folder / "image.nii.gz")
        sidecar["image"] = "image.nii.gz"
        sidecar["image_units"] = "HU" if case.series.modality.upper() == "CT" else "modality values"
    if segmentation is not None and segmentation.segments:
        used = sorted({s.layer for s in segmentation.segments})
        counts = _voxel_counts(case)
        file_of_layer = {}
        for n, layer in enumerate(used):
            stem = "labels" if n == 0 else f"labels_layer{n + 1}"
            labels = segmentation.layers[layer]
            _write_image([folder / f"{stem}.nii.gz", folder / f"{stem}.nrrd"], labels, geometry)
            file_of_layer[layer] = f"{stem}.nii.gz"
            case.label_maps.append(str(folder / f"{stem}.nii.gz"))
            sidecar["label_maps"].append({"nifti": f"{stem}.nii.gz", "nrrd": f"{stem}.nrrd", "layer": n + 1,
                                          "dtype": str(labels.dtype)})
            if png:
                _write_pngs(folder / "png" / stem, labels)
                sidecar["label_maps"][-1]["png"] = f"png/{stem}/slice_KKKK.png"
        case.files["labels"] = case.label_maps[0]
        overlapping = len(used) > 1
        sidecar["overlapping"] = overlapping
        if overlapping:
            sidecar["note"] = _OVERLAP_NOTE
        for segment in segmentation.segments:
            term = segment.terminology
            sidecar["segments"].append({
                "label_map": file_of_layer[segment.layer], "label_value": int(segment.label_value),
                "id": segment.id, "name": segment.name, "description": segment.description,
                "color_rgb": list(segment.color_rgb8),
                "color_hex": "#" + "".join(f"{c:02x}" for c in segment.color_rgb8),
                "terminology": None if term is None else {
                    "category": _code_json(term.category), "type": _code_json(term.type),
                    "type_modifier": _code_json(term.type_modifier),
                    "anatomic_region": _code_json(term.anatomic_region),
                    "anatomic_region_modifier": _code_json(term.anatomic_region_modifier)},
                "tracking_id": segment.attributes.get("TrackingIdentifier", ""),
                "tracking_uid": segment.attributes.get("TrackingUniqueIdentifier", ""),
                "segment_number": case.segment_numbers.get(segment.id),
                "voxels": counts.get(segment.id, 0),
                "volume_mm3": round(counts.get(segment.id, 0) * geometry.voxel_volume_mm3, 6)})
        write_seg_nrrd(folder / "segmentation.seg.nrrd", segmentation)
        case.files["segmentation"] = str(folder / "segmentation.seg.nrrd")
        from ..dicom.dcmqi_metadata import log as dcmqi_log
        from ..dicom.dcmqi_metadata import write_dcmqi_metadata

        level = dcmqi_log.level
        dcmqi_log.setLevel(logging.ERROR)  # its "no terminology: Tissue" warnings are about that file only
        try:
            write_dcmqi_metadata(segmentation, folder / "labels.dcmqi.json",
                                 file_mapping=[file_of_layer[layer] for layer in used],
                                 ClinicalTrialCoordinatingCenterName="unknown")
            sidecar["dcmqi_metadata"] = "labels.dcmqi.json"
        except InputError as error:
            log.info("%s: no dcmqi metadata: %s", case.name, error.problem)
            sidecar["dcmqi_metadata"] = None
        finally:
            dcmqi_log.setLevel(level)
    for markup in case.markups:
        entry = {"name": markup.name, "kind": markup.kind, "points_lps": markup.points_lps.tolist()}
        if geometry is not None and geometry.in_patient_space and len(markup.points_lps):
            entry["points_ijk"] = geometry.lps_to_ijk_points(markup.points_lps).tolist()
        if markup.roi_center_lps is not None:
            entry.update(center_lps=markup.roi_center_lps.tolist(), size_mm=markup.roi_size.tolist(),
                         axes_lps=markup.roi_axes_lps.tolist())
        sidecar["markups"].append(entry)
    if case.markups:
        write_markups(folder / "markups.mrk.json", case.markups)
        case.files["markups"] = str(folder / "markups.mrk.json")
    _write_json(folder / "labels.json", sidecar)
    case.files["sidecar"] = str(folder / "labels.json")


def _voxel_counts(case: MlCase) -> Dict[str, int]:
    """The voxels of each segment of the case, counted once (the sidecar and the table use them)."""
    if case.voxels is None:
        case.voxels = case.segmentation.voxel_counts()
    return case.voxels


def _write_pngs(folder: Path, labels: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    wide = int(labels.max(initial=0)) > 255
    for k in range(labels.shape[0]):
        plane = labels[k]
        picture = Image.fromarray(plane.astype(np.uint16), mode="I;16") if wide else \
            Image.fromarray(plane.astype(np.uint8), mode="L")
        path = folder / f"slice_{k:04d}.png"
        with atomic_path(path) as tmp:
            picture.save(tmp, format="PNG")


# ----------------------------------------------------------------------------------------------
# The measurements table
# ----------------------------------------------------------------------------------------------

class _Rows:
    """Findings of every case and the SR records about them, one row each."""

    def __init__(self, table):
        self.rows: List[dict] = []
        self.by_key: Dict[tuple, dict] = {}
        self.columns: List[str] = []
        self.pending: List[Tuple[object, str, MlCase]] = []
        self.scores: Dict[Tuple[str, str], Dict[Tuple[str, str], int]] = {
            (entry.code.value, entry.code.scheme): {(code.value, code.scheme): score
                                                    for score, code in entry.values.items()}
            for entry in table.concepts}

    def add_case(self, case: MlCase) -> None:
        """A row per segment and per markup of a case."""
        segmentation = case.segmentation
        segments = segmentation.segments if segmentation is not None else []
        counts = _voxel_counts(case) if segments else {}
        used = sorted({s.layer for s in segments})
        for segment in segments:
            n = used.index(segment.layer)
            voxels = counts.get(segment.id, 0)
            row = {"case": case.name, "kind": case.kind, "source": case.source,
                   "finding": segment.attributes.get("TrackingIdentifier") or segment.name,
                   "tracking_uid": segment.attributes.get("TrackingUniqueIdentifier", ""), "segment": segment.name,
                   "segment_number": case.segment_numbers.get(segment.id, ""),
                   "label_map": "labels.nii.gz" if n == 0 else f"labels_layer{n + 1}.nii.gz",
                   "label_value": segment.label_value, "voxels": voxels,
                   "volume_mm3": repr(round(voxels * segmentation.geometry.voxel_volume_mm3, 6))}
            if segment.terminology is not None:
                row["finding_code"] = str(segment.terminology.type)
                if segment.terminology.anatomic_region is not None:
                    row["finding_site"] = str(segment.terminology.anatomic_region)
            self.rows.append(row)
            if case.seg_sop_instance_uid and segment.id in case.segment_numbers:
                self.by_key[("seg", case.seg_sop_instance_uid, case.segment_numbers[segment.id])] = row
        for markup in case.markups:
            key = ("markup", case.name, markup.name)
            if key not in self.by_key:
                row = {"case": case.name, "kind": case.kind, "source": case.source, "finding": markup.name,
                       "markup": markup.name}
                self.rows.append(row)
                self.by_key[key] = row

    def add_records(self, records, source: str, case: MlCase) -> None:
        """SR records; placed after the cases are written (their segment rows exist then)."""
        self.pending.extend((record, source, case) for record in records)

    def add_pending_records(self) -> None:
        for record, source, case in self.pending:
            row = None
            if record.seg_sop_instance_uid and record.segment_number is not None:
                key = ("seg", record.seg_sop_instance_uid, record.segment_number)
                row = self.by_key.get(key)
            else:
                key = ("sr", source, record.tracking_uid or record.tracking_id, record.markup)
                row = self.by_key.get(key) or (self.by_key.get(("markup", case.name, record.markup))
                                               if record.markup else None)
            if row is None:
                row = {"case": case.name, "kind": "sr", "source": source, "finding": record.tracking_id,
                       "tracking_uid": record.tracking_uid, "segment": record.segment,
                       "segment_number": "" if record.segment_number is None else record.segment_number,
                       "markup": record.markup}
                self.rows.append(row)
                self.by_key[key] = row
            if record.finding is not None:
                row.setdefault("finding_code", str(record.finding))
            if record.finding_site is not None:
                row.setdefault("finding_site", str(record.finding_site))
            for column, value in self._values(record):
                if column not in self.columns:
                    self.columns.append(column)
                old = row.get(column)
                row[column] = value if old in (None, "", value) else f"{old}; {value}"

    def _values(self, record) -> List[Tuple[str, str]]:
        name = record.concept.meaning or record.concept.value
        if record.derivation is not None:
            name += f" ({record.derivation.meaning or record.derivation.value})"
        if record.kind == "numeric":
            unit = f" [{record.unit.value}]" if record.unit is not None else ""
            return [(name + unit, "" if record.value is None else repr(float(record.value)))]
        if record.kind == "text":
            return [(name, record.text or "")]
        code = record.coded_value
        if code is None:
            return []
        score = self.scores.get((record.concept.value, record.concept.scheme), {}).get((code.value, code.scheme))
        return [(name, str(score) if score is not None else code.meaning), (name + " code", str(code))]

    def write(self, path: Path) -> int:
        buffer = io.StringIO()
        header = list(_BASE_COLUMNS) + self.columns
        writer = csv.DictWriter(buffer, header, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(buffer.getvalue(), encoding="utf-8")
        return len(self.rows)


def _write_cases_csv(path: Path, cases: Sequence[MlCase]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", "kind", "source", "image", "label_maps", "sidecar", "segmentation", "markups",
                     "segments", "overlapping"])
    for case in cases:
        rel = {key: os.path.relpath(value, path.parent) for key, value in case.files.items()}
        writer.writerow([case.name, case.kind, case.source, rel.get("image", ""),
                         ";".join(os.path.relpath(p, path.parent) for p in case.label_maps), rel.get("sidecar", ""),
                         rel.get("segmentation", ""), rel.get("markups", ""),
                         len(case.segmentation.segments) if case.segmentation is not None else 0,
                         str(len(case.label_maps) > 1).lower()])
    with atomic_path(path) as tmp:
        Path(tmp).write_text(buffer.getvalue(), encoding="utf-8")


__all__ = ["MlCase", "MlExportResult", "SIDECAR_FORMAT", "SIDECAR_VERSION", "export_ml"]
