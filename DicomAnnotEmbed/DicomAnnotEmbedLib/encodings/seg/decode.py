"""DICOM SEG import (decode side); see the package docstring.

Coordinates: LPS throughout, as in DICOM.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from pydicom.dataset import Dataset

from ...dicom import raw
from ...core import arrays
from ...core.errors import GeometryError, InputError
from ...dicom.values import code_of
from ...core.headers import first_item, header_float, header_floats, header_int, header_value
from ...core.inputs import check_sequences, reading, sequence_items
from ...core.geometry import VolumeGeometry
from ...core.model import Code, FractionPlanes, Segment, Segmentation, Terminology, _default_color, present_labels
from ...core.progress import ProgressCallback
from ...core.series import ReferenceSeries, image_size
from .read_pixels import FrameDecoder, read_seg_file, read_whole
from .common import (LABEL_MAP_SEGMENTATION_STORAGE, _DERIVATION_IMAGE, _IMAGE_POSITION, _PER_FRAME,
                     _PLANE_POSITION, _SEGMENT_IDENTIFICATION, _SEGMENT_NUMBER)

log = logging.getLogger(__name__)


@dataclass
class SegImport:
    """A SEG read back.

    Attributes:
        segmentation: segments on the grid of ``series`` when given, else on the SEG's own
            frame geometry (LPS). FRACTIONAL values are in ``segmentation.fractions``.
        seg_type: "binary", "fractional" or "labelmap".
        fractional_type: "PROBABILITY" / "OCCUPANCY" for FRACTIONAL, else "".
        series: the reference series used, or None.
        referenced_series_uid: the series the SEG says it was drawn on.
        segment_numbers: {segment id: Segment Number in the file}.
        path: the file.
    """

    segmentation: Segmentation
    seg_type: str
    fractional_type: str
    series: Optional[ReferenceSeries]
    referenced_series_uid: str
    segment_numbers: Dict[str, int]
    path: str


@dataclass
class _FrameInfo:
    segment_number: Optional[int]
    position: Optional[np.ndarray]
    source_uid: Optional[str]
    source_frame: Optional[int]


def read_seg_dataset(path: os.PathLike | str) -> Dataset:
    """The SEG dataset (pixel data included), checked to be a SEG.

    Raises:
        InputError: not DICOM, not a SEG, or truncated.
    """
    return read_whole(path)


def import_seg(path: os.PathLike | str, series: Union[ReferenceSeries, os.PathLike, str, None] = None,
               progress: Optional[ProgressCallback] = None) -> SegImport:
    """Read a DICOM SEG (BINARY, FRACTIONAL or LABELMAP, from any writer) into segments.

    Args:
        path: the SEG file.
        series: the reference series, or a folder to find it in (by the SEG's referenced
            Series Instance UID), or None: then the segments lie on the SEG's own frame grid.
        progress: progress callback.

    Raises:
        InputError: not a SEG, truncated, frames that do not lie on a regular grid, or a tiled
            (slide microscopy) SEG: tiles of one 2D slide, not a radiology volume.
        GeometryError: the SEG does not lie on the given series.
    """
    # pydicom decodes elements when first used: decoding errors anywhere below name the file.
    with reading(path, "the SEG"):
        return _import_seg(path, series, progress)


def _import_seg(path, series, progress) -> SegImport:
    ds, native_pixels = read_seg_file(path)
    path = str(path)
    image_size(ds)  # Number of Frames, Rows, Columns, Bits Allocated checked against the file size
    _refuse_tiled(ds, path)
    referenced_uid = _referenced_series_uid(ds)
    if series is not None and not isinstance(series, ReferenceSeries):
        series = _find_series(series, referenced_uid, path, progress)
    seg_type = _seg_type(ds)
    segments, numbers = _described_segments(ds, path, seg_type)
    frames = _frame_infos(ds, path)
    own = _own_geometry(ds, frames, path)
    geometry = own if series is None else series.geometry
    slice_of_frame = _map_frames(frames, geometry, series, path, own)
    outside = [i + 1 for i, k in enumerate(slice_of_frame) if not 0 <= k < geometry.shape[0]]
    if outside:
        raise InputError(f"{len(outside)} frames (first: frame {outside[0]}) fall outside the "
                         f"{geometry.shape[0]} slices of the grid", path)

    decoder = FrameDecoder(ds, path, native_pixels)
    if (decoder.rows, decoder.columns) != tuple(geometry.shape[1:]):
        raise GeometryError(f"SEG frames of {decoder.rows}x{decoder.columns} pixels do not match the grid "
                            f"({geometry.describe()})", path)
    if seg_type == "LABELMAP":
        segmentation = _labelmap_segmentation(decoder, slice_of_frame, geometry, segments, numbers, progress)
    else:
        segmentation = _binary_segmentation(decoder, frames, slice_of_frame, geometry, segments, numbers,
                                            seg_type == "FRACTIONAL", header_float(ds, "MaximumFractionalValue", 255.0, path),
                                            progress)
    return SegImport(segmentation=segmentation, seg_type=seg_type.lower(),
                     fractional_type=str(getattr(ds, "SegmentationFractionalType", "")) if seg_type == "FRACTIONAL" else "",
                     series=series if isinstance(series, ReferenceSeries) else None,
                     referenced_series_uid=referenced_uid,
                     segment_numbers={s.id: n for n, s in zip(numbers, segments)}, path=path)


def read_seg_segments(ds: Dataset, path: Optional[os.PathLike | str] = None) -> Tuple[List[Segment], Dict[str, int]]:
    """The segments a SEG's header describes, as :func:`import_seg` names and describes them (ids,
    names, colours, codes, tracking; a LABELMAP's background left out), without decoding a frame:
    their ``layer`` and ``label_value`` are not set. Also {segment id: Segment Number}.

    For a caller that still holds the segmentation the SEG was written from (``api.export_sr``
    after ``api.export_seg``) and needs the file's view of the segments, not its pixels."""
    path = str(path if path is not None else getattr(ds, "filename", "") or "SEG")
    with reading(path, "the SEG"):
        segments, numbers = _described_segments(ds, path, _seg_type(ds))
    return segments, {s.id: n for n, s in zip(numbers, segments)}


def _seg_type(ds: Dataset) -> str:
    """BINARY, FRACTIONAL or LABELMAP."""
    if str(ds.SOPClassUID) == LABEL_MAP_SEGMENTATION_STORAGE:
        return "LABELMAP"
    return str(getattr(ds, "SegmentationType", "BINARY")).upper()


def _described_segments(ds: Dataset, path: str, seg_type: str) -> Tuple[List[Segment], List[int]]:
    segments, numbers = _segments_of(ds, path)
    if seg_type == "LABELMAP" and 0 in numbers:  # the background, described as segment 0
        index = numbers.index(0)
        del segments[index], numbers[index]
    return segments, numbers


VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.6"


def _refuse_tiled(ds: Dataset, path: str) -> None:
    """A SEG whose frames are tiles of one total pixel matrix (slide microscopy: TILED_FULL or
    TILED_SPARSE, slide coordinates, Total Pixel Matrix attributes, or drawn on whole-slide
    images) is no stack of slices: refused with what it is, instead of being read as one."""
    organization = str(ds.get("DimensionOrganizationType", "") or "").upper()
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else Dataset()
    signs = []
    if organization.startswith("TILED"):
        signs.append(f"Dimension Organization Type {organization}")
    if "TotalPixelMatrixRows" in ds or "TotalPixelMatrixColumns" in ds:
        signs.append(f"a total pixel matrix of {ds.get('TotalPixelMatrixRows', '?')}x"
                     f"{ds.get('TotalPixelMatrixColumns', '?')} in {ds.Rows}x{ds.Columns} tiles")
    if "ImageOrientationSlide" in ds or "PlanePositionSlideSequence" in shared:
        signs.append("slide coordinates")
    if VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE in _referenced_sop_classes(ds, path):
        signs.append("drawn on VL Whole Slide Microscopy images")
    if signs:
        raise InputError("a tiled slide-microscopy SEG (" + "; ".join(signs) + "): its frames are tiles of a 2D "
                         "slide, not slices of a radiology volume, and cannot be imported here", path)


def _referenced_sop_classes(ds: Dataset, path: str) -> set:
    """The Referenced SOP Class UIDs of the SEG's referenced instances and source images (its
    Referenced Series Sequence and Source Image Sequence, which read_seg_file leaves unopened:
    read_pixels.REFERENCE_SEQUENCES). The series items are checked as read_seg_file's
    check_sequences checked them, but for their instance items: those and the source image
    items are read only for these UIDs (a sequence nested in them is not looked at)."""
    classes = _sop_classes_of(ds, 0x00082112, path)  # Source Image Sequence
    for series in sequence_items(ds, 0x00081115, path) if 0x00081115 in ds else ():  # Referenced Series
        check_sequences(series, path, unopened=_REFERENCED_INSTANCES)
        classes |= _sop_classes_of(series, 0x0008114A, path)
    return classes


_REFERENCED_INSTANCES = frozenset({0x0008114A})  # Referenced Instance Sequence


#: raw.item_values' path to the Referenced SOP Class UID of each item.
_SOP_CLASS_PATH = [(0x00081150,)]


def _sop_classes_of(holder: Dataset, tag: int, path: str) -> set:
    """The Referenced SOP Class UIDs ("" where absent) of the items of sequence ``tag`` of
    ``holder``: from its raw bytes while pydicom has not parsed it (the items of a 200-slice
    SEG's references took pydicom 4.5 ms a sequence, this 0.3 ms), else from the items pydicom
    parses, with the error check_sequences gives for a sequence that does not parse."""
    element = holder.get_item(tag)
    if element is None:
        return set()
    if getattr(element, "is_raw", False) and element.is_little_endian and element.VR in (None, "SQ") \
            and isinstance(element.value, bytes):
        try:
            return {raw.ui_value(values[0]) or "" for values in
                    raw.item_values(element.value, element.is_implicit_VR, _SOP_CLASS_PATH)}
        except raw.RawParseError:
            pass  # pydicom parses it below, and says what is wrong
    return {_uid_of(item, 0x00081150) for item in sequence_items(holder, tag, path)}


def _uid_of(item: Dataset, tag: int) -> str:
    """A UI value of ``item`` ("" when absent), from its raw bytes when pydicom has not converted
    it yet: converting the Referenced SOP Class UIDs of a SEG's 200 referenced instances one by one
    was 4 ms of a LABELMAP import."""
    element = item.get_item(tag)
    if element is None:
        return ""
    value = element.value
    if isinstance(value, bytes):
        return raw.ui_value(value)
    return str(value if value is not None else "")


def _referenced_series_uid(ds: Dataset) -> str:
    for keyword in ("ReferencedSeriesSequence",):
        if keyword in ds and ds[keyword].value:
            return str(ds[keyword].value[0].get("SeriesInstanceUID", ""))
    for study in ds.get("StudiesContainingOtherReferencedInstancesSequence", []) or []:
        for ref in study.get("ReferencedSeriesSequence", []) or []:
            return str(ref.get("SeriesInstanceUID", ""))
    return ""


def _find_series(folder, uid: str, path: str, progress) -> ReferenceSeries:
    from ...core.errors import SeriesError
    from ...core.series import load_series

    try:
        return load_series(folder, uid or None, progress)
    except SeriesError as exc:
        if not uid or "not found" not in exc.problem:
            raise
    log.warning("%s: the referenced series %s is not in %s; using the image series found there", path, uid, folder)
    return load_series(folder, None, progress)


def _first_code(item: Dataset, keyword: str) -> Optional[Code]:
    sequence = item.get(keyword)
    return code_of(sequence[0]) if sequence else None


def _segments_of(ds: Dataset, path: str) -> Tuple[List[Segment], List[int]]:
    from ...dicom.colors import dicom_lab_to_rgb

    segments, numbers, seen = [], [], set()
    palette = _palette_colors(ds)
    for index, item in enumerate(ds.SegmentSequence):
        number = header_int(item, "SegmentNumber", index + 1, path)
        if number in seen:
            raise InputError(f"segment number {number} is described twice", path)
        seen.add(number)
        category = _first_code(item, "SegmentedPropertyCategoryCodeSequence")
        type_ = _first_code(item, "SegmentedPropertyTypeCodeSequence")
        terminology = None
        if category and type_:
            type_item = item.SegmentedPropertyTypeCodeSequence[0]
            region = item.get("AnatomicRegionSequence")
            terminology = Terminology(
                category=category, type=type_,
                type_modifier=_first_code(type_item, "SegmentedPropertyTypeModifierCodeSequence"),
                anatomic_region=code_of(region[0]) if region else None,
                anatomic_region_modifier=_first_code(region[0], "AnatomicRegionModifierSequence") if region else None)
        color = palette.get(number, _default_color(index))
        lab = header_floats(item, "RecommendedDisplayCIELabValue", 3, path)
        if lab is not None:
            color = tuple(dicom_lab_to_rgb([int(v) for v in lab]))
        name = str(item.get("SegmentLabel", "") or f"Segment_{number}")
        attributes = {"SegmentNumber": str(number)}
        for keyword in ("TrackingID", "TrackingUID", "SegmentAlgorithmType", "SegmentAlgorithmName"):
            if item.get(keyword):
                key = {"TrackingID": "TrackingIdentifier", "TrackingUID": "TrackingUniqueIdentifier"}.get(keyword, keyword)
                attributes[key] = str(item.get(keyword))
        if "SegmentationAlgorithmIdentificationSequence" in item and "SegmentAlgorithmName" not in attributes:
            attributes["SegmentAlgorithmName"] = str(item.SegmentationAlgorithmIdentificationSequence[0].get(
                "AlgorithmName", ""))
        segments.append(Segment(id=f"Segment_{number}", name=name, color=color, terminology=terminology,
                                description=str(item.get("SegmentDescription", "") or ""), attributes=attributes))
        numbers.append(number)
    return segments, numbers


def _palette_colors(ds: Dataset) -> Dict[int, Tuple[float, float, float]]:
    """{pixel value: RGB in [0, 1]} of a PALETTE COLOR label map (empty otherwise)."""
    if str(ds.get("PhotometricInterpretation", "")) != "PALETTE COLOR":
        return {}
    channels = []
    for color in ("Red", "Green", "Blue"):
        descriptor = ds.get(f"{color}PaletteColorLookupTableDescriptor")
        data = ds.get(f"{color}PaletteColorLookupTableData")
        if descriptor is None or data is None:
            return {}
        entries, first, bits = (int(v) for v in descriptor)
        values = np.frombuffer(data, dtype=np.uint8 if bits == 8 else "<u2")[:entries or 65536]
        channels.append((first, values / (255.0 if bits == 8 else 65535.0)))
    first = channels[0][0]
    count = min(len(values) for _, values in channels)
    return {first + n: tuple(float(values[n]) for _, values in channels) for n in range(count)}


def _frame_infos(ds: Dataset, path: str) -> List[_FrameInfo]:
    """Segment number, position and source reference of every frame, from the raw bytes."""
    count = header_int(ds, "NumberOfFrames", 1, path)
    shared = first_item(ds, "SharedFunctionalGroupsSequence") or Dataset()
    shared_number = _segment_number(shared, path)
    shared_position = _position(shared, path)
    items = _raw_per_frame_values(ds)
    infos = []
    if items is not None:
        for number, position, source_uid, source_frame in items:
            number = raw.us_value(number)
            position = raw.ds_values(position)
            source_uid = raw.ui_value(source_uid)
            source_frame = raw.is_value(source_frame)
            if position is not None and (len(position) != 3 or not all(abs(v) <= 1e6 for v in position)):
                raise InputError(f"frame {len(infos) + 1}: Image Position (Patient) {str(position)[:80]} is not 3 "
                                 f"numbers within a kilometre of the origin", path)
            infos.append(_FrameInfo(number if number is not None else shared_number,
                                    np.array(position) if position else shared_position, source_uid, source_frame))
    else:
        for item in ds.get("PerFrameFunctionalGroupsSequence", []) or []:
            number, position, source_uid, source_frame = shared_number, shared_position, None, None
            number = _segment_number(item, path, number)
            position = _position(item, path, position)
            derivation = first_item(item, "DerivationImageSequence")
            source = first_item(derivation, "SourceImageSequence") if derivation is not None else None
            if source is not None:
                source_uid = str(header_value(source, "ReferencedSOPInstanceUID", "", path))
                frame = header_value(source, "ReferencedFrameNumber", None, path)
                source_frame = int(frame) if isinstance(frame, int) else None
            infos.append(_FrameInfo(number, position, source_uid, source_frame))
    if not infos:
        infos = [_FrameInfo(shared_number, shared_position, None, None) for _ in range(count)]
    if len(infos) != count:
        raise InputError(f"{len(infos)} per-frame items for {count} frames", path)
    return infos


def _segment_number(item: Dataset, path: str, default: Optional[int] = None) -> Optional[int]:
    """Referenced Segment Number of a functional group item (``default`` when absent)."""
    identification = first_item(item, "SegmentIdentificationSequence")
    return default if identification is None else header_int(identification, "ReferencedSegmentNumber", path=path)


def _position(item: Dataset, path: str, default: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """Image Position (Patient) of a functional group item (``default`` when absent)."""
    plane = first_item(item, "PlanePositionSequence")
    values = header_floats(plane, "ImagePositionPatient", 3, path) if plane is not None else None
    if values is not None and max(abs(v) for v in values) > 1e6:
        raise InputError(f"Image Position (Patient) {values} is more than a kilometre from the origin", path)
    return default if values is None else np.array(values)


#: The per-frame values _frame_infos reads: Referenced Segment Number, Image Position (Patient),
#: the source image's Referenced SOP Instance UID and Referenced Frame Number.
_FRAME_VALUE_PATHS = [(_SEGMENT_IDENTIFICATION, _SEGMENT_NUMBER), (_PLANE_POSITION, _IMAGE_POSITION),
                      (_DERIVATION_IMAGE, 0x00082112, 0x00081155), (_DERIVATION_IMAGE, 0x00082112, 0x00081160)]


def _raw_per_frame_values(ds: Dataset) -> Optional[List[List[Optional[bytes]]]]:
    """The raw values of :data:`_FRAME_VALUE_PATHS` in every per-frame item, or None when pydicom
    must read the items (raw.item_values: only these values are copied out of the bytes)."""
    element = ds.get_item(_PER_FRAME)
    if element is None or not getattr(element, "is_raw", False) or not element.is_little_endian:
        return None
    try:
        return raw.item_values(element.value, element.is_implicit_VR, _FRAME_VALUE_PATHS)
    except raw.RawParseError as exc:
        log.debug("per-frame groups parsed by pydicom: %s", exc)
        return None


def _functional_groups(ds: Dataset):
    """The shared functional groups item, then the first per-frame item, which is looked at only
    when asked for: pydicom parses the whole per-frame sequence to give its first item (200 items,
    0.015 s for case C, which _frame_infos reads from the raw bytes anyway)."""
    yield first_item(ds, "SharedFunctionalGroupsSequence")
    yield first_item(ds, "PerFrameFunctionalGroupsSequence")


def _orientation(ds: Dataset) -> Optional[np.ndarray]:
    path = getattr(ds, "filename", None)
    values = None
    for group in _functional_groups(ds):
        plane = first_item(group, "PlaneOrientationSequence") if group is not None else None
        if plane is not None and "ImageOrientationPatient" in plane:
            values = header_floats(plane, "ImageOrientationPatient", 6, path)
            if values is not None:
                break
    if values is None:
        values = header_floats(ds, "ImageOrientationPatient", 6, path)
    if values is None:
        return None
    row, col = np.array(values[:3]), np.array(values[3:])
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(f"Image Orientation (Patient) {values} is not two orthogonal unit vectors", path)
    return np.array(values)


#: Most voxels of the SEG's own grid (a layer of bytes): frame positions a thousandth of a millimetre
#: apart (float noise, or a damaged file) would otherwise fill gigabytes with empty slices.
MAX_OWN_GRID_VOXELS = 2 ** 30


def _pixel_measures(ds: Dataset) -> Tuple[Optional[Tuple[float, float]], Optional[float]]:
    path = getattr(ds, "filename", None)
    item = None
    for group in _functional_groups(ds):
        item = first_item(group, "PixelMeasuresSequence") if group is not None else None
        if item is not None:
            break
    if item is None or "PixelSpacing" not in item:
        return None, None
    values = header_floats(item, "PixelSpacing", 2, path)
    if values is None:
        return None, None
    spacing = tuple(values)
    if min(spacing) <= 0:
        raise InputError(f"Pixel Spacing must be positive, got {spacing}", path)
    between = header_value(item, "SpacingBetweenSlices", None, path) or header_value(item, "SliceThickness", None, path)
    try:
        between = float(between) if between else None
    except (TypeError, ValueError):
        between = None  # only a hint for the slice step
    return spacing, between if between and np.isfinite(between) and between > 0 else None


def _own_geometry(ds: Dataset, frames: List[_FrameInfo], path: str) -> VolumeGeometry:
    """The SEG's own grid: its frame positions along the normal, filled to a regular stack."""
    rows, columns = header_int(ds, "Rows", path=path), header_int(ds, "Columns", path=path)
    orientation = _orientation(ds)
    spacing, between = _pixel_measures(ds)
    positions = [f.position for f in frames if f.position is not None]
    if orientation is None or spacing is None or not positions:
        # No patient geometry: index space, one slice per distinct frame position/source.
        count = len({(f.source_uid, f.source_frame) for f in frames}) if all(f.source_uid for f in frames) \
            else len(frames) // max(1, len({f.segment_number for f in frames}))
        return VolumeGeometry((max(1, count), rows, columns), np.eye(4), in_patient_space=False)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    # np.unique's values, by sort and compare: np.unique imports numpy.ma (7 to 11 ms of a command)
    ordered = np.sort(np.round(np.array(positions) @ normal, 3))
    unique = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    distances = np.array(positions) @ normal
    origin = np.array(positions)[int(np.argmin(distances))]
    if len(unique) > 1:
        step = float(np.min(np.diff(unique)))
        if between and abs(between - step) > 1e-3 and np.allclose(np.mod(np.diff(unique) / between + 0.5, 1), 0.5,
                                                                  atol=1e-2):
            step = between
        steps = (unique - unique[0]) / step
        if not np.allclose(steps, np.round(steps), atol=1e-2):
            raise InputError("SEG frame positions are not on a regular grid along the slice normal", path)
        count = int(round(steps[-1])) + 1
        if count * rows * columns > MAX_OWN_GRID_VOXELS:
            raise InputError(f"the SEG's {len(unique)} frame positions, {step:g} mm apart at the least, would make a "
                             f"grid of {count} slices of {rows}x{columns}: not a regular stack of slices", path)
    else:
        step, count = between or 1.0, 1
    affine = np.eye(4)
    affine[:3, 0] = row_dir * spacing[1]
    affine[:3, 1] = col_dir * spacing[0]
    affine[:3, 2] = normal * step
    affine[:3, 3] = origin - normal * (float(origin @ normal) - unique[0])
    return VolumeGeometry((count, rows, columns), affine)


def _map_frames(frames: List[_FrameInfo], geometry: VolumeGeometry, series: Optional[ReferenceSeries],
                path: str, own: VolumeGeometry) -> List[int]:
    """Slice index k of each frame on ``geometry``."""
    by_source = {}
    if series is not None:
        multiframe = series.is_multiframe  # a property that scans every header: once
        by_source = {(s.sop_instance_uid, s.frame + 1 if multiframe else None): k
                     for k, s in enumerate(series.slices)}
    if geometry.in_patient_space and all(f.position is not None for f in frames):
        if series is not None and not _same_plane_grid(own, geometry):
            raise GeometryError(f"the SEG frames ({own.describe()}) do not lie on the series grid "
                                f"({geometry.describe()})", path)
        ijk = geometry.lps_to_ijk_points(np.array([f.position for f in frames]))
        k = np.rint(ijk[:, 2]).astype(int)
        off = np.abs(ijk - np.rint(ijk)).max(axis=1)
        if (off > 1e-2).any() or (np.abs(np.rint(ijk[:, :2])) > 0).any() or (k < 0).any() or \
                (k >= geometry.shape[0]).any():
            raise GeometryError(f"{int(((off > 1e-2) | (k < 0) | (k >= geometry.shape[0])).sum())} SEG frames do "
                                f"not lie on the slices of the grid ({geometry.describe()})", path)
        return k.tolist()
    if series is not None and all(f.source_uid for f in frames):
        try:
            return [by_source.get((f.source_uid, f.source_frame if multiframe else None),
                                  by_source[(f.source_uid, 1)] if multiframe else by_source[(f.source_uid, None)])
                    for f in frames]
        except KeyError:
            raise GeometryError("SEG frames reference images that are not in the series", path) from None
    # index space: frames in file order per segment
    order: Dict[int, int] = {}
    result = []
    for f in frames:
        n = order.get(f.segment_number, 0)
        order[f.segment_number] = n + 1
        result.append(n)
    return result


def _same_plane_grid(own: VolumeGeometry, target: VolumeGeometry) -> bool:
    """Same rows, columns, orientation and in-plane spacing (slices may be a subset)."""
    if own.shape[1:] != target.shape[1:]:
        return False
    a, b = own.ijk_to_lps[:3, :2], target.ijk_to_lps[:3, :2]
    return bool(np.allclose(a, b, atol=1e-3))


def _labelmap_segmentation(decoder: FrameDecoder, slice_of_frame: List[int], geometry: VolumeGeometry,
                           segments: List[Segment], numbers: List[int], progress) -> Segmentation:
    from ...core.progress import track

    top = max(numbers, default=0)
    dtype = np.uint8 if top < 256 else np.uint16
    labels = arrays.zeros(geometry.shape, dtype)  # 4 KiB pages: faulted in steadily (core.arrays)
    highest = 0
    for index in track(range(decoder.count), progress, "Reading SEG frames"):
        frame = decoder.frame(index)
        if frame.size:
            highest = max(highest, int(frame.max()))  # in the cache, as decoded
        labels[slice_of_frame[index]] = frame
    # Values without a segment description: when the described values are 1..top, only a value
    # above top can be one, which the frames' maxima tell without another pass over the volume
    # (present_labels was 0.064 s of CPU on case C; bench_startup.py notes).
    described_all = len(set(numbers) & set(range(1, top + 1))) == top
    stray = np.zeros(0, np.int64) if described_all and highest <= top else \
        np.setdiff1d(present_labels(labels), numbers)
    if stray.size:
        log.warning("LABELMAP values %s have no segment description and are ignored", stray.tolist()[:10])
        labels[np.isin(labels, stray)] = 0
    for segment, number in zip(segments, numbers):
        segment.layer, segment.label_value = 0, number
    return Segmentation(geometry, labels[np.newaxis], segments)


def _binary_segmentation(decoder: FrameDecoder, frames: List[_FrameInfo], slice_of_frame: List[int],
                         geometry: VolumeGeometry, segments: List[Segment], numbers: List[int],
                         fractional: bool, max_value: float, progress) -> Segmentation:
    """Frames placed segment by segment into the first layer where they overlap nothing."""
    from ...core.progress import track

    by_number = {n: i for i, n in enumerate(numbers)}
    frames_of: Dict[int, List[int]] = {i: [] for i in range(len(segments))}
    for index, info in enumerate(frames):
        if info.segment_number not in by_number:
            raise InputError(f"frame {index + 1} refers to segment {info.segment_number}, which is not described",
                             decoder.path)
        frames_of[by_number[info.segment_number]].append(index)
    layers: List[np.ndarray] = []
    next_value: List[int] = []
    fractions: Dict[str, FractionPlanes] = {}
    ticks = iter(track(range(decoder.count), progress, "Reading SEG frames"))
    boxes = None if fractional else decoder.packed_boxes()
    frame_slices = np.array(slice_of_frame, dtype=np.intp)
    placed = []
    for seg_index, segment in enumerate(segments):
        pieces = None if boxes is None else _packed_pieces(decoder, boxes, frames_of[seg_index], frame_slices)
        if pieces is not None:
            for _ in frames_of[seg_index]:
                next(ticks, None)
        else:
            pieces = _frame_pieces(decoder, frames_of[seg_index], slice_of_frame, fractional, max_value,
                                   segment.id, fractions, ticks)
        if not pieces:
            log.warning("segment %r has no voxels in the SEG", segment.name)
        layer = _free_layer(layers, pieces)
        if layer == len(layers):
            layers.append(np.zeros(geometry.shape, dtype=np.uint8))
            next_value.append(1)
        value = next_value[layer]
        if value > 255 and layers[layer].dtype == np.uint8:
            layers[layer] = layers[layer].astype(np.uint16)
        for where, (r0, r1, c0, c1), mask in pieces:
            # the layer is 0 under every mask voxel (_free_layer): OR-ing the value in is painting
            # it, and faster than np.copyto(..., where=mask) (0.022 -> 0.016 s for the bench SEG)
            target = layers[layer][where, r0:r1, c0:c1]
            np.bitwise_or(target, np.multiply(mask, value, dtype=target.dtype), out=target)
        next_value[layer] = value + 1
        segment.layer, segment.label_value = layer, value
        placed.append(segment)
    if not layers:
        layers = [np.zeros(geometry.shape, dtype=np.uint8)]
    dtype = np.uint16 if any(layer.dtype == np.uint16 for layer in layers) else np.uint8
    stacked = layers[0][np.newaxis] if len(layers) == 1 else \
        np.stack([layer.astype(dtype, copy=False) for layer in layers])  # one layer: no 52 MB copy
    result = Segmentation(geometry, stacked, placed)
    result.fractions = fractions
    return result


#: A segment's pixels on one slice k, (rows, columns) in its box, or on the slices of a slice
#: k0:k1, (slices, rows, columns) in one box: (k or k0:k1, (r0, r1, c0, c1), bool mask).
_Piece = Tuple[Union[int, slice], Tuple[int, int, int, int], np.ndarray]


def _frame_pieces(decoder: FrameDecoder, indices: List[int], slice_of_frame: List[int], fractional: bool,
                  max_value: float, segment_id: str, fractions: Dict[str, FractionPlanes], ticks) -> List[_Piece]:
    """A segment's frames read one by one, one piece a slice (frames on one slice merged);
    FRACTIONAL values go to ``fractions``."""
    planes: Dict[int, Tuple[Tuple[int, int, int, int], np.ndarray]] = {}  # k -> ((r0, r1, c0, c1), mask)
    for index in indices:
        next(ticks, None)
        k = slice_of_frame[index]
        box = decoder.box(index)
        if box is None:
            continue
        if fractional:
            values = decoder.frame(index).astype(np.float32) / max_value
            if not values.any():
                continue
            fractions.setdefault(segment_id, FractionPlanes((decoder.rows, decoder.columns)))
            previous = fractions[segment_id].get(k)
            fractions[segment_id][k] = values if previous is None else np.maximum(previous, values)
            box = (box[0], box[1], 0, decoder.columns)
            mask = values[box[0]:box[1]] >= 0.5
        else:
            mask = decoder.box_pixels(index, box)
        if k in planes:  # several frames of one segment on one slice: merge
            (p0, p1, q0, q1), old = planes[k]
            full = np.zeros((decoder.rows, decoder.columns), dtype=bool)
            full[p0:p1, q0:q1] |= old
            full[box[0]:box[1], box[2]:box[3]] |= mask
            rows, columns = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
            box = int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1
            mask = full[box[0]:box[1], box[2]:box[3]]
        if mask.any():
            planes[k] = (box, mask)
    return [(k, box, mask) for k, (box, mask) in planes.items()]


#: The most pixels of a run of frames read as one piece (4 MiB of mask).
_RUN_PIXELS = 1 << 22


def _packed_pieces(decoder: FrameDecoder, boxes: Tuple[np.ndarray, ...], indices: List[int],
                   frame_slices: np.ndarray) -> Optional[List[_Piece]]:
    """A segment's packed BINARY frames read together: one piece for each run of consecutive
    slices (one gather and one unpacking of their common box, instead of some ten numpy calls
    a frame, and one overlap test and one painting a run). None when two of its frames lie on
    one slice (merged frame by frame by :func:`_frame_pieces`)."""
    r0, r1, c0, c1 = boxes
    frames = np.array(indices, dtype=np.intp)
    frames = frames[r1[frames] > 0]  # empty frames add nothing
    if not frames.size:
        return []
    ks = frame_slices[frames]
    order = np.argsort(ks, kind="stable")
    frames, ks = frames[order], ks[order]
    steps = np.diff(ks)
    if (steps == 0).any():
        return None
    areas = (r1 - r0)[frames] * (c1 - c0)[frames]
    pieces: List[_Piece] = []
    pending = [(int(start), int(stop)) for start, stop in zip(
        np.r_[0, np.flatnonzero(steps > 1) + 1], np.r_[np.flatnonzero(steps > 1) + 1, len(frames)])]
    while pending:
        start, stop = pending.pop()
        run = frames[start:stop]
        box = int(r0[run].min()), int(r1[run].max()), int(c0[run].min()), int(c1[run].max())
        # a run whose common box is mostly outside its frames' boxes (a segment that moves across
        # the slices) is cut in two, so that no more than twice the frames' pixels are unpacked;
        # and one above _RUN_PIXELS, which bounds the temporaries of the overlap test and the
        # painting (one run's mask each: a 180x480x480 segment took 40 MiB more at the peak)
        pixels = (box[1] - box[0]) * (box[3] - box[2]) * (stop - start)
        if stop - start > 1 and (pixels > 2 * int(areas[start:stop].sum()) or pixels > _RUN_PIXELS):
            middle = (start + stop) // 2
            pending += [(start, middle), (middle, stop)]
            continue
        pieces.append((slice(int(ks[start]), int(ks[stop - 1]) + 1), box, decoder.block_pixels(run, box)))
    return pieces


def _free_layer(layers: List[np.ndarray], pieces: List[_Piece]) -> int:
    """The first layer where the pieces overlap no voxel (``len(layers)``: none), compared on
    each piece's box only (a gather of the masked voxels of whole rows was 0.07 s of a
    100-segment BINARY import; the boxes are an eighth of those rows)."""
    for number, layer in enumerate(layers):
        if not any(np.logical_and(layer[where, r0:r1, c0:c1], mask).any() for where, (r0, r1, c0, c1), mask in pieces):
            return number
    return len(layers)


def seg_summary(imported: SegImport) -> str:
    """One line about an imported SEG, for the command line."""
    seg = imported.segmentation
    return (f"{imported.seg_type.upper()} SEG, {len(seg.segments)} segments on {seg.geometry.describe()}"
            + (f" of series {imported.series.series_instance_uid}" if imported.series else " (its own frame grid)"))
