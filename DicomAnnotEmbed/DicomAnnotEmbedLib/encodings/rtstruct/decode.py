"""RT Structure Set import (decode side): any RTSTRUCT (ours, plastimatch's, rt-utils', ...)
onto the grid of its referenced series.

CLOSED_PLANAR contours become segment voxels: a pixel belongs to the ROI when its centre is
inside, the contours of one slice combined by the even-odd rule (holes and islands). POINT
contours become point-list markups, OPEN_PLANAR / OPEN_NONPLANAR contours lines or curves (and
the markups we wrote come back as the kind they were). Contours off the slices (beyond the
tolerance), off the image, or of unknown geometric types are skipped with one warning per ROI.

Coordinates: LPS throughout, as in DICOM.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from ...core.ellipses import ELLIPSE, is_ellipse
from ...core.errors import InputError, SeriesError
from ...core.headers import header_int
from ...core.inputs import read_dicom_file, reading
from ...core.model import (AnnotationSet, Code, DEFAULT_TERMINOLOGY, Markup, Segment, Segmentation, Terminology)
from ...core.progress import ProgressCallback, track
from ...core.rasterize import polyline_mask
from ...core.series import ReferenceSeries, load_series
from ...dicom import raw
from ...dicom.values import code_of
from .common import (DEFAULT_TOLERANCE_MM, GEOMETRIC_TYPES, INTERPRETED_TYPE_ATTRIBUTE, MARKUP_PREFIX,
                     RT_STRUCTURE_SET_STORAGE, RtStructImport)
from .contours import fill_boxes

#: Values of ``boundary_pixels``.
BOUNDARY_PIXELS = ("auto", "include", "exclude")
#: A vertex within this many pixels of a pixel centre lies on it.
CENTRE_TOLERANCE_PIXELS = 1e-3

log = logging.getLogger(__name__)

_ANATOMY = Code("123037004", "SCT", "Anatomical Structure")
_ALTERED = Code("49755003", "SCT", "Morphologically Altered Structure")
_ANATOMIC_TYPES = {"ORGAN", "OAR", "EXTERNAL", "AVOIDANCE", "CAVITY"}
_LESION_TYPES = {"GTV", "CTV", "PTV"}


def read_rtstruct_dataset(path: os.PathLike | str) -> Dataset:
    """The RTSTRUCT dataset, checked to be one.

    Raises:
        InputError: not DICOM, or not an RT Structure Set.
    """
    ds = read_dicom_file(path, "RTSTRUCT")
    sop_class = str(getattr(ds, "SOPClassUID", ""))
    if sop_class != RT_STRUCTURE_SET_STORAGE:
        raise InputError(f"not an RT Structure Set (SOP Class UID {sop_class or 'missing'}, Modality "
                         f"{getattr(ds, 'Modality', '?')})", path)
    if "StructureSetROISequence" not in ds:
        raise InputError("RT Structure Set has no Structure Set ROI Sequence (truncated or incomplete file)", path)
    return ds


def referenced_series_uid(ds: Dataset) -> Tuple[str, str]:
    """(Series Instance UID, Frame of Reference UID) the structure set refers to ('' when absent)."""
    for frame in ds.get("ReferencedFrameOfReferenceSequence", None) or []:
        for study in frame.get("RTReferencedStudySequence", None) or []:
            for series in study.get("RTReferencedSeriesSequence", None) or []:
                if series.get("SeriesInstanceUID"):
                    return str(series.SeriesInstanceUID), str(frame.get("FrameOfReferenceUID", ""))
        if frame.get("FrameOfReferenceUID"):
            return "", str(frame.FrameOfReferenceUID)
    return "", ""


def import_rtstruct(path: os.PathLike | str, series: Union[ReferenceSeries, os.PathLike, str, None] = None, *,
                    tolerance_mm: float = DEFAULT_TOLERANCE_MM, boundary_pixels: str = "auto",
                    progress: Optional[ProgressCallback] = None) -> RtStructImport:
    """Read an RT Structure Set into segments and markups on its referenced series' grid.

    Args:
        path: the RTSTRUCT file.
        series: the referenced series, a folder to find it in (by the referenced Series Instance
            UID), or None: then it is searched for in the RTSTRUCT's own folder.
        tolerance_mm: a contour lies on slice k when all its points are this close to the plane.
        boundary_pixels: the pixels a closed contour passes through (Bresenham between its vertices)
            are added to the centre-inside fill: "include" always, "exclude" never, "auto" (default)
            where a contour passes exactly through pixel centres: the whole outline of a contour
            whose vertices all lie on centres (rt-utils and OpenCV's findContours trace the centres
            of the boundary pixels, which they mean to belong), and sides that run along a row or
            column of centres (plastimatch's contours at the image border). Contours along pixel
            edges (ours) or between centres (plastimatch's elsewhere) pass through no centre.

    Raises:
        InputError: not an RTSTRUCT; the referenced series is not found; no contour lies on the
            series.
    """
    if boundary_pixels not in BOUNDARY_PIXELS:
        raise InputError(f"boundary pixels must be one of {', '.join(BOUNDARY_PIXELS)}, got {boundary_pixels!r}")
    # pydicom decodes elements when first used: decoding errors anywhere below name the file.
    with reading(path, "the RTSTRUCT"):
        return _import_rtstruct(path, series, tolerance_mm, boundary_pixels, progress)


def _import_rtstruct(path, series, tolerance_mm: float, boundary_pixels: str, progress) -> RtStructImport:
    ds = read_rtstruct_dataset(path)
    path = str(path)
    series_uid, frame_uid = referenced_series_uid(ds)
    if not isinstance(series, ReferenceSeries):
        series = _find_series(series, series_uid, path, progress)
    geometry = series.geometry
    series_frame = str(series.datasets[0].get("FrameOfReferenceUID", "") or "")
    if frame_uid and series_frame and frame_uid != series_frame:
        log.warning("%s: the structure set's Frame of Reference %s is not the series' %s; the contours are "
                    "placed by their coordinates all the same", path, frame_uid, series_frame)

    observations = {}
    for item in ds.get("RTROIObservationsSequence", None) or []:
        if "ReferencedROINumber" in item:
            observations.setdefault(header_int(item, "ReferencedROINumber", path=path), item)
    contours_of = _roi_contours(ds)

    result = RtStructImport(annotations=AnnotationSet(geometry), path=path, referenced_series_uid=series_uid,
                            frame_of_reference_uid=frame_uid, series=series)
    builder = _LayerBuilder(geometry.shape)
    segments: List[Segment] = []
    used_ids = set()
    total_on = 0
    for roi in track(list(ds.StructureSetROISequence), progress, "Filling contours"):
        number = header_int(roi, "ROINumber", 0, path=path)
        name = str(roi.get("ROIName", "") or f"ROI {number}")
        contour_item = contours_of.get(number)
        if contour_item is None or not contour_item[1]:
            log.warning("%s: ROI %r has no contours and is skipped", path, name)
            result.skipped.append(f"{name}: no contours")
            continue
        color = _color(contour_item[0])
        observation = observations.get(number)
        interpreted = str(observation.get("RTROIInterpretedType", "") or "") if observation else ""
        generation = str(roi.get("ROIGenerationDescription", "") or "")
        markup_kind = generation[len(MARKUP_PREFIX):] if generation.startswith(MARKUP_PREFIX) else ""
        markup_kind, _, shape = markup_kind.partition(" ")
        closed, points, opened, problems = _read_contours(contour_item[1], geometry, tolerance_mm,
                                                          boundary_pixels)
        total_on += len(closed) + len(points) + len(opened)
        if problems:
            message = f"ROI {name!r}: " + "; ".join(f"{count} {what}" for what, count in problems.items()) + \
                      " skipped"
            log.warning("%s: %s", path, message)
            result.skipped.append(message)
        result.interpreted_types[name] = interpreted
        if markup_kind == "closed_curve" and closed:
            for n, (_, _, lps) in enumerate(closed):
                ends = _axis_ends(lps) if shape == ELLIPSE else None  # our sampled ellipse: its axis ends
                result.annotations.markups.append(Markup("closed_curve", _numbered(name, n, len(closed)),
                                                         lps if ends is None else ends, color=color,
                                                         shape=None if ends is None else ELLIPSE))
            closed = []
        if closed:
            top, left, planes = fill_boxes(geometry.shape[1:], [(k, cr) for k, cr, _ in closed])
            _add_boundary_pixels(planes, top, left, closed, boundary_pixels)
            segment_id = _unique(name, used_ids)
            segment = Segment(id=segment_id, name=name, color=color,
                              terminology=_terminology(observation, interpreted),
                              description=str(roi.get("ROIDescription", "") or ""),
                              attributes={INTERPRETED_TYPE_ATTRIBUTE: interpreted} if interpreted else {})
            if any(box.any() for box in planes.values()):
                builder.add(segment, top, left, planes)
                segments.append(segment)
            else:
                log.warning("%s: ROI %r covers no pixel centre of the series and is skipped", path, name)
                result.skipped.append(f"{name}: covers no pixel centre")
        if points:
            result.annotations.markups.append(Markup("point_list", name, np.array(points), color=color))
        for n, lps in enumerate(opened):
            kind = markup_kind if markup_kind in ("line", "angle", "curve") else ("line" if len(lps) == 2 else "curve")
            if markup_kind == "closed_curve":  # written open (not planar) with the first point repeated
                kind, lps = "closed_curve", lps[:-1] if len(lps) > 3 and np.allclose(lps[0], lps[-1]) else lps
            if kind == "angle" and len(lps) != 3:
                kind = "curve"
            if len(lps) < 2:
                continue
            result.annotations.markups.append(Markup(kind, _numbered(name, n, len(opened)), lps, color=color))
    if total_on == 0:
        raise InputError(f"no contour of the structure set lies on the series {series.series_instance_uid} "
                         f"({geometry.describe()}) within {tolerance_mm} mm: " + "; ".join(result.skipped), path)
    if segments:
        result.annotations.segmentation = Segmentation(geometry, builder.layers(), segments)
    return result


def _add_boundary_pixels(planes: Dict[int, np.ndarray], top: int, left: int, closed, mode: str) -> None:
    """Pixels whose centres a contour passes through, added to the fill (see ``boundary_pixels``):
    for "auto", the whole outline of a contour whose vertices all lie on pixel centres (rt-utils,
    OpenCV), and the sides of other contours that run along a row or column of centres
    (plastimatch clamps its contours to the outermost centres at the image border)."""
    if mode == "exclude":
        return
    offset = np.array([left, top], dtype=float)
    for k, cr, _ in closed:
        local = cr - offset
        if mode == "include" or _on_centres(cr):
            planes[k] |= polyline_mask(planes[k].shape, local, closed=True)
            continue
        following = np.roll(cr, -1, axis=0)
        on_line = np.abs(cr - np.round(cr)) < CENTRE_TOLERANCE_PIXELS
        along = ((np.abs(cr[:, 0] - following[:, 0]) < CENTRE_TOLERANCE_PIXELS) & on_line[:, 0]) | (
            (np.abs(cr[:, 1] - following[:, 1]) < CENTRE_TOLERANCE_PIXELS) & on_line[:, 1])
        plane = planes[k]
        for n in np.flatnonzero(along):  # sides, not pixels: few per contour
            (x0, y0), (x1, y1) = local[n], local[(n + 1) % len(local)]
            # exactly the centres on the side (its ends may lie between centres)
            cols = np.arange(np.ceil(min(x0, x1) - CENTRE_TOLERANCE_PIXELS),
                             np.floor(max(x0, x1) + CENTRE_TOLERANCE_PIXELS) + 1).astype(np.int64)
            rows = np.arange(np.ceil(min(y0, y1) - CENTRE_TOLERANCE_PIXELS),
                             np.floor(max(y0, y1) + CENTRE_TOLERANCE_PIXELS) + 1).astype(np.int64)
            cols = cols[(cols >= 0) & (cols < plane.shape[1])]
            rows = rows[(rows >= 0) & (rows < plane.shape[0])]
            plane[np.ix_(rows, cols)] = True


def _on_centres(cr: np.ndarray) -> bool:
    """Whether every vertex lies on a pixel centre (a contour traced through boundary pixels; one
    or two such vertices are a pixel or a row of pixels, as OpenCV traces them)."""
    return bool(np.all(np.abs(cr - np.round(cr)) < CENTRE_TOLERANCE_PIXELS))


def _axis_ends(lps: np.ndarray) -> Optional[np.ndarray]:
    """The 4 axis ends of an ellipse we wrote as its samples (a multiple of 4, the axis ends at 0,
    n/2, n/4 and 3n/4); None when the contour is not that."""
    n = len(lps)
    ends = lps[[0, n // 2, n // 4, 3 * n // 4]] if n >= 8 and n % 4 == 0 else None
    return ends if ends is not None and is_ellipse(ends) else None


def _numbered(name: str, index: int, count: int) -> str:
    return name if count == 1 else f"{name} {index + 1}"


def _unique(name: str, used: set) -> str:
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{name}_{n}"
    used.add(candidate)
    return candidate


def _color(value) -> Tuple[float, float, float]:
    try:
        rgb = [min(max(int(v), 0), 255) / 255.0 for v in value]
        if len(rgb) == 3:
            return tuple(rgb)
    except (TypeError, ValueError):
        pass
    return (0.5, 0.5, 0.5)


def _terminology(observation: Optional[Dataset], interpreted: str) -> Optional[Terminology]:
    if observation is None:
        return None
    codes = observation.get("RTROIIdentificationCodeSequence")
    code = code_of(codes[0]) if codes else None
    text = str(observation.get("ROIObservationDescription", "") or "")
    if "~" in text:  # ours: Slicer's terminology entry, kept where it agrees with the code
        terminology = Terminology.from_slicer_string(text)
        if terminology is not None and (code is None or (terminology.type.value, terminology.type.scheme)
                                        == (code.value, code.scheme)):
            return terminology
    if code is None:
        return None
    category = _ANATOMY if interpreted in _ANATOMIC_TYPES else (
        _ALTERED if interpreted in _LESION_TYPES else DEFAULT_TERMINOLOGY.category)
    return Terminology(category=category, type=code)


def _roi_contours(ds: Dataset) -> Dict[int, Tuple[Optional[list], List[Tuple[str, Optional[np.ndarray]]]]]:
    """{ROI number: (display colour values or None, [(geometric type, (N, 3) LPS or None)])} of the
    ROI Contour Sequence. Read from its raw bytes (:mod:`dicom.raw`) when pydicom left it unparsed
    (a defined-length sequence in a little endian file): pydicom makes a dataset per contour and
    converts every Contour Data value to a list of DSfloat objects (most of a large file's import)."""
    element = ds.get_item(0x30060039)
    if element is None:
        return {}
    if isinstance(element, RawDataElement) and isinstance(element.value, (bytes, bytearray)) \
            and element.is_little_endian:
        try:
            items = raw.parse_sequence(element.value, implicit_vr=element.is_implicit_VR,
                                       descend={0x30060039, 0x30060040})
            return _raw_roi_contours(items)
        except (raw.RawParseError, ValueError, UnicodeDecodeError):
            pass  # read by pydicom below
    result = {}
    for item in ds.get("ROIContourSequence", None) or []:
        if "ReferencedROINumber" not in item:
            continue
        contours = [(str(c.get("ContourGeometricType", "") or "").upper(), _decimals(_contour_data(c)))
                    for c in item.get("ContourSequence", None) or []]
        result[header_int(item, "ReferencedROINumber")] = (item.get("ROIDisplayColor"), contours)
    return result


def _raw_roi_contours(items) -> Dict[int, Tuple[Optional[list], List[Tuple[str, Optional[np.ndarray]]]]]:
    result = {}
    for item in items:
        number = raw.is_value(item.get(0x30060084))
        if number is None:
            continue
        color = item.get(0x3006002A)
        color = color.decode("ascii", "replace").strip(" \x00").split("\\") if isinstance(color, bytes) else None
        contours = []
        for contour in item.get(0x30060040) or []:
            kind = contour.get(0x30060042)
            kind = kind.decode("ascii", "replace").strip(" \x00").upper() if isinstance(kind, bytes) else ""
            data = contour.get(0x30060050)
            contours.append((kind, _decimals(data.decode("ascii", "replace") if isinstance(data, bytes) else None)))
        result[number] = (color, contours)
    return result


def _contour_data(contour: Dataset):
    """Contour Data of a parsed item: its text while pydicom has not converted it (the sequence
    was parsed, as pydicom does for undefined lengths, but its values stay raw until used)."""
    element = contour.get_item(0x30060050)
    if isinstance(element, RawDataElement) and isinstance(element.value, (bytes, bytearray)):
        return bytes(element.value).decode("ascii", "replace")
    return contour.get("ContourData")


def _decimals(value) -> Optional[np.ndarray]:
    """Contour Data (a DS text or pydicom's values) as (N, 3) floats, or None when unusable."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            numbers = np.array(value.replace("\\", " ").split(), dtype=float)
        else:
            numbers = np.array([float(v) for v in (value if hasattr(value, "__iter__") else [value])], dtype=float)
    except (TypeError, ValueError):
        return None
    if numbers.size == 0 or numbers.size % 3 or not np.all(np.isfinite(numbers)):
        return None
    return numbers.reshape(-1, 3)


def _read_contours(contours, geometry, tolerance_mm: float, boundary_pixels: str):
    """(closed [(k, (N, 2) column-row, (N, 3) LPS)], points [(3,) LPS], open [(N, 3) LPS], problems {what: count})."""
    closed, points, opened = [], [], []
    problems: Dict[str, int] = {}

    def problem(what):
        problems[what] = problems.get(what, 0) + 1

    slice_gap = float(geometry.spacing[2])
    inverse = np.linalg.inv(geometry.ijk_to_lps)
    for kind, lps in contours:
        if lps is None:
            problem("contours without readable Contour Data")
            continue
        if kind not in GEOMETRIC_TYPES:
            problem(f"contours of unknown geometric type {kind or '(none)'}")
            continue
        if kind == "POINT":
            points.extend(lps)
            continue
        if kind not in ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR"):
            opened.append(lps)
            continue
        ijk = lps @ inverse[:3, :3].T + inverse[:3, 3]
        if len(lps) < 3 and not (boundary_pixels == "include" or (
                boundary_pixels == "auto" and _on_centres(ijk[:, :2]))):
            problem("closed contours of fewer than 3 points (not on pixel centres)")
            continue
        k = int(np.round(ijk[:, 2].mean()))
        if np.max(np.abs(ijk[:, 2] - k)) * slice_gap > tolerance_mm:
            problem(f"contours not on a slice plane of the series (beyond {tolerance_mm} mm)")
            continue
        if not 0 <= k < geometry.shape[0]:
            problem("contours beyond the first or last slice")
            continue
        closed.append((k, ijk[:, :2], lps))
    return closed, points, opened, problems


class _LayerBuilder:
    """Segments placed into label layers as Slicer stores them: each in the first layer where
    it overlaps nothing (checked on each slice's box only)."""

    def __init__(self, shape):
        self.shape = shape
        self._layers: List[np.ndarray] = []
        self._next: List[int] = []

    def add(self, segment: Segment, top: int, left: int, planes: Dict[int, np.ndarray]) -> None:
        """Place a segment given as boxes of its slices ({k: box}, each at ``top``, ``left``)."""
        boxes = {}
        for k, plane in planes.items():
            rows = np.flatnonzero(plane.any(axis=1))
            if rows.size == 0:
                continue
            cols = np.flatnonzero(plane[rows[0]:rows[-1] + 1].any(axis=0))
            crop = plane[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            box = (slice(top + int(rows[0]), top + int(rows[-1]) + 1),
                   slice(left + int(cols[0]), left + int(cols[-1]) + 1))
            boxes[k] = (box, crop)
        for layer, labels in enumerate(self._layers):
            if self._next[layer] <= 65535 and not any(labels[k][box][crop].any()
                                                      for k, (box, crop) in boxes.items()):
                break
        else:
            self._layers.append(np.zeros(self.shape, np.uint8))
            self._next.append(1)
            layer = len(self._layers) - 1
        value = self._next[layer]
        if value > 255 and self._layers[layer].dtype == np.uint8:
            self._layers[layer] = self._layers[layer].astype(np.uint16)
        labels = self._layers[layer]
        for k, (box, crop) in boxes.items():
            labels[k][box][crop] = value
        segment.layer, segment.label_value = layer, value
        self._next[layer] = value + 1

    def layers(self) -> np.ndarray:
        if not self._layers:
            return np.zeros((0,) + tuple(self.shape), np.uint8)
        if len(self._layers) == 1:
            return self._layers[0][np.newaxis]
        dtype = np.result_type(*self._layers)
        return np.stack([layer.astype(dtype, copy=False) for layer in self._layers])


def _find_series(folder, uid: str, path: str, progress) -> ReferenceSeries:
    searched = folder if folder is not None else Path(path).parent
    try:
        return load_series(searched, uid or None, progress)
    except SeriesError as exc:
        if folder is None:
            raise InputError(f"the referenced series {uid or '(none named)'} is not beside the structure set "
                             f"({exc.problem}); give the series folder (--series DIR)", path) from None
        if not uid or "not found" not in exc.problem:
            raise
    log.warning("%s: the referenced series %s is not in %s; using the image series found there", path, uid, folder)
    return load_series(folder, None, progress)
