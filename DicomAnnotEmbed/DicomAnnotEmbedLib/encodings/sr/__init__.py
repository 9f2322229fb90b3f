"""DICOM Structured Reports, TID 1500 "Imaging Measurement Report", both ways.

Export (:func:`export_sr`) writes one Comprehensive 3D SR per call, built with highdicom's
TID 1500 classes:

* the document: observer context (a person and/or a device), procedure reported (by modality),
  language (English, en-US), an image library of the source images, and the evidence (the SEG
  and every source image, in the Current Requested Procedure Evidence Sequence);
* one **volumetric** measurement group (TID 1411) per segment of the SEG, referencing that
  segment (Referenced Segment + Source Series for Segmentation) with the SEG's Tracking
  Identifier and Tracking UID; Finding Category / Finding / Finding Site from the segment's
  terminology (a type modifier is a concept modifier of the Finding: Laterality for CID 244
  codes, else Topographical modifier; the anatomic region modifier likewise of the Finding
  Site); the measurements of :mod:`measurements` with UCUM units, the algorithm (TID 4019:
  ``DicomAnnotEmbed`` and its version) and, for image statistics, their Derivation;
  qualitative evaluations from an evaluation CSV (:mod:`evaluations`): coded ones as CODE
  items, free text as TEXT items;
* one group per markup, coordinates as SCOORD3D in the series' Frame of Reference, in **LPS**
  millimetres (DICOM's patient coordinate system, which needs no conversion):

  ============  ===================================================================================
  point list    one planar group (TID 1410) per control point, Image Region POINT; the points of
                a list share the list's Tracking Identifier (its name) and Tracking UID
  line          TID 1501 group, Length (mm) inferred from a POLYLINE of its 2 points
  open curve    TID 1501 group, Path length (mm) inferred from the POLYLINE of its points
  angle         TID 1501 group, Angle (deg) inferred from the POLYLINE of its 3 points
  closed curve  planar group, Image Region POLYGON (closed, coplanar points) with Area (mm2) and
                Perimeter (mm); a non-planar closed curve: TID 1501 group whose Perimeter is
                inferred from a closed POLYLINE (a POLYGON must be planar), and its Area
  plane         planar group, Image Region POLYGON of the corners of its rectangle (no measurement)
  ROI box       volumetric group whose Volume Surface is the box's 6 faces, each a closed planar
                POLYGON of 4 corners, with its Volume (mm3)
  ============  ===================================================================================

  highdicom (after TID 1410) takes only POINT, POLYGON and ELLIPSE as a 3D planar image region;
  lines, curves and angles are therefore the coordinates their measurement is inferred from
  (TID 300), and a point list is one POINT group per point.

Import (:func:`import_sr`) reads any TID 1500 report (Enhanced, Comprehensive or Comprehensive
3D SR; ours, dcmqi's, highdicom's) into markups in **LPS** (SCOORD3D as they are; image-relative
SCOORD through the position and orientation of the referenced image, so oblique series are
right), a list of :class:`MeasurementRecord` (written as CSV by :func:`write_measurements_csv`),
and the referenced SEG(s) through :func:`seg.import_seg` when found beside the SR or in the
given folders. What cannot be found is listed in :attr:`SrImport.missing` and logged.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ... import __version__
from ...core.errors import DicomAnnotEmbedError, GeometryError, InputError
from ...dicom.values import code_of, coded_concept, long_string
from ...core.inputs import read_dicom_file
from ...core.geometry import VolumeGeometry
from ...core.model import Code, Markup, Segment, Segmentation, Terminology
from ...core.outputs import atomic_path, prepare_output_file
from ...core.progress import ProgressCallback
from ...core.series import ReferenceSeries

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SR_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR", "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR", COMPREHENSIVE_3D_SR: "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR",
}
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")

#: Private coding scheme of codes this package makes up (concepts written as plain text in an
#: evaluation CSV, image values of modalities without a standard concept).
PRIVATE_SCHEME = "99DAE"
PRIVATE_SCHEME_NAME = "DicomAnnotEmbed local codes"
ALGORITHM_NAME = "DicomAnnotEmbed"

# --- concepts written --------------------------------------------------------------------------
VOLUME = Code("118565006", "SCT", "Volume")
SURFACE_AREA = Code("C0JK", "IBSI", "Surface Area of Mesh")
MAXIMUM_DIAMETER = Code("L0JK", "IBSI", "Maximum 3D Diameter of a Mesh")
VOXEL_SUM_METHOD = Code("126030", "DCM", "Sum of segmented voxel method for volume")
LENGTH = Code("410668003", "SCT", "Length")
PATH_LENGTH = Code("121211", "DCM", "Path length")
PERIMETER = Code("131191004", "SCT", "Perimeter")
AREA = Code("42798000", "SCT", "Area")
ANGLE = Code("1483009", "SCT", "Angle")
DERIVATIONS = {"mean": Code("373098007", "SCT", "Mean"),
               "standard_deviation": Code("386136009", "SCT", "Standard Deviation"),
               "minimum": Code("255605001", "SCT", "Minimum"), "maximum": Code("56851009", "SCT", "Maximum")}
#: Concept of the image values under a segment, by modality (with the statistic as Derivation).
INTENSITY_CONCEPTS = {"CT": Code("112031", "DCM", "Attenuation Coefficient"),
                      "MR": Code("110852", "DCM", "MR signal intensity")}
IMAGE_VALUE = Code("IMAGEVALUE", PRIVATE_SCHEME, "Image value")
PROCEDURES = {"CT": Code("25045-6", "LN", "CT unspecified body region"),
              "MR": Code("25056-3", "LN", "MRI unspecified body region"),
              "PT": Code("44136-0", "LN", "PET unspecified body region"),
              "NM": Code("49118-3", "LN", "NM unspecified body region")}
IMAGING_PROCEDURE = Code("363679005", "SCT", "Imaging procedure")
LATERALITIES = {("24028007", "SCT"), ("7771000", "SCT"), ("51440002", "SCT"), ("66459002", "SCT"),
                ("G-A100", "SRT"), ("G-A101", "SRT"), ("G-A102", "SRT"), ("G-A103", "SRT")}
COMMENT = Code("121106", "DCM", "Comment")
# LIDC preset (the seed's conversion, in today's SNOMED CT codes).
LIDC_CATEGORY = Code("49755003", "SCT", "Morphologically Altered Structure")
LIDC_NODULE = Code("27925004", "SCT", "Nodule")
LIDC_LUNG = Code("39607008", "SCT", "Lung")

# --- concepts read (legacy SRT equivalents included) -------------------------------------------
_IMAGING_MEASUREMENTS = {("126010", "DCM")}
_MEASUREMENT_GROUP = {("125007", "DCM")}
_TRACKING_ID = {("112039", "DCM")}
_TRACKING_UID = {("112040", "DCM")}
_FINDING = {("121071", "DCM")}
_FINDING_CATEGORY = {("276214006", "SCT")}
_FINDING_SITE = {("363698007", "SCT"), ("G-C0E3", "SRT")}
_LATERALITY = {("272741003", "SCT"), ("G-C171", "SRT")}
_TOPOGRAPHICAL = {("106233006", "SCT"), ("G-A1F8", "SRT")}
_DERIVATION = {("121401", "DCM")}
_METHOD = {("370129005", "SCT"), ("G-C036", "SRT")}
_ALGORITHM_NAME = {("111001", "DCM")}
_ALGORITHM_VERSION = {("111003", "DCM")}
_REFERENCED_SEGMENT = {("121191", "DCM")}
_REFERENCED_SEGMENTATION_FRAME = {("121214", "DCM")}
_SOURCE_SERIES_FOR_SEGMENTATION = {("121232", "DCM")}
_IMAGE_REGION = {("111030", "DCM")}
_VOLUME_SURFACE = {("121231", "DCM")}
_GEOMETRIC_PURPOSE = {("130400", "DCM")}
_NOT_EVALUATIONS = (_FINDING | _FINDING_CATEGORY | _FINDING_SITE | _METHOD | _GEOMETRIC_PURPOSE
                    | {("C67447", "NCIt"), ("C2348792", "UMLS"), ("126100", "DCM")})
_REPORT_TITLES = {("126000", "DCM"), ("126001", "DCM"), ("126002", "DCM"), ("126003", "DCM")}
_ANGLE_CONCEPTS = {("1483009", "SCT"), ("110859", "DCM")}
_LINE_CONCEPTS = {("410668003", "SCT"), ("121206", "DCM"), ("121227", "DCM"), ("81827009", "SCT"),
                  ("G-A22A", "SRT"), ("M-02550", "SRT"), ("G-D7FE", "SRT")}
_PERIMETER_CONCEPTS = {("131191004", "SCT"), ("74551000", "SCT"), ("G-A197", "SRT")}
_AREA_CONCEPTS = {("42798000", "SCT"), ("131184002", "SCT"), ("G-A166", "SRT"), ("G-A16A", "SRT")}

#: Tolerance for "inside the series": control points may lie this far (mm) outside the outer voxel faces.
INSIDE_TOLERANCE_MM = 1e-3


# ================================================================================================
# Records
# ================================================================================================

@dataclass
class MeasurementRecord:
    """One measurement or evaluation of a TID 1500 report (a row of ``measurements.csv``).

    Attributes:
        tracking_id, tracking_uid: the group's Tracking Identifier and Tracking UID.
        template: "1411" (volumetric), "1410" (planar), "1501" (no region) or "" when unsaid.
        finding, finding_site: the group's Finding and Finding Site codes, if any.
        concept: the concept name (e.g. Volume, Malignancy).
        value, unit: a numeric measurement (NUM) and its UCUM unit.
        coded_value: the value of a coded evaluation (CODE), or a NUM's qualifier when it has
            no value.
        text: the value of a text evaluation (TEXT).
        derivation, method: Derivation and Measurement Method modifiers of a NUM.
        algorithm: algorithm name and version ("name version"), if given.
        seg_sop_instance_uid, segment_number: the referenced segment, if any.
        segment: the referenced segment's label when the SEG was read, else "".
        markup: name of the markup the group was made into, else "".
    """

    tracking_id: str
    tracking_uid: str
    concept: Code
    template: str = ""
    finding: Optional[Code] = None
    finding_site: Optional[Code] = None
    value: Optional[float] = None
    unit: Optional[Code] = None
    coded_value: Optional[Code] = None
    text: Optional[str] = None
    derivation: Optional[Code] = None
    method: Optional[Code] = None
    algorithm: str = ""
    seg_sop_instance_uid: str = ""
    segment_number: Optional[int] = None
    segment: str = ""
    markup: str = ""

    @property
    def kind(self) -> str:
        """"numeric", "coded" or "text"."""
        if self.text is not None:
            return "text"
        return "numeric" if self.unit is not None else "coded"

    def key(self) -> Tuple:
        """What identifies a record within a report (for comparisons)."""
        return (self.tracking_uid, self.concept.value, self.concept.scheme,
                self.derivation.value if self.derivation else "", self.markup)


CSV_COLUMNS = ("tracking_id", "tracking_uid", "template", "segment", "segment_number", "seg_sop_instance_uid",
               "markup", "finding", "finding_site", "concept", "derivation", "kind", "value", "unit",
               "coded_value", "text", "method", "algorithm")


def write_measurements_csv(path: PathLike, records: Sequence[MeasurementRecord]) -> None:
    """Write records as CSV (columns :data:`CSV_COLUMNS`; codes as ``(value, scheme, "meaning")``,
    numbers with full float precision). Written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        row = {"kind": record.kind, "value": "" if record.value is None else repr(float(record.value)),
               "segment_number": "" if record.segment_number is None else str(record.segment_number)}
        for name in CSV_COLUMNS:
            if name in row:
                continue
            value = getattr(record, name)
            row[name] = "" if value is None else str(value)
        writer.writerow([row[name] for name in CSV_COLUMNS])
    text = buffer.getvalue()
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def read_measurements_csv(path: PathLike) -> List[MeasurementRecord]:
    """Read a CSV written by :func:`write_measurements_csv` back into records."""
    from ...dicom.evaluations import parse_code

    def code(text: str) -> Optional[Code]:
        return parse_code(text) if text else None

    records = []
    with open(path, encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream):
            records.append(MeasurementRecord(
                tracking_id=row["tracking_id"], tracking_uid=row["tracking_uid"], concept=code(row["concept"]),
                template=row["template"], finding=code(row["finding"]), finding_site=code(row["finding_site"]),
                value=float(row["value"]) if row["value"] else None, unit=code(row["unit"]),
                coded_value=code(row["coded_value"]), text=row["text"] if row["kind"] == "text" else None,
                derivation=code(row["derivation"]), method=code(row["method"]), algorithm=row["algorithm"],
                seg_sop_instance_uid=row["seg_sop_instance_uid"],
                segment_number=int(row["segment_number"]) if row["segment_number"] else None,
                segment=row["segment"], markup=row["markup"]))
    return records


# ================================================================================================
# Export
# ================================================================================================

@dataclass
class SrExportOptions:
    """Document-level options of :func:`export_sr` (all optional).

    Attributes:
        observer_name: a person observer (DICOM PN, e.g. ``Doe^Jane``).
        device_name: a device observer's name (its Device Observer UID is derived from the name).
            With neither, the device observer is ``DicomAnnotEmbed``.
        procedure_reported: defaults by modality (CT, MR, PT, NM unspecified body region;
            otherwise "Imaging procedure").
        code_table: code table for the evaluation CSV (a bundled name such as ``lidc``, or a file).
        lidc: the LIDC preset (see :func:`apply_lidc_preset`): finding Nodule, site Lung, series
            description "Nodule N - Annotation A".
        image_library: include the TID 1600 image library of the source images.
        series_description, series_number, instance_number: of the SR.
    """

    observer_name: Optional[str] = None
    device_name: Optional[str] = None
    procedure_reported: Optional[Code] = None
    code_table: str = "lidc"
    lidc: bool = False
    image_library: bool = True
    series_description: Optional[str] = None
    series_number: int = 400
    instance_number: int = 1
    algorithm_version: str = __version__


@dataclass
class SrExportResult:
    """What :func:`export_sr` wrote.

    Attributes:
        path: the SR file.
        sop_instance_uid, series_instance_uid: of the SR.
        records: every measurement and evaluation written, as :class:`MeasurementRecord`.
        groups: number of measurement groups.
        skipped: what was left out and why (empty segments, segments not in the SEG, ...).
    """

    path: Path
    sop_instance_uid: str
    series_instance_uid: str
    records: List[MeasurementRecord] = field(default_factory=list)
    groups: int = 0
    skipped: List[str] = field(default_factory=list)


def private_concept(text: str) -> Code:
    """The code standing for a concept written as plain text: (121106, DCM, "Comment") for
    "comment", else a code of :data:`PRIVATE_SCHEME` derived from the text, meaning = the text."""
    text = " ".join(str(text).split())
    if re.sub(r"[^a-z]", "", text.lower()) == "comment":
        return COMMENT
    digest = hashlib.sha1(text.casefold().encode("utf-8")).hexdigest()[:12].upper()
    return Code(f"T{digest}", PRIVATE_SCHEME, text[:64])


def apply_lidc_preset(segmentation: Segmentation,
                      nodules: Optional[Dict[str, Tuple[int, str]]] = None) -> Dict[str, Tuple[int, str]]:
    """Give segments the LIDC conversion's conventions (the seed's SEG/SR), in place; use it
    before :func:`seg.export_seg` so that the SEG and the SR agree.

    Each segment is an annotation ``A`` of a nodule ``N``: from ``nodules`` ({segment id: (N, A)}),
    else from its name or description ("Nodule 2 - Annotation 001"), else segments sharing a
    Tracking UID form one nodule, else each segment is its own nodule. Then: description
    "Nodule N - Annotation A", Tracking Identifier "Nodule N", one Tracking UID per nodule shared
    by its annotations (kept when the nodule's segments already share one), terminology
    Morphologically Altered Structure / Nodule in Lung.

    Returns:
        {segment id: (N, A)}.
    """
    numbers = nodules or lidc_numbers(segmentation.segments)
    uids: Dict[int, str] = {}
    for segment in segmentation.segments:
        if segment.id not in numbers:
            continue
        nodule, annotation = numbers[segment.id]
        existing = segment.attributes.get("TrackingUniqueIdentifier")
        uids.setdefault(nodule, existing or generate_uid())
    for segment in segmentation.segments:
        if segment.id not in numbers:
            continue
        nodule, annotation = numbers[segment.id]
        segment.description = f"Nodule {nodule} - Annotation {annotation}"
        segment.attributes["TrackingIdentifier"] = f"Nodule {nodule}"
        segment.attributes["TrackingUniqueIdentifier"] = uids[nodule]
        segment.terminology = Terminology(LIDC_CATEGORY, LIDC_NODULE, anatomic_region=LIDC_LUNG)
    return numbers


def lidc_numbers(segments: Sequence[Segment]) -> Dict[str, Tuple[int, str]]:
    """{segment id: (nodule number, annotation id)} as :func:`apply_lidc_preset` finds them."""
    result: Dict[str, Tuple[int, str]] = {}
    by_uid: Dict[str, int] = {}
    next_nodule = 1
    counts: Dict[int, int] = {}
    parsed = {}
    for segment in segments:
        text = f"{segment.name} {segment.description} {segment.attributes.get('TrackingIdentifier', '')}"
        nodule = re.search(r"nodule\s*(\d+)", text, re.IGNORECASE)
        annotation = re.search(r"annotation\s+(.+?)\s*$", segment.description or segment.name, re.IGNORECASE)
        parsed[segment.id] = (int(nodule.group(1)) if nodule else None, annotation.group(1) if annotation else None)
    used = {n for n, _ in parsed.values() if n is not None}
    for segment in segments:
        nodule, annotation = parsed[segment.id]
        if nodule is None:
            uid = segment.attributes.get("TrackingUniqueIdentifier")
            if uid and uid in by_uid:
                nodule = by_uid[uid]
            else:
                while next_nodule in used:
                    next_nodule += 1
                nodule = next_nodule
                used.add(nodule)
            if uid:
                by_uid.setdefault(uid, nodule)
        counts[nodule] = counts.get(nodule, 0) + 1
        result[segment.id] = (nodule, annotation or str(counts[nodule]))
    return result


def export_sr(series: ReferenceSeries, seg_file: PathLike, out: PathLike, *,
              segmentation: Union[Segmentation, PathLike, None] = None,
              markups: Iterable[Union[Markup, PathLike]] = (),
              evaluations: Union[PathLike, Sequence, None] = None,
              options: Optional[SrExportOptions] = None,
              progress: Optional[ProgressCallback] = None, **option_values) -> SrExportResult:
    """Write a TID 1500 Comprehensive 3D SR about the segments of a SEG and about markups.

    Args:
        series: the source image series the SEG was made on (its headers; pixel data is read
            for the image statistics).
        seg_file: the DICOM SEG whose segments the volumetric groups reference. Measurements are
            computed on its segments as read back by :func:`seg.import_seg` (on the series grid).
        out: the SR file.
        segmentation: optionally the segmentation the SEG was written from (a ``.seg.nrrd`` or a
            :class:`Segmentation`): its segment ids and names may then be used in the evaluation
            CSV. Its segments are matched to the SEG's by Tracking UID, else Tracking Identifier,
            else name (= Segment Label); its segments not in the SEG (empty ones, which a SEG
            leaves out) are skipped with a warning.
        markups: ``.mrk.json`` files and/or :class:`Markup` objects, coordinates in **LPS**.
            Every control point (an ROI's or plane's centre) must lie inside the series volume.
        evaluations: an evaluation CSV (see :mod:`evaluations`) read with ``options.code_table``,
            or a list of :class:`evaluations.EvaluationRecord`.
        options: :class:`SrExportOptions`; single fields may also be given as keywords.

    Raises:
        InputError: not a SEG, a SEG of another series, nothing to report, a bad CSV.
        GeometryError: a markup outside the series; a series without patient coordinates.
        OutputError: the file cannot be written.

    An empty segment of the SEG gets its group (finding, reference, evaluations) without
    measurements, and a warning.
    """
    import highdicom as hd

    from ...core.measurements import measure_markup, measure_segmentation
    from ..seg import import_seg

    options = dataclasses.replace(options or SrExportOptions(), **option_values)
    out = prepare_output_file(out)
    seg_file = Path(seg_file)
    seg_header = _read_seg_header(seg_file)
    seg_series = _seg_referenced_series(seg_header)
    if seg_series and seg_series != series.series_instance_uid:
        raise InputError(f"the SEG was made on series {seg_series}, not on {series.series_instance_uid} "
                         f"({series.folder})", seg_file)
    frame_of_reference = str(getattr(series.datasets[0], "FrameOfReferenceUID", "") or "")
    result = SrExportResult(path=out, sop_instance_uid=generate_uid(), series_instance_uid=generate_uid())

    seg_import = import_seg(seg_file, series, progress)
    seg_segmentation = seg_import.segmentation
    numbers = seg_import.segment_numbers
    work = _working_segmentation(series, segmentation, seg_segmentation)

    shapes: List[Markup] = []
    for item in markups:
        if isinstance(item, Markup):
            shapes.append(item)
        else:
            from ...files.markups_io import read_markups

            shapes.extend(read_markups(item))
    if shapes:
        if not series.geometry.in_patient_space or not frame_of_reference:
            raise GeometryError("the series has no patient coordinates (position, orientation, Frame of Reference "
                                "UID): markups cannot be placed in it", series.folder)
        for markup in shapes:
            check_markup_inside(markup, series.geometry)

    # Which working segment is which SEG segment.
    matches = _match_segments(work, seg_segmentation, result) if work is not seg_segmentation else \
        {s.id: s for s in seg_segmentation.segments}
    matched = {seg_segment.id for seg_segment in matches.values()}

    # Evaluations, by SEG segment id.
    per_segment: Dict[str, list] = {}
    if evaluations is not None:
        if isinstance(evaluations, (str, os.PathLike)):
            from ...dicom.evaluations import read_evaluations_csv

            evaluations = read_evaluations_csv(evaluations, options.code_table, work)
        for record in evaluations:
            key = record.segment
            try:
                key = work.segment(key).id
            except KeyError:
                raise InputError(f"evaluation for unknown segment {record.segment!r}") from None
            if key not in matches:
                raise InputError(f"evaluations are given for segment {work.segment(key).name!r}, which is not in "
                                 f"the SEG", seg_file)
            per_segment.setdefault(matches[key].id, []).append(record)

    # Measurements of the SEG's segments (empty ones are warned about and get none).
    counts = seg_segmentation.voxel_counts()
    present = [s for s in seg_segmentation.segments if counts.get(s.id, 0) > 0]
    for s in seg_segmentation.segments:
        if counts.get(s.id, 0) == 0:
            message = f"segment {s.name!r} of the SEG is empty: its group has no measurements"
            log.warning(message)
            result.skipped.append(message)
    measured = {}
    if present:
        image = series.read_volume(progress)
        measured = measure_segmentation(Segmentation(seg_segmentation.geometry, seg_segmentation.layers, present),
                                        image, series.modality)

    lidc = lidc_numbers(seg_segmentation.segments) if options.lidc else {}
    if options.lidc:
        _check_lidc_tracking(seg_segmentation.segments, lidc)

    algorithm = hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=options.algorithm_version)
    groups = []
    for seg_segment in sorted(seg_segmentation.segments, key=lambda s: numbers[s.id]):
        if seg_segment.id not in matched:
            log.info("SEG segment %r has no counterpart in the given segmentation: reported from the SEG alone",
                     seg_segment.name)
        group, records = _segment_group(
            seg_segment, numbers[seg_segment.id], seg_header, series, measured.get(seg_segment.id),
            per_segment.get(seg_segment.id, []), algorithm, lidc.get(seg_segment.id))
        groups.append(group)
        result.records.extend(records)
    used_names: Dict[str, int] = {}
    for markup in shapes:
        name = _unique(markup.name, used_names)
        quantities = measure_markup(markup)
        new_groups, records = _markup_groups(markup, name, quantities, frame_of_reference, series, algorithm)
        groups.extend(new_groups)
        result.records.extend(records)
    if not groups:
        raise InputError("nothing to report: the SEG has no segments and no markups were given", seg_file)
    result.groups = len(groups)

    observer_person = observer_device = None
    if options.observer_name:
        observer_person = hd.sr.ObserverContext(
            observer_type=coded_concept(Code("121006", "DCM", "Person")),
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=options.observer_name))
    if options.device_name or not options.observer_name:
        name = options.device_name or ALGORITHM_NAME
        observer_device = hd.sr.ObserverContext(
            observer_type=coded_concept(Code("121007", "DCM", "Device")),
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=generate_uid(entropy_srcs=["DicomAnnotEmbed device observer", name]), name=long_string(name)))
    context = hd.sr.ObservationContext(observer_person_context=observer_person,
                                       observer_device_context=observer_device)
    procedure = options.procedure_reported or PROCEDURES.get(series.modality.upper(), IMAGING_PROCEDURE)
    try:
        report = hd.sr.MeasurementReport(
            observation_context=context, procedure_reported=coded_concept(procedure), imaging_measurements=groups,
            language_of_content_item_and_descendants=hd.sr.LanguageOfContentItemAndDescendants(
                hd.sr.templates.DEFAULT_LANGUAGE))
    except (ValueError, TypeError, AttributeError) as error:
        raise InputError(f"the measurement report cannot be built: {error}") from None

    description = options.series_description
    if description is None:
        if options.lidc and lidc:
            description = "; ".join(f"Nodule {n} - Annotation {a}" for n, a in lidc.values())
        else:
            description = "Measurements (DicomAnnotEmbed)"
    try:
        document = hd.sr.Comprehensive3DSR(
            evidence=_evidence(series.datasets) + [seg_header], content=report,
            series_instance_uid=result.series_instance_uid, series_number=options.series_number,
            sop_instance_uid=result.sop_instance_uid, instance_number=options.instance_number,
            manufacturer="DicomAnnotEmbed", series_description=long_string(description),
            software_versions=f"DicomAnnotEmbed {__version__}")
    except (ValueError, TypeError, AttributeError) as error:
        raise InputError(f"the SR document cannot be built from the series' headers: {error}", series.folder) from None
    if options.image_library:
        _insert_image_library(document, series.datasets)
    _add_coding_schemes(document, options)
    with atomic_path(out) as tmp:
        pydicom.dcmwrite(tmp, document, enforce_file_format=True)
    return result


def _insert_image_library(document: Dataset, datasets: Sequence[Dataset]) -> None:
    """Put highdicom's TID 1600 Image Library of ``datasets`` where MeasurementReport puts it
    (after the procedure, before the first container).

    Not given to MeasurementReport: the SR's constructor deep-copies, searches and converts its
    whole content, and 17 items for each of 200 images made that 6 of the 8 s an export took
    (Testing/benchmarks/bench_csv.py notes). The images are evidence all the same.
    """
    import highdicom as hd

    try:
        library = list(hd.sr.ImageLibrary(list(datasets)))
    except (ValueError, TypeError, AttributeError) as error:
        # e.g. an empty Slice Thickness (type 2 in CT): the report stands without the library
        log.warning("the SR has no image library: highdicom cannot describe the images (%s)", error)
        return
    items = document.ContentSequence
    names = [item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else "" for item in items]
    at = names.index("126010") if "126010" in names else len(items)  # before Imaging Measurements
    document.ContentSequence = list(items[:at]) + library + list(items[at:])


def _evidence(datasets: Sequence[Dataset]) -> List[Dataset]:
    """The source headers as evidence; the first one (whose patient and study attributes the SR
    copies) gets the Type 2 attributes it lacks, empty, as highdicom reads them unconditionally."""
    first = Dataset()
    first.update(datasets[0])
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                    "StudyDate", "StudyTime", "ReferringPhysicianName"):
        if keyword not in first:
            setattr(first, keyword, None)
    return [first] + list(datasets[1:])


def _read_seg_header(path: Path) -> Dataset:
    if not path.is_file():
        raise InputError("SEG file does not exist", path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as error:  # pydicom raises several types for broken files
        raise InputError(f"not a readable DICOM file ({error})", path) from None
    if str(getattr(ds, "SOPClassUID", "")) not in SEG_SOP_CLASSES:
        raise InputError(f"not a DICOM SEG (SOP Class UID {getattr(ds, 'SOPClassUID', 'missing')}, Modality "
                         f"{getattr(ds, 'Modality', '?')})", path)
    return ds


def _seg_referenced_series(ds: Dataset) -> str:
    for item in ds.get("ReferencedSeriesSequence", []) or []:
        if item.get("SeriesInstanceUID"):
            return str(item.SeriesInstanceUID)
    for study in ds.get("StudiesContainingOtherReferencedInstancesSequence", []) or []:
        for item in study.get("ReferencedSeriesSequence", []) or []:
            return str(item.get("SeriesInstanceUID", ""))
    return ""


def _working_segmentation(series: ReferenceSeries, segmentation, seg_segmentation: Segmentation) -> Segmentation:
    """The segmentation the caller names segments by: the given one on the series grid, else the SEG's."""
    if segmentation is None:
        return seg_segmentation
    if not isinstance(segmentation, Segmentation):
        from ...api import load_annotations

        segmentation = load_annotations(series, segmentation).segmentation
    return segmentation.resampled_to(series.geometry)


def _match_segments(work: Segmentation, seg_segmentation: Segmentation, result: SrExportResult) -> Dict[str, Segment]:
    """{working segment id: SEG segment}; unmatched working segments are warned about."""
    by_uid: Dict[str, List[Segment]] = {}
    by_tracking: Dict[str, List[Segment]] = {}
    for s in seg_segmentation.segments:
        by_uid.setdefault(s.attributes.get("TrackingUniqueIdentifier") or "", []).append(s)
        by_tracking.setdefault(s.attributes.get("TrackingIdentifier") or "", []).append(s)
    by_label = {s.name: s for s in seg_segmentation.segments}
    matches: Dict[str, Segment] = {}
    work_counts = work.voxel_counts()
    seg_counts = seg_segmentation.voxel_counts()
    taken = set()

    def one(candidates: List[Segment], label: str) -> Optional[Segment]:
        """The candidate, or among several (annotations sharing a nodule's UID) the one so labelled."""
        if len(candidates) > 1:
            candidates = [c for c in candidates if c.name == label]
        return candidates[0] if len(candidates) == 1 else None

    for segment in work.segments:
        label = long_string(segment.name)
        uid, tracking_id = (segment.attributes.get("TrackingUniqueIdentifier"),
                            segment.attributes.get("TrackingIdentifier"))
        found = one(by_uid.get(uid, []), label) if uid else None
        if found is None and tracking_id:
            found = one(by_tracking.get(tracking_id, []), label)
        if found is None:
            found = by_label.get(label)
        if found is None or found.id in taken:
            message = f"segment {segment.name!r} is not in the SEG" + (
                " (it is empty; a SEG leaves empty segments out)" if work_counts.get(segment.id, 0) == 0 else "")
            log.warning("%s: skipped", message)
            result.skipped.append(message)
            continue
        taken.add(found.id)
        matches[segment.id] = found
        if work_counts.get(segment.id, 0) != seg_counts.get(found.id, 0):
            log.warning("segment %r has %d voxels in the given segmentation but %d in the SEG; the measurements are "
                        "of the SEG's segment", segment.name, work_counts.get(segment.id, 0),
                        seg_counts.get(found.id, 0))
    return matches


def _check_lidc_tracking(segments: Sequence[Segment], numbers: Dict[str, Tuple[int, str]]) -> None:
    uids: Dict[int, set] = {}
    for segment in segments:
        uids.setdefault(numbers[segment.id][0], set()).add(segment.attributes.get("TrackingUniqueIdentifier"))
    split = [n for n, found in uids.items() if len(found) > 1]
    if split:
        log.warning("LIDC preset: the annotations of nodule(s) %s have different Tracking UIDs in the SEG; the SR "
                    "keeps the SEG's (apply sr.apply_lidc_preset before writing the SEG, or give the SEG export "
                    "dcmqi metadata with shared TrackingUniqueIdentifier values)", ", ".join(map(str, split)))


def check_markup_inside(markup: Markup, geometry: VolumeGeometry) -> None:
    """Raise :class:`GeometryError` when a control point of ``markup`` (an ROI's or plane's
    centre) lies outside the volume of ``geometry`` (outer voxel faces, LPS)."""
    points = markup.points_lps if markup.kind not in ("roi", "plane") else markup.roi_center_lps[None]
    if len(points) == 0:
        return
    ijk = geometry.lps_to_ijk_points(points)
    upper = np.array(geometry.shape[::-1], dtype=float) - 0.5
    clamped = np.clip(ijk, -0.5, upper)
    distance = np.linalg.norm(geometry.ijk_to_lps_points(clamped) - points, axis=1)
    worst = int(np.argmax(distance))
    if distance[worst] > INSIDE_TOLERANCE_MM:
        where = ", ".join(f"{v:.2f}" for v in points[worst])
        what = "its centre" if markup.kind in ("roi", "plane") else f"control point {worst + 1}"
        raise GeometryError(f"markup {markup.name!r} lies outside the series: {what} at LPS ({where}) is "
                            f"{distance[worst]:.1f} mm outside the volume ({geometry.describe()})")


def _unique(name: str, used: Dict[str, int]) -> str:
    name = long_string(name) or "Markup"
    if name not in used:
        used[name] = 1
        return name
    used[name] += 1
    candidate = long_string(f"{name[:58]} ({used[name]})")
    used[candidate] = 1
    return candidate


def _segment_group(segment: Segment, number: int, seg_header: Dataset, series: ReferenceSeries, measured,
                   evaluations: list, algorithm, lidc: Optional[Tuple[int, str]]):
    """The TID 1411 group of one SEG segment and its records."""
    import highdicom as hd

    from ...core.model import DEFAULT_TERMINOLOGY

    tracking_id = segment.attributes.get("TrackingIdentifier")
    tracking_uid = segment.attributes.get("TrackingUniqueIdentifier")
    if not tracking_id or not tracking_uid:
        log.warning("SEG segment %r has no tracking identifier and UID; new ones are made for the SR", segment.name)
        tracking_id = tracking_id or long_string(segment.name)
        tracking_uid = tracking_uid or generate_uid()
    term = segment.terminology or DEFAULT_TERMINOLOGY
    if lidc is not None:
        term = Terminology(LIDC_CATEGORY, LIDC_NODULE, anatomic_region=LIDC_LUNG)
    finding_site = None
    if term.anatomic_region is not None:
        modifier = term.anatomic_region_modifier
        lateral = modifier is not None and (modifier.value, modifier.scheme) in LATERALITIES
        finding_site = hd.sr.FindingSite(
            coded_concept(term.anatomic_region), laterality=coded_concept(modifier) if lateral else None,
            topographical_modifier=coded_concept(modifier) if modifier is not None and not lateral else None)
    records: List[MeasurementRecord] = []

    def record(concept: Code, **values) -> None:
        records.append(MeasurementRecord(
            tracking_id=tracking_id, tracking_uid=tracking_uid, concept=concept, template="1411",
            finding=term.type, finding_site=term.anatomic_region, seg_sop_instance_uid=str(seg_header.SOPInstanceUID),
            segment_number=number, segment=segment.name, **values))

    measurements = []
    if measured is not None:
        for name, quantity in measured.quantities().items():
            unit = quantity.unit_code
            derivation = DERIVATIONS.get(name)
            method = VOXEL_SUM_METHOD if name == "volume" else None
            if derivation is not None:
                concept = INTENSITY_CONCEPTS.get(series.modality.upper(), IMAGE_VALUE)
            else:
                concept = {"volume": VOLUME, "surface_area": SURFACE_AREA, "maximum_diameter": MAXIMUM_DIAMETER}[name]
            measurements.append(hd.sr.Measurement(
                name=coded_concept(concept), value=float(quantity.value), unit=coded_concept(unit), algorithm_id=algorithm,
                derivation=coded_concept(derivation) if derivation else None, method=coded_concept(method) if method else None))
            record(concept, value=float(quantity.value), unit=unit, derivation=derivation, method=method,
                   algorithm=_algorithm_text(algorithm))
    qualitative, texts = [], []
    for evaluation in evaluations:
        concept = evaluation.concept or private_concept(evaluation.concept_name)
        if evaluation.value is not None:
            qualitative.append(hd.sr.QualitativeEvaluation(coded_concept(concept), coded_concept(evaluation.value)))
            record(concept, coded_value=evaluation.value)
        else:
            texts.append(hd.sr.TextContentItem(name=coded_concept(concept), value=str(evaluation.text),
                                               relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
            record(concept, text=str(evaluation.text))
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=long_string(tracking_id)),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=str(seg_header.SOPClassUID), sop_instance_uid=str(seg_header.SOPInstanceUID),
            segment_number=int(number),
            source_series=hd.sr.SourceSeriesForSegmentation(series.series_instance_uid)),
        finding_type=coded_concept(term.type), finding_category=coded_concept(term.category),
        finding_sites=[finding_site] if finding_site is not None else None,
        measurements=measurements or None, qualitative_evaluations=qualitative or None)
    content = group[0].ContentSequence
    if term.type_modifier is not None:
        _add_finding_modifier(content, term.type_modifier)
    content.extend(texts)
    return group, records


def _algorithm_text(algorithm) -> str:
    """"name version" of a highdicom AlgorithmIdentification (as import reads it back)."""
    return " ".join(str(item.value) for item in algorithm[:2])


def _add_finding_modifier(content, modifier: Code) -> None:
    """The segment's type modifier as a concept modifier of its Finding item."""
    import highdicom as hd

    lateral = (modifier.value, modifier.scheme) in LATERALITIES
    name = Code("272741003", "SCT", "Laterality") if lateral else Code("106233006", "SCT", "Topographical modifier")
    for item in content:
        if _key(item) in _FINDING:
            item.ContentSequence = hd.sr.ContentSequence([hd.sr.CodeContentItem(
                name=coded_concept(name), value=coded_concept(modifier), relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD)])
            return


def _markup_groups(markup: Markup, name: str, quantities: dict, frame_of_reference: str,
                   series: ReferenceSeries, algorithm):
    """Measurement groups and records for one markup (see the module docstring)."""
    import highdicom as hd
    from highdicom.spatial import are_points_coplanar

    uid = markup.attributes.get("TrackingUniqueIdentifier") or generate_uid()
    tracking = hd.sr.TrackingIdentifier(uid=uid, identifier=name)
    records: List[MeasurementRecord] = []

    def measurement(concept: Code, quantity, template: str, coordinates=None):
        records.append(MeasurementRecord(
            tracking_id=name, tracking_uid=uid, concept=concept, template=template, value=float(quantity.value),
            unit=quantity.unit_code, algorithm=_algorithm_text(algorithm), markup=name))
        return hd.sr.Measurement(name=coded_concept(concept), value=float(quantity.value), unit=coded_concept(quantity.unit_code),
                                 algorithm_id=algorithm, referenced_coordinates=coordinates)

    def coords(graphic_type: str, points: np.ndarray):
        return [hd.sr.CoordinatesForMeasurement3D(graphic_type=graphic_type, graphic_data=np.asarray(points, float),
                                                  frame_of_reference_uid=frame_of_reference)]

    points = markup.points_lps
    kind = markup.kind
    if kind == "point_list":
        if len(points) == 0:
            log.warning("markup %r has no control points and is skipped", markup.name)
            return [], []
        groups = [hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_region=hd.sr.ImageRegion3D(
                graphic_type="POINT", graphic_data=p[None], frame_of_reference_uid=frame_of_reference))
            for p in points]
        return groups, records
    if kind in ("line", "curve", "angle"):
        concept, key = {"line": (LENGTH, "length"), "curve": (PATH_LENGTH, "length"), "angle": (ANGLE, "angle")}[kind]
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            measurements=[measurement(concept, quantities[key], "1501", coords("POLYLINE", points))])
        return [group], records
    if kind == "closed_curve":
        closed = np.vstack([points, points[:1]])
        if are_points_coplanar(points):
            area, perimeter = measurement(AREA, quantities["area"], "1410"), \
                measurement(PERIMETER, quantities["perimeter"], "1410")
            group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking, measurements=[area, perimeter],
                referenced_region=hd.sr.ImageRegion3D(graphic_type="POLYGON", graphic_data=closed,
                                                      frame_of_reference_uid=frame_of_reference))
        else:
            log.warning("closed curve %r is not planar: written as a closed POLYLINE (a POLYGON must be planar); its "
                        "area is that of its projection on the best-fit plane", markup.name)
            group = hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                measurements=[measurement(PERIMETER, quantities["perimeter"], "1501", coords("POLYLINE", closed)),
                              measurement(AREA, quantities["area"], "1501")])
        return [group], records
    if kind == "plane":
        corners = _plane_corners(markup)
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_region=hd.sr.ImageRegion3D(
                graphic_type="POLYGON", graphic_data=np.vstack([corners, corners[:1]]),
                frame_of_reference_uid=frame_of_reference))
        return [group], records
    if kind == "roi":
        faces = [np.vstack([f, f[:1]]) for f in _box_faces(markup)]
        surface = hd.sr.VolumeSurface(graphic_type="POLYGON", graphic_data=faces,
                                      frame_of_reference_uid=frame_of_reference,
                                      source_series=hd.sr.SourceSeriesForSegmentation(series.series_instance_uid))
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, referenced_volume_surface=surface,
            measurements=[measurement(VOLUME, quantities["volume"], "1411")])
        return [group], records
    raise InputError(f"markup {markup.name!r}: kind {kind!r} cannot be written to an SR")


def _plane_corners(markup: Markup) -> np.ndarray:
    """The 4 corners (LPS) of a plane markup's rectangle, in order around it."""
    half_u = markup.roi_axes_lps[:, 0] * markup.roi_size[0] / 2.0
    half_v = markup.roi_axes_lps[:, 1] * markup.roi_size[1] / 2.0
    c = markup.roi_center_lps
    return np.array([c - half_u - half_v, c + half_u - half_v, c + half_u + half_v, c - half_u + half_v])


def _box_faces(markup: Markup) -> List[np.ndarray]:
    """The 6 faces (4 corners each, LPS) of an ROI box. The first face is the one at -axis 3,
    its corners going along axis 1 then axis 2, so that import can recover the axes' order."""
    c = markup.roi_center_lps
    e = markup.roi_axes_lps * (markup.roi_size / 2.0)  # columns: half edges

    def corner(a, b, d):
        return c + a * e[:, 0] + b * e[:, 1] + d * e[:, 2]

    square = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    faces = [np.array([corner(a, b, -1) for a, b in square]), np.array([corner(a, b, 1) for a, b in square]),
             np.array([corner(-1, a, b) for a, b in square]), np.array([corner(1, a, b) for a, b in square]),
             np.array([corner(a, -1, b) for a, b in square]), np.array([corner(a, 1, b) for a, b in square])]
    return faces


def _add_coding_schemes(document: Dataset, options: SrExportOptions) -> None:
    """Coding Scheme Identification items for the private schemes the document uses."""
    schemes = set()

    def walk(items):
        for item in items:
            for keyword in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
                for code in item.get(keyword, []) or []:
                    schemes.add(str(code.CodingSchemeDesignator))
            walk(item.get("ContentSequence", []) or [])

    walk(document.ContentSequence)
    names = {PRIVATE_SCHEME: PRIVATE_SCHEME_NAME}
    try:
        from ...dicom.evaluations import load_code_table

        names.update(load_code_table(options.code_table).coding_schemes)
    except DicomAnnotEmbedError:
        pass
    items = []
    for scheme in sorted(s for s in schemes if s.startswith("99")):
        item = Dataset()
        item.CodingSchemeDesignator = scheme
        item.CodingSchemeName = long_string(names.get(scheme, scheme))
        items.append(item)
    if items:
        document.CodingSchemeIdentificationSequence = items


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
        seg_imports: the referenced SEG(s) found, read with :func:`seg.import_seg`.
        missing: what could not be loaded (a SEG not found, 2D coordinates without their image, ...).
        person_observers, device_observers: observer names.
        procedures: Procedure Reported codes.
        frame_of_reference_uids: of the SCOORD3D items.
        referenced_seg_uids: SOP Instance UIDs of the SEGs the groups reference.
        written: files written by :func:`write_sr_import`.
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


def _key(item: Dataset) -> Optional[Tuple[str, str]]:
    code = item.get("ConceptNameCodeSequence")
    if not code:
        return None
    return (str(code[0].get("CodeValue", "") or code[0].get("LongCodeValue", "") or code[0].get("URNCodeValue", "")),
            str(code[0].get("CodingSchemeDesignator", "")))


def _name(item: Dataset) -> Optional[Code]:
    sequence = item.get("ConceptNameCodeSequence")
    return code_of(sequence[0]) if sequence else None


def _value_code(item: Dataset) -> Optional[Code]:
    sequence = item.get("ConceptCodeSequence")
    return code_of(sequence[0]) if sequence else None


def _children(item: Dataset) -> list:
    return list(item.get("ContentSequence", []) or [])


def read_sr_dataset(path: PathLike) -> Dataset:
    """The SR dataset, checked to be an SR document whose root is a TID 1500 Measurement Report.

    Raises:
        InputError: not DICOM, not an SR, or an SR of another template (names the template/title).
    """
    path = Path(path)
    ds = read_dicom_file(path, "SR")
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


def import_sr(path: PathLike, series: Union[ReferenceSeries, PathLike, None] = None, *,
              seg_folders: Sequence[PathLike] = (), load_seg: bool = True,
              progress: Optional[ProgressCallback] = None) -> SrImport:
    """Read a TID 1500 SR: measurements, evaluations, coordinates as markups (LPS), and the SEG.

    Args:
        path: the SR file.
        series: the referenced image series (or a folder to find it in). Needed to place
            image-relative (2D SCOORD) coordinates and to put the SEG's segments on the series grid;
            without it, SCOORD3D coordinates are still read and the SEG is read on its own grid.
        seg_folders: folders searched (recursively) for the referenced SEG, besides the SR's folder.
        load_seg: read the referenced SEG(s) (False: only list them).

    Raises:
        InputError: not an SR, or an SR of another template.

    Missing pieces (a SEG not found, 2D coordinates whose image is absent) do not stop the import:
    they are listed in :attr:`SrImport.missing` and logged as warnings.
    """
    ds = read_sr_dataset(path)
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
    groups = [g for container in _children(ds) if _key(container) in _IMAGING_MEASUREMENTS
              for g in _children(container) if _key(g) in _MEASUREMENT_GROUP]
    parsed = [_parse_group(g, series, imported) for g in groups]
    for group in parsed:
        imported.records.extend(group["records"])
    imported.markups = _markups_from_groups(parsed)
    for group in parsed:  # records of markup groups name their markup
        for record in group["records"]:
            record.markup = group.get("markup", "")
    seg_uids = list(dict.fromkeys(g["seg_uid"] for g in parsed if g["seg_uid"]))
    imported.referenced_seg_uids = seg_uids
    if seg_uids and load_seg:
        _load_segs(ds, seg_uids, series, seg_folders, imported, progress)
    for message in imported.missing:
        log.warning("%s: %s", path, message)
    return imported


def _find_sr_series(ds: Dataset, folder: PathLike, imported: SrImport, progress) -> Optional[ReferenceSeries]:
    from ...core.errors import SeriesError
    from ...core.series import load_series

    wanted = [str(series.SeriesInstanceUID) for key in ("CurrentRequestedProcedureEvidenceSequence",
                                                        "PertinentOtherEvidenceSequence")
              for study in ds.get(key, []) or [] for series in study.get("ReferencedSeriesSequence", []) or []
              if not any(str(i.ReferencedSOPClassUID) in SEG_SOP_CLASSES for i in series.ReferencedSOPSequence)]
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
    info = {"tracking_id": "", "tracking_uid": "", "finding": None, "finding_site": None, "seg_uid": "",
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
                finding=info["finding"], finding_site=info["finding_site"], seg_sop_instance_uid=info["seg_uid"],
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
        if "FloatingPointValue" in m and m.FloatingPointValue is not None:
            value = float(m.FloatingPointValue)
        elif m.get("NumericValue") not in (None, ""):
            value = float(m.NumericValue)
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
    graphic = str(item.GraphicType).upper()
    data = np.asarray(item.GraphicData, dtype=np.float64)
    if str(item.ValueType) == "SCOORD3D":
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


def _load_segs(ds: Dataset, seg_uids: List[str], series, seg_folders, imported: SrImport, progress) -> None:
    from ..seg import import_seg

    folders = [Path(imported.path).resolve().parent] + [Path(f) for f in seg_folders]
    if series is not None:
        folders.append(Path(series.folder))
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


def _find_instances(uids: set, folders: Sequence[Path]) -> Dict[str, str]:
    """{SOP Instance UID: path} of the wanted instances below the folders."""
    found: Dict[str, str] = {}
    for folder in dict.fromkeys(folders):
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
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


def write_sr_import(imported: SrImport, out_dir: PathLike, force: bool = False) -> List[str]:
    """Write an imported SR into ``out_dir``: ``measurements.csv`` (always), ``markups.mrk.json``
    (LPS; when there are markups) and ``segmentation.seg.nrrd`` (``segmentation_N.seg.nrrd`` for
    several SEGs) for each SEG found. Returns the paths (also kept in ``imported.written``)."""
    from ...files.markups_io import write_markups
    from ...core.outputs import prepare_output_dir
    from ...files.segio import write_seg_nrrd

    out = prepare_output_dir(out_dir, force)
    written = [out / "measurements.csv"]
    write_measurements_csv(written[0], imported.records)
    if imported.markups:
        written.append(out / "markups.mrk.json")
        write_markups(written[-1], imported.markups)
    for n, seg_import in enumerate(imported.seg_imports, 1):
        written.append(out / ("segmentation.seg.nrrd" if len(imported.seg_imports) == 1
                              else f"segmentation_{n}.seg.nrrd"))
        write_seg_nrrd(written[-1], seg_import.segmentation)
    imported.written = [str(p) for p in written]
    return imported.written


def sr_summary(imported: SrImport) -> str:
    """One line about an imported SR, for the command line."""
    numeric = sum(1 for r in imported.records if r.kind == "numeric")
    return (f"{imported.sop_class}: {len(imported.records)} records ({numeric} measurements, "
            f"{len(imported.records) - numeric} evaluations), {len(imported.markups)} markups, "
            f"{len(imported.seg_imports)} of {len(imported.referenced_seg_uids)} referenced SEG(s) loaded")


__all__ = ["MeasurementRecord", "SrExportOptions", "SrExportResult", "SrImport", "apply_lidc_preset",
           "check_markup_inside", "export_sr", "import_sr", "lidc_numbers", "private_concept", "read_measurements_csv",
           "read_sr_dataset", "sr_summary", "write_measurements_csv", "write_sr_import"]
