"""TID 1500 import: any measurement report (ours, dcmqi's, highdicom's) into records and markups (LPS).

The referenced SEGs are found by this module and read by the ``seg_reader`` its caller gives
(``api.import_sr`` gives the SEG encoding's import); writing files is the caller's.
"""
from __future__ import annotations

import itertools
import os
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ...core.ellipses import ELLIPSE, is_ellipse
from ...core.errors import DicomAnnotEmbedError, GeometryError, InputError
from ...core.headers import header_float, header_floats, header_value
from ...core.inputs import check_sequences, read_dicom_file, reading, sequence_items
from ...core.model import Code, Markup, Segmentation
from ...core.progress import ProgressCallback
from ...core.series import ReferenceSeries
from ...dicom.values import code_of
from .codes import (SEG_SOP_CLASSES, SR_SOP_CLASSES, PathLike, _ALGORITHM_NAME, _ALGORITHM_VERSION, _ANGLE_CONCEPTS,
                    _AREA_CONCEPTS, _DERIVATION, _FINDING, _FINDING_CATEGORY, _FINDING_SITE, _GEOMETRIC_PURPOSE, _IMAGE_REGION,
                    _IMAGING_MEASUREMENTS, _LINE_CONCEPTS, _MEASUREMENT_GROUP, _METHOD, _NOT_EVALUATIONS,
                    _PERIMETER_CONCEPTS, _REFERENCED_SEGMENT, _REFERENCED_SEGMENTATION_FRAME, _REPORT_TITLES,
                    _TRACKING_ID, _TRACKING_UID, _VOLUME_SURFACE, _children, _key, _name, _unique, _value_code,
                    markups_document_path)
from .records import MeasurementRecord

log = logging.getLogger(__name__)

#: Reads a SEG file onto a series (or its own grid when None): ``(path, series, progress) -> SegImport``.
SegReader = Callable[[str, Optional[ReferenceSeries], Optional[ProgressCallback]], object]


# ================================================================================================
# Import
# ================================================================================================

@dataclass
class SrImport:
    """A TID 1500 report read back.

    Attributes:
        path: the SR file.
        sop_class: e.g. "Comprehensive 3D SR".
        title: the report's title code.
        records: every measurement and evaluation, in document order.
        markups: the coordinates of the groups as markups, in **LPS**.
        seg_imports: the referenced SEG(s) found, read with the ``seg_reader``.
        missing: what could not be loaded (a SEG not found, 2D coordinates without their image, ...).
        person_observers, device_observers: observer names.
        procedures: Procedure Reported codes.
        frame_of_reference_uids: of the SCOORD3D items.
        referenced_seg_uids: SOP Instance UIDs of the SEGs the groups reference.
        companions: the reports the SR lists as pertinent evidence whose groups were read with it
            (our markups' own report).
        written: files written by ``api.import_sr`` (``out_dir``).
    """

    path: str
    sop_class: str
    title: Optional[Code]
    records: List[MeasurementRecord] = field(default_factory=list)
    markups: List[Markup] = field(default_factory=list)
    seg_imports: list = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    person_observers: List[str] = field(default_factory=list)
    device_observers: List[str] = field(default_factory=list)
    procedures: List[Code] = field(default_factory=list)
    frame_of_reference_uids: List[str] = field(default_factory=list)
    referenced_seg_uids: List[str] = field(default_factory=list)
    written: List[str] = field(default_factory=list)
    companions: List[str] = field(default_factory=list)

    @property
    def segmentation(self) -> Optional[Segmentation]:
        """The segments of the first referenced SEG found, or None."""
        return self.seg_imports[0].segmentation if self.seg_imports else None


@dataclass
class _Region:
    graphic_type: str
    points: Optional[np.ndarray]  # LPS, None when it could not be placed
    purpose: str  # "region", "surface", "measurement"
    concept: Optional[Code] = None  # the measurement's concept, for "measurement"


def read_sr_dataset(path: PathLike, dataset: Optional[Dataset] = None) -> Dataset:
    """The SR dataset, checked to be an SR document whose root is a TID 1500 Measurement Report.

    ``dataset``: the file's dataset when the caller has read it already (with
    ``core.inputs.read_dicom_file``, or its sequence check or :func:`check_report_sequences`): only
    the checks are made. Parsing a
    report's ~47,000 elements again took 0.5-1 s per read in export-ml (issue 14 profile).

    Raises:
        InputError: not DICOM, not an SR, or an SR of another template (names the template/title).
    """
    path = Path(path)
    with reading(path, "the SR"):  # a caller's dataset is decoded here first: a value that cannot be names the file
        ds = read_dicom_file(path, "SR") if dataset is None else dataset
        sop_class = str(getattr(ds, "SOPClassUID", ""))
        if getattr(ds, "Modality", "") != "SR" and sop_class not in SR_SOP_CLASSES:
            raise InputError(f"not a DICOM SR (SOP Class UID {sop_class or 'missing'}, Modality "
                             f"{getattr(ds, 'Modality', '?')})", path)
        if "ContentSequence" not in ds or getattr(ds, "ValueType", "") != "CONTAINER":
            raise InputError("SR without a root CONTAINER content item (truncated or not a document)", path)
        template = ""
        if ds.get("ContentTemplateSequence"):
            template = str(ds.ContentTemplateSequence[0].get("TemplateIdentifier", ""))
        title = _name(ds)
        has_measurements = any(_key(i) in _IMAGING_MEASUREMENTS for i in _children(ds))
        if template != "1500" and not (not template and title and (title.value, title.scheme) in _REPORT_TITLES
                                       and has_measurements):
            raise InputError(f"not a TID 1500 Measurement Report: the document follows template "
                             f"{template or '(none given)'}, title {title or '(none)'}", path)
        return ds


#: Image Library (TID 1600): one content item per source image, most of a report's elements (our
#: report on 200 images: 47,000 elements). Nothing reads its entries (see check_report_sequences).
_IMAGE_LIBRARY = {("111028", "DCM")}
_CONTENT_SEQUENCE = 0x0040A730


def check_report_sequences(ds: Dataset, path: PathLike) -> None:
    """:func:`core.inputs.check_sequences` of an SR document, without opening the entries of its
    image library: they are most of a report, and no reader of this package opens them (import
    reads the document's header, its evidence and the other content items). Opening them took
    0.65 s of the 0.7 s the check of one report took in export-ml (issue 14 profile: 200 images).
    A sequence encoded as another VR, or one that cannot be decoded, anywhere else: InputError
    naming ``path``."""
    # (no Dataset slices: slicing reads deferred values, and a corrupted length there made pydicom
    # allocate it whole: a MemoryError under a memory limit, fuzz seed 61205 case 33792)
    content_only = frozenset({_CONTENT_SEQUENCE})
    with reading(path, "the SR"):
        check_sequences(ds, path, unopened=content_only)  # the header around the content
        for item in sequence_items(ds, _CONTENT_SEQUENCE, path) if _CONTENT_SEQUENCE in ds else ():
            # (a concept name that is not a sequence: None, checked with the item)
            check_sequences(item, path, unopened=content_only if _key(item) in _IMAGE_LIBRARY else frozenset())


def import_sr(path: PathLike, series: Union[ReferenceSeries, PathLike, None] = None, *,
              seg_folders: Sequence[PathLike] = (), seg_reader: Optional[SegReader] = None,
              progress: Optional[ProgressCallback] = None,
              read_reports: Optional[Mapping[str, Tuple[str, Dataset]]] = None) -> SrImport:
    """Read a TID 1500 SR: measurements, evaluations, coordinates as markups (LPS), and the SEG.

    Args:
        path: the SR file.
        series: the referenced image series (or a folder to find it in). Needed to place
            image-relative (2D SCOORD) coordinates and to put the SEG's segments on the series grid;
            without it, SCOORD3D coordinates are still read and the SEG is read on its own grid.
        seg_folders: folders searched (recursively) for the referenced SEG, besides the SR's folder.
        seg_reader: reads a referenced SEG found (``seg_reader(path, series, progress)`` returning
            an object with ``segmentation`` and ``segment_numbers``, e.g. the SEG encoding's
            ``import_seg``, which ``api.import_sr`` gives); None: the SEGs are only listed.

    Raises:
        InputError: not an SR, or an SR of another template.

    ``read_reports``: SR datasets the caller has already read, by SOP Instance UID: (path, dataset).
    The report itself and the reports it lists as pertinent evidence are taken from there when
    present instead of being read again.

    Missing pieces (a SEG not found, 2D coordinates whose image is absent) do not stop the import:
    they are listed in :attr:`SrImport.missing` and logged as warnings.
    """
    # pydicom decodes elements when first used: decoding errors anywhere below name the file.
    with reading(path, "the SR"):
        return _import_sr(path, series, seg_folders, seg_reader, progress, read_reports or {})


def _import_sr(path: PathLike, series, seg_folders, seg_reader, progress, read_reports) -> SrImport:
    known = {os.path.abspath(p): ds for p, ds in read_reports.values()}
    ds = read_sr_dataset(path, known.get(os.path.abspath(path)))
    path = str(path)
    imported = SrImport(path=path, sop_class=SR_SOP_CLASSES.get(str(ds.SOPClassUID), str(ds.SOPClassUID)),
                        title=_name(ds))
    if series is not None and not isinstance(series, ReferenceSeries):
        series = _find_sr_series(ds, series, imported, progress)
    for item in _children(ds):
        key = _key(item)
        if key == ("121005", "DCM"):
            continue
        if key == ("121008", "DCM"):
            imported.person_observers.append(str(item.get("PersonName", "")))
        elif key in {("121013", "DCM")}:
            imported.device_observers.append(str(item.get("TextValue", "")))
        elif key == ("121058", "DCM"):
            code = _value_code(item)
            if code:
                imported.procedures.append(code)
    groups = _measurement_groups(ds)
    if not groups and not companion_report_uids(ds):  # a cut file ends quietly where an element ends: say so instead of nothing
        imported.missing.append("the report holds no measurement group (an empty report, or a truncated file)")
    parsed = [_parse_group(g, series, imported) for g in groups]
    parsed += _companion_groups(ds, series, seg_folders, imported, read_reports)
    for group in parsed:
        imported.records.extend(group["records"])
    imported.markups = _markups_from_groups(parsed)
    for group in parsed:  # records of markup groups name their markup
        for record in group["records"]:
            record.markup = group.get("markup", "")
    seg_uids = list(dict.fromkeys(g["seg_uid"] for g in parsed if g["seg_uid"]))
    imported.referenced_seg_uids = seg_uids
    if seg_uids and seg_reader is not None:
        _load_segs(seg_reader, seg_uids, series, seg_folders, imported, progress)
    for message in imported.missing:
        log.warning("%s: %s", path, message)
    return imported


def _measurement_groups(ds: Dataset) -> List[Dataset]:
    return [g for container in _children(ds) if _key(container) in _IMAGING_MEASUREMENTS
            for g in _children(container) if _key(g) in _MEASUREMENT_GROUP]


def companion_report_uids(ds: Dataset) -> List[str]:
    """SOP Instance UIDs of the SRs the report lists as Pertinent Other Evidence (our markups' own
    report, see :attr:`SrExportOptions.markups_in_own_document`)."""
    return [str(item.ReferencedSOPInstanceUID) for study in ds.get("PertinentOtherEvidenceSequence", []) or []
            for series in study.get("ReferencedSeriesSequence", []) or []
            for item in series.get("ReferencedSOPSequence", []) or []
            if str(item.get("ReferencedSOPClassUID", "")) in SR_SOP_CLASSES and "ReferencedSOPInstanceUID" in item]


def _companion_groups(ds: Dataset, series, seg_folders, imported: SrImport, read_reports) -> List[dict]:
    """The parsed groups of the TID 1500 reports that ``ds`` lists as pertinent evidence, found
    among ``read_reports``, beside it, in ``seg_folders`` or in the series' folder (one level:
    theirs are not followed)."""
    uids = [uid for uid in dict.fromkeys(companion_report_uids(ds)) if uid != str(ds.SOPInstanceUID)]
    if not uids:
        return []
    folders = _search_folders(imported, seg_folders, series)
    found = {uid: read_reports[uid][0] for uid in uids if uid in read_reports}
    datasets = {uid: read_reports[uid][1] for uid in found}
    # where the export puts it first (sr.dcm -> sr_markups.dcm): a folder search reads every header
    # (an overlay series beside it is 200 files)
    if len(found) < len(uids):
        found.update(_find_instances(set(uids) - set(found), [], [markups_document_path(imported.path)]))
    if len(found) < len(uids):
        found.update(_find_instances(set(uids) - set(found), folders))
    parsed: List[dict] = []
    for uid in uids:
        path = found.get(uid)
        if path is None:
            imported.missing.append(f"the report {uid} it lists as pertinent evidence (its markups) was not found in "
                                    + ", ".join(str(f) for f in dict.fromkeys(folders)))
            continue
        try:
            with reading(path, "the SR"):
                companion = read_sr_dataset(path, datasets.get(uid))
                parsed += [_parse_group(g, series, imported) for g in _measurement_groups(companion)]
        except DicomAnnotEmbedError as error:
            imported.missing.append(f"the report {path} it lists as pertinent evidence cannot be read: {error}")
            continue
        imported.companions.append(str(path))
    return parsed


def _find_sr_series(ds: Dataset, folder: PathLike, imported: SrImport, progress) -> Optional[ReferenceSeries]:
    from ...core.errors import SeriesError
    from ...core.series import load_series

    wanted = [str(series.SeriesInstanceUID) for key in ("CurrentRequestedProcedureEvidenceSequence",
                                                        "PertinentOtherEvidenceSequence")
              for study in ds.get(key, []) or [] for series in study.get("ReferencedSeriesSequence", []) or []
              if not any(str(i.ReferencedSOPClassUID) in SEG_SOP_CLASSES or str(i.ReferencedSOPClassUID) in SR_SOP_CLASSES
                         for i in series.ReferencedSOPSequence)]
    for uid in wanted:
        try:
            return load_series(folder, uid, progress)
        except SeriesError:
            continue
    try:
        return load_series(folder, None, progress)
    except SeriesError as error:
        imported.missing.append(f"no usable image series in {folder} ({error.problem})")
        return None


def _parse_group(group: Dataset, series: Optional[ReferenceSeries], imported: SrImport) -> dict:
    info = {"tracking_id": "", "tracking_uid": "", "finding": None, "finding_site": None, "finding_category": None,
            "seg_uid": "",
            "segment_number": None, "regions": [], "records": [], "template": "", "purpose": None,
            "has_area": False}
    if group.get("ContentTemplateSequence"):
        info["template"] = str(group.ContentTemplateSequence[0].get("TemplateIdentifier", ""))
    items = _children(group)
    for item in items:
        key = _key(item)
        if key in _TRACKING_ID:
            info["tracking_id"] = str(item.get("TextValue", ""))
        elif key in _TRACKING_UID:
            info["tracking_uid"] = str(item.get("UID", ""))
        elif key in _FINDING:
            info["finding"] = _value_code(item)
        elif key in _FINDING_CATEGORY and info["finding_category"] is None:
            info["finding_category"] = _value_code(item)
        elif key in _FINDING_SITE and info["finding_site"] is None:
            info["finding_site"] = _value_code(item)
        elif key in _GEOMETRIC_PURPOSE:
            info["purpose"] = _value_code(item)
        elif key in _REFERENCED_SEGMENT | _REFERENCED_SEGMENTATION_FRAME and item.get("ReferencedSOPSequence"):
            ref = item.ReferencedSOPSequence[0]
            info["seg_uid"] = str(ref.get("ReferencedSOPInstanceUID", ""))
            numbers = ref.get("ReferencedSegmentNumber")
            if numbers is not None:
                info["segment_number"] = int(numbers[0] if isinstance(numbers, (list, pydicom.multival.MultiValue))
                                             else numbers)
    base = dict(tracking_id=info["tracking_id"], tracking_uid=info["tracking_uid"], template=info["template"],
                finding=info["finding"], finding_site=info["finding_site"],
                finding_category=info["finding_category"], seg_sop_instance_uid=info["seg_uid"],
                segment_number=info["segment_number"])
    for item in items:
        key = _key(item)
        value_type = str(item.get("ValueType", ""))
        relationship = str(item.get("RelationshipType", ""))
        if value_type in ("SCOORD", "SCOORD3D") and key in _IMAGE_REGION | _VOLUME_SURFACE:
            purpose = "surface" if key in _VOLUME_SURFACE else "region"
            info["regions"].append(_Region(*_coordinates(item, series, imported), purpose))
        elif value_type == "NUM" and relationship == "CONTAINS":
            record, regions = _num_record(item, base, series, imported)
            if record is not None:
                info["records"].append(record)
                concept = (record.concept.value, record.concept.scheme)
                info["has_area"] |= concept in _AREA_CONCEPTS | _PERIMETER_CONCEPTS
            info["regions"].extend(regions)
        elif value_type == "CODE" and relationship == "CONTAINS" and key not in _NOT_EVALUATIONS and _name(item):
            info["records"].append(MeasurementRecord(concept=_name(item), coded_value=_value_code(item), **base))
        elif value_type == "TEXT" and relationship == "CONTAINS" and _name(item):
            info["records"].append(MeasurementRecord(concept=_name(item), text=str(item.get("TextValue", "")), **base))
    return info


def _num_record(item: Dataset, base: dict, series, imported: SrImport):
    value = unit = qualifier = None
    measured = item.get("MeasuredValueSequence")
    if measured:
        m = measured[0]
        if header_value(m, "FloatingPointValue") is not None:
            value = header_float(m, "FloatingPointValue")
        elif header_value(m, "NumericValue") is not None:
            value = header_float(m, "NumericValue")
        units = m.get("MeasurementUnitsCodeSequence")
        unit = code_of(units[0]) if units else None
    if item.get("NumericValueQualifierCodeSequence"):
        qualifier = code_of(item.NumericValueQualifierCodeSequence[0])
    derivation = method = None
    algorithm_name = algorithm_version = ""
    regions: List[_Region] = []
    concept = _name(item)
    for child in _children(item):
        key = _key(child)
        if key in _DERIVATION:
            derivation = _value_code(child)
        elif key in _METHOD:
            method = _value_code(child)
        elif key in _ALGORITHM_NAME:
            algorithm_name = str(child.get("TextValue", ""))
        elif key in _ALGORITHM_VERSION:
            algorithm_version = str(child.get("TextValue", ""))
        elif str(child.get("ValueType", "")) in ("SCOORD", "SCOORD3D"):
            regions.append(_Region(*_coordinates(child, series, imported), "measurement", concept))
    if concept is None:
        return None, regions
    if unit is None and value is not None:
        unit = Code("1", "UCUM", "no units")
    record = MeasurementRecord(concept=concept, value=value, unit=unit if value is not None else None,
                               coded_value=qualifier if value is None else None, derivation=derivation,
                               method=method, algorithm=f"{algorithm_name} {algorithm_version}".strip(), **base)
    return record, regions


def _coordinates(item: Dataset, series: Optional[ReferenceSeries],
                 imported: SrImport) -> Tuple[str, Optional[np.ndarray]]:
    """Graphic type and (N, 3) LPS points of a SCOORD3D item, or of a SCOORD item placed on its
    image (a 2D CIRCLE or ELLIPSE becomes a "RING" of 64 points sampled in the image plane);
    points None when a SCOORD's image is not in the series (noted in ``imported.missing``)."""
    graphic = str(header_value(item, "GraphicType", "")).upper()
    values = header_floats(item, "GraphicData")
    dimensions = 3 if str(header_value(item, "ValueType", "")) == "SCOORD3D" else 2
    if not graphic or values is None or len(values) % dimensions:
        imported.missing.append(f"a coordinate item with Graphic Type {graphic or '(none)'} and "
                                f"{len(values or ())} Graphic Data values is not {dimensions}D points: skipped")
        return graphic, None
    data = np.asarray(values, dtype=np.float64)
    if dimensions == 3:
        frame = str(item.get("ReferencedFrameOfReferenceUID", ""))
        if frame and frame not in imported.frame_of_reference_uids:
            imported.frame_of_reference_uids.append(frame)
            if series is not None:
                own = str(getattr(series.datasets[0], "FrameOfReferenceUID", "") or "")
                if own and own != frame:
                    imported.missing.append(f"coordinates are in Frame of Reference {frame}, the series in {own}: "
                                            "they are kept as written")
        return graphic, data.reshape(-1, 3)
    pixels = data.reshape(-1, 2)
    if graphic == "CIRCLE" and len(pixels) == 2:
        graphic, pixels = "RING", _ring(pixels[0], pixels[1] - pixels[0], np.array([-(pixels[1] - pixels[0])[1],
                                                                                  (pixels[1] - pixels[0])[0]]))
    elif graphic == "ELLIPSE" and len(pixels) == 4:
        graphic, pixels = "RING", _ring((pixels[0] + pixels[1]) / 2.0, (pixels[1] - pixels[0]) / 2.0,
                                        (pixels[3] - pixels[2]) / 2.0)
    image = next((c for c in _children(item) if str(c.get("ValueType", "")) == "IMAGE"), None)
    if image is None or not image.get("ReferencedSOPSequence"):
        imported.missing.append("2D coordinates without a referenced image are skipped")
        return graphic, None
    ref = image.ReferencedSOPSequence[0]
    sop = str(ref.get("ReferencedSOPInstanceUID", ""))
    frames = ref.get("ReferencedFrameNumber")
    frame = int(frames[0] if isinstance(frames, (list, pydicom.multival.MultiValue)) else frames) - 1 \
        if frames not in (None, "") else 0
    if series is None:
        imported.missing.append(f"2D coordinates on image {sop} need its series (give the series): skipped")
        return graphic, None
    k = next((k for k, s in enumerate(series.slices) if s.sop_instance_uid == sop and s.frame == frame), None)
    if k is None:
        imported.missing.append(f"2D coordinates on image {sop} (frame {frame + 1}), which is not in the series: "
                                "skipped")
        return graphic, None
    # (column, row) with (0, 0) at the top left corner of the top left pixel: pixel centres are at +0.5.
    ijk = np.column_stack([pixels[:, 0] - 0.5, pixels[:, 1] - 0.5, np.full(len(pixels), float(k))])
    return graphic, series.geometry.ijk_to_lps_points(ijk)


def _ring(center: np.ndarray, a: np.ndarray, b: np.ndarray, n: int = 64) -> np.ndarray:
    """n points of the ellipse center + cos(t) a + sin(t) b (2D or 3D)."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return center + np.outer(np.cos(angles), a) + np.outer(np.sin(angles), b)


def _markups_from_groups(groups: List[dict]) -> List[Markup]:
    """Markups (LPS) from the coordinates of the parsed groups (rules: module docstring)."""
    markups: List[Markup] = []
    points_by_track: Dict[str, Markup] = {}
    used: Dict[str, int] = {}
    for number, group in enumerate(groups, 1):
        base_name = group["tracking_id"] or f"Group {number}"
        regions = [r for r in group["regions"] if r.points is not None and len(r.points)]
        if not regions:
            continue
        surfaces = [r for r in regions if r.purpose == "surface"]
        made: List[Markup] = []
        if surfaces:
            made += _surface_markups(surfaces, base_name)
        seen: List[np.ndarray] = []
        for region in regions:
            if region.purpose == "surface":
                continue
            if any(p.shape == region.points.shape and np.array_equal(p, region.points) for p in seen):
                continue  # the same coordinates given for several measurements of one group
            seen.append(region.points)
            graphic, pts = region.graphic_type.upper(), region.points
            if graphic == "POINT" and region.purpose == "region" and not group["seg_uid"]:
                track = group["tracking_uid"] or base_name
                if track in points_by_track:  # our point lists: one group per point, one tracking UID
                    existing = points_by_track[track]
                    existing.points_lps = np.vstack([existing.points_lps, pts[:1]])
                    existing.point_labels.append(f"{existing.name}-{len(existing.points_lps)}")
                    group["markup"] = existing.name
                    continue
                markup = Markup("point_list", base_name, pts[:1])
                points_by_track[track] = markup
                made.append(markup)
            elif graphic in ("POINT", "MULTIPOINT"):
                made.append(Markup("point_list", base_name, pts))
            elif graphic == "POLYLINE":
                closed = len(pts) > 3 and np.array_equal(pts[0], pts[-1])
                concept = (region.concept.value, region.concept.scheme) if region.concept else None
                if closed:
                    made.append(Markup("closed_curve", base_name, pts[:-1]))
                elif concept in _ANGLE_CONCEPTS and len(pts) == 3:
                    made.append(Markup("angle", base_name, pts))
                elif len(pts) == 2 and (concept is None or concept in _LINE_CONCEPTS):
                    made.append(Markup("line", base_name, pts))
                else:
                    made.append(Markup("curve", base_name, pts))
            elif graphic == "POLYGON":
                ring = pts[:-1] if len(pts) > 1 and np.array_equal(pts[0], pts[-1]) else pts
                plane = None if group["has_area"] else _rectangle(ring, base_name)
                made.append(plane or Markup("closed_curve", base_name, ring))
            elif graphic == "RING":
                made.append(Markup("closed_curve", base_name, pts))
            elif graphic == "ELLIPSE" and len(pts) == 4 and is_ellipse(pts):  # its axis ends, marked
                made.append(Markup("closed_curve", base_name, pts, shape=ELLIPSE))
            elif graphic == "ELLIPSE" and len(pts) == 4:
                made.append(Markup("closed_curve", base_name, _ring((pts[0] + pts[1]) / 2.0, (pts[1] - pts[0]) / 2.0,
                                                                   (pts[3] - pts[2]) / 2.0)))
            elif graphic == "ELLIPSOID" and len(pts) == 6:
                made.append(_ellipsoid_box(pts, base_name))
        for markup in made:
            markup.name = _unique(markup.name, used)
            markup.attributes["TrackingUniqueIdentifier"] = group["tracking_uid"]
            group.setdefault("markup", markup.name)
            markups.append(markup)
    return markups


def _rectangle(ring: np.ndarray, name: str) -> Optional[Markup]:
    """A plane markup when ``ring`` is the 4 corners of a rectangle (as we write planes), else None."""
    if len(ring) != 4:
        return None
    u, v = ring[1] - ring[0], ring[3] - ring[0]
    if min(np.linalg.norm(u), np.linalg.norm(v)) < 1e-9:
        return None
    if abs(np.dot(u, v)) > 1e-6 * np.linalg.norm(u) * np.linalg.norm(v) or \
            np.linalg.norm(ring[2] - (ring[0] + u + v)) > 1e-4:
        return None
    axes = np.column_stack([u / np.linalg.norm(u), v / np.linalg.norm(v), np.zeros(3)])
    axes[:, 2] = np.cross(axes[:, 0], axes[:, 1])
    return Markup("plane", name, roi_center_lps=ring.mean(axis=0),
                  roi_size=[np.linalg.norm(u), np.linalg.norm(v), 0.0], roi_axes_lps=axes)


def _surface_markups(surfaces: List[_Region], name: str) -> List[Markup]:
    """An ROI box from 6 rectangular POLYGON faces (the first face gives axes 1 and 2, as we
    write them); a point list from a POINT surface; a box around an ELLIPSOID; other surfaces
    become one closed curve per face."""
    graphic = surfaces[0].graphic_type.upper()
    if graphic == "POINT":
        return [Markup("point_list", name, np.vstack([s.points for s in surfaces]))]
    if graphic == "ELLIPSOID" and len(surfaces[0].points) == 6:
        return [_ellipsoid_box(surfaces[0].points, name)]
    rings = [s.points[:-1] if len(s.points) > 1 and np.array_equal(s.points[0], s.points[-1]) else s.points
             for s in surfaces]
    corners = np.unique(np.round(np.vstack(rings), 6), axis=0) if rings else np.zeros((0, 3))
    if graphic == "POLYGON" and len(rings) == 6 and all(len(r) == 4 for r in rings) and len(corners) == 8:
        first = rings[0]
        u, v = first[1] - first[0], first[3] - first[0]
        a1, a2 = u / np.linalg.norm(u), v / np.linalg.norm(v)
        a3 = np.cross(a1, a2)
        points = np.vstack(rings)
        depth = float(np.ptp(points @ a3))
        center = points.mean(axis=0)
        return [Markup("roi", name, roi_center_lps=center, roi_size=[np.linalg.norm(u), np.linalg.norm(v), depth],
                       roi_axes_lps=np.column_stack([a1, a2, a3]))]
    return [Markup("closed_curve", f"{name} {n}" if len(rings) > 1 else name, ring)
            for n, ring in enumerate(rings, 1) if len(ring) >= 3]


def _ellipsoid_box(points: np.ndarray, name: str) -> Markup:
    """The ROI box circumscribing an ELLIPSOID given by the end points of its 3 axes."""
    axes, sizes = [], []
    for n in range(3):
        vector = points[2 * n + 1] - points[2 * n]
        sizes.append(float(np.linalg.norm(vector)))
        axes.append(vector / (sizes[-1] or 1.0))
    matrix = np.column_stack(axes)
    if np.linalg.det(matrix) < 0:
        matrix[:, 2] *= -1
    return Markup("roi", name, roi_center_lps=(points[0] + points[1]) / 2.0, roi_size=sizes, roi_axes_lps=matrix)


def _load_segs(import_seg: SegReader, seg_uids: List[str], series, seg_folders, imported: SrImport,
               progress) -> None:
    folders = _search_folders(imported, seg_folders, series)
    found = _find_instances(set(seg_uids), folders)
    for uid in seg_uids:
        path = found.get(uid)
        groups = sum(1 for r in imported.records if r.seg_sop_instance_uid == uid)
        if path is None:
            imported.missing.append(
                f"the SEG {uid} that {groups} measurement(s) refer to was not found in "
                + ", ".join(str(f) for f in dict.fromkeys(folders))
                + "; measurements and markups are loaded without its segments")
            continue
        try:
            seg_import = import_seg(path, series, progress)
        except GeometryError as error:
            imported.missing.append(f"the SEG {path} does not lie on the given series ({error.problem}); read on its "
                                    "own grid")
            seg_import = import_seg(path, None, progress)
        except DicomAnnotEmbedError as error:
            imported.missing.append(f"the SEG {path} cannot be read: {error.problem}")
            continue
        imported.seg_imports.append(seg_import)
        labels = {n: s.name for s in seg_import.segmentation.segments
                  for sid, n in seg_import.segment_numbers.items() if sid == s.id}
        for record in imported.records:
            if record.seg_sop_instance_uid == uid and record.segment_number in labels:
                record.segment = labels[record.segment_number]


def _search_folders(imported: SrImport, seg_folders, series) -> List[Path]:
    """Where a report's SEGs and companion reports are looked for: beside it, in ``seg_folders``,
    in the series' folder."""
    folders = [Path(imported.path).resolve().parent] + [Path(f) for f in seg_folders]
    if series is not None:
        folders.append(Path(series.folder))
    return folders


def _find_instances(uids: set, folders: Sequence[Path], files: Sequence[Path] = ()) -> Dict[str, str]:
    """{SOP Instance UID: path} of the wanted instances among ``files`` and below the folders (a
    folder's own files before those of its subfolders: an SR's SEG lies beside it, an overlay
    series of 200 files below)."""
    found: Dict[str, str] = {}
    candidates = itertools.chain(  # a folder is listed only when the ones before did not hold everything
        [[f for f in files if f.is_file()]],
        (sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: (len(p.parts), p))
         for folder in dict.fromkeys(folders) if folder.is_dir()))
    for paths in candidates:
        for path in paths:
            if len(found) == len(uids):
                return found
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            except Exception:  # not DICOM: skip
                continue
            uid = str(header.get("SOPInstanceUID", ""))
            if uid in uids and uid not in found:
                found[uid] = str(path)
    return found




def sr_summary(imported: SrImport) -> str:
    """One line about an imported SR, for the command line."""
    numeric = sum(1 for r in imported.records if r.kind == "numeric")
    return (f"{imported.sop_class}: {len(imported.records)} records ({numeric} measurements, "
            f"{len(imported.records) - numeric} evaluations), {len(imported.markups)} markups, "
            f"{len(imported.seg_imports)} of {len(imported.referenced_seg_uids)} referenced SEG(s) loaded")
