"""RT Structure Set export (encode side): segments as CLOSED_PLANAR contours traced along the
pixel edges of each slice, markups as POINT, OPEN_PLANAR, OPEN_NONPLANAR or CLOSED_PLANAR contours.

Coordinates: LPS throughout, as in DICOM; each contour's points lie on its slice's plane, oblique
series included. The ROI Contour Sequence (most of the file) is encoded here as implicit VR
little endian bytes (pydicom would make a Python object per element of tens of thousands of
items); the rest of the dataset is built with pydicom. The file is implicit VR little endian,
as many RT systems write it: a Contour Data value may exceed the 64 KB an explicit VR DS holds.
"""
from __future__ import annotations

import datetime
import logging
import os
import struct
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import generate_uid

from ... import __version__
from ...core.ellipses import ELLIPSE, markup_ellipse, outline_points_lps
from ...core.errors import GeometryError, InputError
from ...core.model import Markup, Segment, Segmentation
from ...core.outputs import atomic_path, prepare_output_file
from ...core.progress import ProgressCallback, track
from ...core.series import ReferenceSeries
from ...dicom.values import long_string
from .common import (IMPLICIT_VR_LITTLE_ENDIAN, INTERPRETED_TYPE_ATTRIBUTE, INTERPRETED_TYPES, MARKUP_PREFIX,
                     RT_STRUCTURE_SET_STORAGE, DEFAULT_TOLERANCE_MM, RtStructExportOptions, RtStructExportResult)
from .contours import keyhole, trace_slices

log = logging.getLogger(__name__)

# Study attributes copied from the reference images (Patient and General Study modules).
_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
           "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
           "PatientAge", "PatientWeight", "PatientSize")
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")
#: Markup points within this distance (mm) of a plane are planar.
PLANAR_TOLERANCE_MM = 0.01
_DETACHED_STUDY = "1.2.840.10008.3.1.2.3.1"  # RT Referenced Study Sequence's Referenced SOP Class (as PS3.3 says)

# Tags of the ROI Contour Sequence, written as bytes.
_ROI_DISPLAY_COLOR, _CONTOUR_SEQUENCE, _REFERENCED_ROI_NUMBER = 0x3006002A, 0x30060040, 0x30060084
_CONTOUR_IMAGE_SEQUENCE, _GEOMETRIC_TYPE, _NUMBER_OF_POINTS = 0x30060016, 0x30060042, 0x30060046
_CONTOUR_NUMBER, _CONTOUR_DATA = 0x30060048, 0x30060050
_REF_SOP_CLASS, _REF_SOP_INSTANCE, _REF_FRAME = 0x00081150, 0x00081155, 0x00081160


def export_rtstruct(series: ReferenceSeries, segmentation: Optional[Segmentation], out: os.PathLike | str, *,
                    markups: Sequence[Markup] = (), options: Optional[RtStructExportOptions] = None,
                    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
                    progress: Optional[ProgressCallback] = None) -> RtStructExportResult:
    """Write segments (on the series grid) and markups (LPS) as one RT Structure Set referencing
    ``series``.

    Each non-empty segment becomes an ROI of CLOSED_PLANAR contours whose rasterisation (pixel
    centre inside, contours of a slice combined even-odd) is exactly its mask; holes are also
    joined to their surrounding contour by a zero-width cut (``options.keyhole``), so readers that
    unite the contours of a slice get them too. Overlapping segments are fine. Point lists become POINT contours (MARKER), lines, angles and open curves
    OPEN_PLANAR or OPEN_NONPLANAR, closed curves CLOSED_PLANAR (OPEN_NONPLANAR, closed by
    repeating the first point, when not planar; a closed curve marked as an ellipse is the
    ellipse sampled every 0.01 mm, :mod:`core.ellipses`); ROI and plane markups are skipped with a
    warning.

    Raises:
        InputError: nothing to export, an unknown interpreted type, a series without patient
            coordinates or Frame of Reference.
        GeometryError: the segmentation is not on the series grid.
        OutputError: the file cannot be written.
    """
    options = options or RtStructExportOptions()
    geometry = series.geometry
    if segmentation is not None and not segmentation.geometry.same_as(geometry):
        raise GeometryError("the segmentation is not on the series grid; resample it first "
                            "(api.load_annotations does)")
    if not geometry.in_patient_space:
        raise InputError("the series has no patient position and orientation: an RT Structure Set "
                         "holds contours in patient coordinates", series.folder)
    first = series.datasets[0]
    frame_of_reference = str(first.get("FrameOfReferenceUID", "") or "")
    if not frame_of_reference:
        raise InputError("the series has no Frame of Reference UID, which an RT Structure Set references",
                         series.files[0])
    for name, value in list(options.interpreted_types.items()) + [("default", options.interpreted_type)]:
        if str(value).upper() not in INTERPRETED_TYPES:
            raise InputError(f"unknown RT ROI Interpreted Type {value!r} for {name}; expected one of "
                             f"{', '.join(INTERPRETED_TYPES)}")
    result = RtStructExportResult()
    out = prepare_output_file(out)

    images = _image_references(series)
    rois: List[_Roi] = []
    if segmentation is not None:
        rois += _segment_rois(series, segmentation, options, images, result, progress)
    for markup in markups:
        roi = _markup_roi(series, markup, images, tolerance_mm)
        if roi is None:
            log.warning("markup %r: a %s has no contour form in an RT Structure Set and is skipped",
                        markup.name, markup.kind)
            result.skipped.append(markup.name)
        else:
            rois.append(roi)
    if not rois:
        raise InputError("nothing to export: no non-empty segment and no markup with a contour form")

    ds = _dataset(series, rois, options, frame_of_reference, images)
    result.series_instance_uid, result.sop_instance_uid = ds.SeriesInstanceUID, ds.SOPInstanceUID
    result.rois = [roi.name for roi in rois]
    result.contours = sum(len(roi.contours) for roi in rois)
    result.points = sum(len(points) for roi in rois for _, points, _ in roi.contours)
    with atomic_path(out) as tmp:
        ds.save_as(tmp, enforce_file_format=True, implicit_vr=True, little_endian=True)
    result.path = str(out)
    return result


class _Roi:
    """One ROI: its description and contours [(geometric type, (N, 3) LPS points, slice k or None)]."""

    def __init__(self, name, color, interpreted_type, code=None, terminology_text="", description="",
                 generation=""):
        self.name, self.color, self.interpreted_type = name, color, interpreted_type
        self.code, self.terminology_text, self.description, self.generation = \
            code, terminology_text, description, generation
        self.contours: List[Tuple[str, np.ndarray, Optional[int]]] = []


def _interpreted_type(segment: Segment, options: RtStructExportOptions) -> str:
    for key in (segment.name, segment.id):
        if key in options.interpreted_types:
            return str(options.interpreted_types[key]).upper()
    value = segment.attributes.get(INTERPRETED_TYPE_ATTRIBUTE, "")
    return value.upper() if value.upper() in INTERPRETED_TYPES else options.interpreted_type.upper()


def _segment_rois(series, segmentation, options, images, result, progress) -> List[_Roi]:
    from scipy import ndimage

    geometry = series.geometry
    boxes: Dict[Tuple[int, int], tuple] = {}
    for layer in sorted({s.layer for s in segmentation.segments}):
        labels = segmentation.layers[layer]
        found = ndimage.find_objects(labels if labels.dtype.kind in "iu" else labels.astype(np.int32))
        for value, box in enumerate(found, 1):
            if box is not None:
                boxes[(layer, value)] = box
    rois = []
    for segment in track(segmentation.segments, progress, "Tracing contours"):
        box = boxes.get((segment.layer, segment.label_value))
        if box is None:
            log.warning("segment %r is empty and is skipped", segment.name)
            result.skipped.append(segment.name)
            continue
        mask = segmentation.layers[segment.layer][box] == segment.label_value
        k0, r0, c0 = (b.start for b in box)
        terminology = segment.terminology
        roi = _Roi(segment.name, segment.color_rgb8, _interpreted_type(segment, options),
                   code=terminology.type if terminology else None,
                   terminology_text=terminology.to_slicer_string() if terminology else "",
                   description=segment.description)
        by_slice: Dict[int, List[np.ndarray]] = {}
        for k, points in trace_slices(mask):
            by_slice.setdefault(k, []).append(points)
        loops = [(k, polygon) for k, rings in by_slice.items()
                 for polygon in (keyhole(rings) if options.keyhole else rings)]
        for k, points in loops:
            k = k + k0
            ijk = np.column_stack([points[:, 0] + c0, points[:, 1] + r0, np.full(len(points), float(k))])
            roi.contours.append(("CLOSED_PLANAR", geometry.ijk_to_lps_points(ijk), k))
        rois.append(roi)
    return rois


def _markup_roi(series: ReferenceSeries, markup: Markup, images, tolerance_mm: float) -> Optional[_Roi]:
    if markup.kind in ("roi", "plane") or len(markup.points_lps) == 0:
        return None
    color = tuple(int(round(c * 255)) for c in markup.color)
    points = markup.points_lps
    if markup.kind == "point_list":
        roi = _Roi(markup.name, color, "MARKER", description=markup.description,
                   generation=MARKUP_PREFIX + markup.kind)
        for point in points:
            roi.contours.append(("POINT", point[None], _slice_of(series, point[None], tolerance_mm)))
        return roi
    ellipse = markup_ellipse(markup) is not None  # the ellipse, densely sampled; the import takes its axis ends
    roi = _Roi(markup.name, color, "", description=markup.description,
               generation=MARKUP_PREFIX + markup.kind + (" " + ELLIPSE if ellipse else ""))
    points = outline_points_lps(markup)
    planar = _is_planar(points)
    if markup.kind == "closed_curve":
        kind = "CLOSED_PLANAR" if planar else "OPEN_NONPLANAR"
        if not planar:
            points = np.vstack([points, points[:1]])
    else:
        kind = "OPEN_PLANAR" if planar else "OPEN_NONPLANAR"
    roi.contours.append((kind, points, _slice_of(series, points, tolerance_mm)))
    return roi


def _is_planar(points: np.ndarray) -> bool:
    if len(points) <= 3:
        return True
    centred = points - points.mean(axis=0)
    normal = np.linalg.svd(centred, full_matrices=False)[2][-1]
    return bool(np.max(np.abs(centred @ normal)) <= PLANAR_TOLERANCE_MM)


def _slice_of(series: ReferenceSeries, points: np.ndarray, tolerance_mm: float) -> Optional[int]:
    """The slice all ``points`` lie on (within the tolerance), or None."""
    geometry = series.geometry
    k = geometry.lps_to_ijk_points(points)[:, 2]
    nearest = int(np.round(k.mean()))
    if not 0 <= nearest < geometry.shape[0]:
        return None
    if np.max(np.abs(k - nearest)) * geometry.spacing[2] > tolerance_mm:
        return None
    return nearest


# --- the dataset --------------------------------------------------------------------------------

def _image_references(series: ReferenceSeries) -> List[Dataset]:
    """One Contour Image item per slice k."""
    items = []
    for ref in series.slices:
        source = series.datasets[ref.file_index]
        item = Dataset()
        item.ReferencedSOPClassUID = source.SOPClassUID
        item.ReferencedSOPInstanceUID = ref.sop_instance_uid
        if int(source.get("NumberOfFrames", 1) or 1) > 1:
            item.ReferencedFrameNumber = ref.frame + 1
        items.append(item)
    return items


def _dataset(series: ReferenceSeries, rois: List[_Roi], options: RtStructExportOptions,
             frame_of_reference: str, images: List[Dataset]) -> Dataset:
    source = series.datasets[0]
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds = Dataset()
    texts = [text for roi in rois for text in (roi.name, roi.description, roi.terminology_text)] + [
        options.structure_set_label, options.structure_set_name, options.series_description,
        options.roi_interpreter, options.operators_name]
    copied = {keyword: source.get(keyword) for keyword in _COPIED if keyword in source}
    source_charset = source.get("SpecificCharacterSet")
    if any(not str(t).isascii() for t in texts) or (source_charset and source_charset != "ISO_IR 100"
                                                      and any(not str(v).isascii() for v in copied.values())):
        ds.SpecificCharacterSet = "ISO_IR 192"
    elif source_charset:
        ds.SpecificCharacterSet = source_charset
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = generate_uid()
    for keyword in _TYPE2:
        setattr(ds, keyword, "")
    for keyword, value in copied.items():
        setattr(ds, keyword, value)
    if "StudyInstanceUID" not in ds:
        raise InputError("the series has no Study Instance UID", series.files[0])
    ds.Modality = "RTSTRUCT"
    ds.Manufacturer = options.manufacturer
    ds.SeriesDescription = long_string(options.series_description)
    ds.OperatorsName = options.operators_name
    ds.SoftwareVersions = __version__
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = frame_of_reference  # Frame of Reference module (in the IOD since 2021)
    ds.PositionReferenceIndicator = source.get("PositionReferenceIndicator", "") or ""
    ds.SeriesNumber = options.series_number
    ds.InstanceNumber = options.instance_number
    ds.StructureSetLabel = long_string(options.structure_set_label or "Annotations")[:16]
    if options.structure_set_name:
        ds.StructureSetName = long_string(options.structure_set_name)
    ds.StructureSetDate, ds.StructureSetTime = date, time

    referenced_series = Dataset()
    referenced_series.SeriesInstanceUID = series.series_instance_uid
    referenced_series.ContourImageSequence = images
    study = Dataset()
    study.ReferencedSOPClassUID = _DETACHED_STUDY
    study.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    study.RTReferencedSeriesSequence = [referenced_series]
    frame = Dataset()
    frame.FrameOfReferenceUID = frame_of_reference
    frame.RTReferencedStudySequence = [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]

    structure_items, observation_items = [], []
    for number, roi in enumerate(rois, 1):
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = frame_of_reference
        item.ROIName = long_string(roi.name)
        if roi.description:
            item.ROIDescription = roi.description
        item.ROIGenerationAlgorithm = ""
        if roi.generation:
            item.ROIGenerationDescription = long_string(roi.generation)
        structure_items.append(item)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        if roi.terminology_text:
            observation.ROIObservationDescription = roi.terminology_text
        observation.RTROIInterpretedType = roi.interpreted_type
        observation.ROIInterpreter = options.roi_interpreter
        if roi.code is not None:
            code = Dataset()
            code.CodeValue = roi.code.value
            code.CodingSchemeDesignator = roi.code.scheme
            code.CodeMeaning = long_string(roi.code.meaning or roi.code.value)
            observation.RTROIIdentificationCodeSequence = [code]
        observation_items.append(observation)
    ds.StructureSetROISequence = structure_items
    value = _roi_contour_bytes(rois, images)  # ROI Contour Sequence, already encoded
    ds[0x30060039] = RawDataElement(Tag(0x30060039), "SQ", len(value), value, 0, True, True)
    ds.RTROIObservationsSequence = observation_items

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = IMPLICIT_VR_LITTLE_ENDIAN
    return ds


# --- the ROI Contour Sequence as implicit VR little endian bytes ----------------------------------

def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _item(body: bytes) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def _text(value: str, pad: bytes = b" ") -> bytes:
    data = value.encode("ascii")
    return data + pad if len(data) % 2 else data


def _decimal_string(points: np.ndarray) -> bytes:
    """Contour Data: 'x\\y\\z\\...' with 3 decimals (micrometres), even length."""
    flat = np.asarray(points, dtype=float).reshape(-1)
    flat = np.where(np.abs(flat) < 5e-4, 0.0, flat)  # no '-0.000'
    text = (("%.3f\\" * flat.size) % tuple(flat.tolist()))[:-1]
    return _text(text)


def _roi_contour_bytes(rois: List[_Roi], images: List[Dataset]) -> bytes:
    image_items: Dict[int, bytes] = {}

    def image_item(k: int) -> bytes:
        if k not in image_items:
            reference = images[k]
            body = _element(_REF_SOP_CLASS, _text(str(reference.ReferencedSOPClassUID), b"\0"))
            body += _element(_REF_SOP_INSTANCE, _text(str(reference.ReferencedSOPInstanceUID), b"\0"))
            if "ReferencedFrameNumber" in reference:
                body += _element(_REF_FRAME, _text(str(reference.ReferencedFrameNumber)))
            image_items[k] = _element(_CONTOUR_IMAGE_SEQUENCE, _item(body))
        return image_items[k]

    out = []
    for number, roi in enumerate(rois, 1):
        contours = []
        for index, (kind, points, k) in enumerate(roi.contours, 1):
            body = image_item(k) if k is not None else b""
            body += _element(_GEOMETRIC_TYPE, _text(kind))
            body += _element(_NUMBER_OF_POINTS, _text(str(len(points))))
            body += _element(_CONTOUR_NUMBER, _text(str(index)))
            body += _element(_CONTOUR_DATA, _decimal_string(points))
            contours.append(_item(body))
        body = _element(_ROI_DISPLAY_COLOR, _text("\\".join(str(int(c)) for c in roi.color)))
        body += _element(_CONTOUR_SEQUENCE, b"".join(contours))
        body += _element(_REFERENCED_ROI_NUMBER, _text(str(number)))
        out.append(_item(body))
    return b"".join(out)
