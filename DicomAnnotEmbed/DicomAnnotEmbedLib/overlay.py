"""Overlay-embedded DICOM: segments and markups as overlay planes (60xx) in copies of the
source images, readable by any DICOM viewer, and overlay planes back into segments.

Each segment becomes one Type R (ROI) plane with Overlay Label = segment name, Overlay
Description = its coded meaning and ROI Area / Mean / Standard Deviation computed from the
image under the mask. Each markup becomes one Type G (graphics) plane drawn on the slices it
crosses. A plane is written on the images where it has pixels; its group is the same on every
image of the output series. Full names, colours, codes and markup control points (LPS) are
kept in one private element so that our own files import back exactly.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from .errors import InputError, TooManySegmentsError
from .model import AnnotationSet, Markup, Segment, Segmentation, Terminology
from .outputs import prepare_output_dir, write_atomic
from .progress import ProgressCallback, track
from .series import ReferenceSeries, frame_rescales, load_series, modality_frames, stored_frames

log = logging.getLogger(__name__)

#: The 16 repeating overlay groups 6000, 6002, ... 601E.
OVERLAY_GROUPS: Tuple[int, ...] = tuple(0x6000 + 2 * n for n in range(16))
#: Private block holding the metadata our importer needs for an exact round trip.
PRIVATE_GROUP = 0x0071
PRIVATE_CREATOR = "DicomAnnotEmbed 1.0"
PRIVATE_METADATA_ELEMENT = 0x01
METADATA_VERSION = 1
_LO_MAX = 64

UID_WARNING = ("keeping the original SOP Instance and Series UIDs: the output images are different "
               "objects with the same identity as the sources, so a PACS or viewer that already has "
               "the originals may keep either one and silently drop the other. Only use this to "
               "replace the originals in place.")


class KeepUidsWarning(UserWarning):
    """Raised as a warning when original UIDs are kept on changed images."""


@dataclass
class _Plane:
    """One thing to draw as an overlay: a segment (Type R) or a markup (Type G)."""

    name: str
    overlay_type: str  # "R" or "G"
    description: str
    metadata: dict
    slice_mask: Callable[[int], Optional[np.ndarray]]  # k -> (J, I) bool, or None when empty
    group: int = 0


@dataclass
class OverlaySeries:
    """One written output series."""

    folder: str
    series_instance_uid: str
    series_description: str
    files: List[str]
    planes: Dict[str, str]  # overlay group (hex) -> segment or markup name


@dataclass
class OverlayExportResult:
    series: List[OverlaySeries] = field(default_factory=list)
    skipped_segments: List[str] = field(default_factory=list)
    skipped_markups: List[str] = field(default_factory=list)


def used_overlay_groups(datasets: Sequence[Dataset]) -> List[int]:
    """Overlay groups already present in any of the datasets (kept as they are on export)."""
    return [g for g in OVERLAY_GROUPS if any(pydicom.tag.Tag(g, 0x0010) in ds or
                                             pydicom.tag.Tag(g, 0x3000) in ds for ds in datasets)]


def export_overlays(series: ReferenceSeries, annotations: AnnotationSet, out_dir: os.PathLike | str, *,
                    keep_uids: bool = False, split: bool = False, fill_markups: bool = False,
                    force: bool = False, series_description: Optional[str] = None,
                    progress: Optional[ProgressCallback] = None) -> OverlayExportResult:
    """Write a copy of every image of ``series`` with the annotations as overlay planes.

    Args:
        series: the reference series (its files are read, never changed).
        annotations: segments and markups on ``series.geometry`` (see ``api.load_annotations``).
        out_dir: output folder (must be empty unless ``force``); with ``split`` and more planes
            than free overlay groups, one sub-folder per output series.
        keep_uids: keep the source UIDs (in-place workflows; warns with the risk).
        split: spread planes over several series instead of failing when there are more
            than free overlay groups.
        fill_markups: draw closed curves and ROI boxes filled instead of outlined.

    Raises:
        TooManySegmentsError: more planes than free groups and ``split`` not set.
        OutputError: the output folder is not empty or not writable.
    """
    if not annotations.geometry.same_as(series.geometry):
        raise InputError("annotations are not on the series grid; load them with api.load_annotations")
    result = OverlayExportResult()
    planes = _plan_planes(annotations, fill_markups, result)
    if not planes:
        raise InputError("nothing to export: no non-empty segment and no markup on the series")
    used = used_overlay_groups(series.datasets)
    free = [g for g in OVERLAY_GROUPS if g not in used]
    if len(planes) > len(free):
        if not split or not free:
            raise TooManySegmentsError(
                f"{len(planes)} segments and markups but only {len(free)} free overlay groups "
                f"(16 per image, {len(used)} already used by the source"
                + ("); use --split (split=True) to write several series" if free else ")"), series.folder)
    batches = [planes[n:n + len(free)] for n in range(0, len(planes), len(free))]
    out_dir = prepare_output_dir(out_dir, force)
    if keep_uids:
        if len(batches) > 1:
            raise InputError("--keep-uids cannot be combined with splitting into several series")
        warnings.warn(UID_WARNING, KeepUidsWarning, stacklevel=2)
        log.warning(UID_WARNING)
    for number, batch in enumerate(batches, 1):
        folder = out_dir if len(batches) == 1 else out_dir / f"series_{number:02d}"
        if folder != out_dir:
            folder.mkdir(exist_ok=True)
        for plane, group in zip(batch, free):
            plane.group = group
        result.series.append(_write_series(series, batch, folder, keep_uids, series_description,
                                           (number, len(batches)), progress))
    return result


def _plan_planes(annotations: AnnotationSet, fill_markups: bool, result: OverlayExportResult) -> List[_Plane]:
    from .rasterize import markup_slice_masks

    planes: List[_Plane] = []
    segmentation = annotations.segmentation
    if segmentation is not None:
        per_slice = segmentation.slice_voxel_counts()
        for segment in segmentation.segments:
            present = per_slice.get(segment.id, np.zeros(0))
            if not present.any():
                log.warning("segment %r is empty and is skipped", segment.name)
                result.skipped_segments.append(segment.name)
                continue
            layer = segmentation.layers[segment.layer]
            planes.append(_Plane(
                name=segment.name, overlay_type="R",
                description=segment.terminology.short_text() if segment.terminology else segment.description,
                metadata=_segment_metadata(segment),
                slice_mask=lambda k, layer=layer, value=segment.label_value, present=present:
                    layer[k] == value if present[k] else None))
    for markup in annotations.markups:
        masks = markup_slice_masks(markup, annotations.geometry, filled=fill_markups or markup.filled)
        if not masks:
            log.warning("markup %r does not cross the series and is skipped", markup.name)
            result.skipped_markups.append(markup.name)
            continue
        planes.append(_Plane(
            name=markup.name, overlay_type="G", description=f"{_KIND_TEXT[markup.kind]} markup",
            metadata={"kind": "markup", "markup": _markup_to_json(markup)},
            slice_mask=lambda k, masks=masks: masks.get(k)))
    return planes


_KIND_TEXT = {"point_list": "Point list", "line": "Line", "angle": "Angle", "curve": "Open curve",
              "closed_curve": "Closed curve", "plane": "Plane", "roi": "ROI box"}


def _segment_metadata(segment: Segment) -> dict:
    return {"kind": "segment", "id": segment.id, "name": segment.name, "color": list(segment.color),
            "description": segment.description,
            "terminology": segment.terminology.to_slicer_string() if segment.terminology else None}


def _markup_to_json(markup: Markup) -> dict:
    from .markups_io import markup_to_dict

    return markup_to_dict(markup, coordinate_system="LPS")


def _markup_from_json(data: dict, source: str) -> Markup:
    from .markups_io import markup_from_dict

    return markup_from_dict(data, source)


def _write_series(series: ReferenceSeries, planes: List[_Plane], folder: Path, keep_uids: bool,
                  description: Optional[str], part: Tuple[int, int],
                  progress: Optional[ProgressCallback]) -> OverlaySeries:
    new_series_uid = series.series_instance_uid if keep_uids else generate_uid()
    names = ", ".join(p.name for p in planes)
    if description is None:
        base = series.description or series.modality
        description = f"{base} + overlays" + (f" {part[0]}/{part[1]}" if part[1] > 1 else "") + f": {names}"
    metadata = json.dumps({"version": METADATA_VERSION, "planes": {f"{p.group:04X}": dict(
        p.metadata, overlay_type=p.overlay_type) for p in planes}}, separators=(",", ":"))
    files = []
    for file_index in track(range(len(series.files)), progress,
                            "Writing overlays" + (f" ({part[0]}/{part[1]})" if part[1] > 1 else "")):
        source = series.files[file_index]
        ds = pydicom.dcmread(source)
        frames = series.slices_of_file(file_index)
        statistics = _RoiStatistics(ds)
        empty = np.zeros((len(frames),) + series.geometry.shape[1:], bool)
        stacks = []
        for plane in planes:
            masks = [plane.slice_mask(k) for _, k in frames]
            stacks.append(np.stack([empty[0] if m is None else m for m in masks])
                          if any(m is not None and m.any() for m in masks) else None)
        # Planes are written up to the last one with pixels on this image, empty ones included:
        # validators (dciodvfy) expect the overlay groups of an image to have no gaps.
        last = max((n for n, stack in enumerate(stacks) if stack is not None), default=-1)
        for plane, stack in zip(planes[:last + 1], stacks):
            _add_plane(ds, plane, empty if stack is None else stack,
                       statistics if plane.overlay_type == "R" and stack is not None else None, len(frames) > 1)
        _mark_derived(ds, series, new_series_uid, description, names, keep_uids)
        _set_private_metadata(ds, metadata)
        out = folder / f"IMG{file_index + 1:05d}.dcm"
        write_atomic(out, lambda stream, ds=ds: ds.save_as(stream, enforce_file_format=True))
        files.append(str(out))
    return OverlaySeries(str(folder), new_series_uid, description, files,
                         {f"{p.group:04X}": p.name for p in planes})


class _RoiStatistics:
    """ROI Area, Mean and Standard Deviation under a mask, in modality units (HU for CT).

    Pixels are decoded once per image, and only if a segment is on it. With one linear rescale
    for all frames the statistics are taken on the stored values and rescaled (no float image)."""

    def __init__(self, ds: Dataset):
        self.ds = ds
        self._stored: Optional[np.ndarray] = None
        self._rescales = None

    def __call__(self, masks: np.ndarray) -> Tuple[int, float, float]:
        if self._stored is None:
            self._stored = stored_frames(self.ds)
            self._rescales = frame_rescales(self.ds)
        if self._rescales is not None and len(set(self._rescales)) == 1:
            slope, intercept = self._rescales[0]
            inside = self._stored[masks].astype(np.float64)
            return inside.size, float(inside.mean()) * slope + intercept, float(inside.std()) * abs(slope)
        inside = modality_frames(self.ds)[masks].astype(np.float64)
        return inside.size, float(inside.mean()), float(inside.std())


def _add_plane(ds: Dataset, plane: _Plane, masks: np.ndarray, statistics: Optional[_RoiStatistics],
               multiframe: bool):
    """Add one overlay plane; ``masks`` is (frames, rows, columns) in frame order."""
    g = plane.group
    rows, columns = masks.shape[1:]
    ds.add_new((g, 0x0010), "US", rows)
    ds.add_new((g, 0x0011), "US", columns)
    if multiframe:
        ds.add_new((g, 0x0015), "IS", masks.shape[0])
    ds.add_new((g, 0x0022), "LO", _lo(plane.description))
    ds.add_new((g, 0x0040), "CS", plane.overlay_type)
    ds.add_new((g, 0x0050), "SS", [1, 1])
    if multiframe:
        ds.add_new((g, 0x0051), "US", 1)
    ds.add_new((g, 0x0100), "US", 1)
    ds.add_new((g, 0x0102), "US", 0)
    if statistics is not None:
        area, mean, std = statistics(masks)
        ds.add_new((g, 0x1301), "IS", area)
        ds.add_new((g, 0x1302), "DS", _ds(mean))
        ds.add_new((g, 0x1303), "DS", _ds(std))
    ds.add_new((g, 0x1500), "LO", _lo(plane.name))
    # Overlay bits run on across frames, first pixel in the lowest bit, padded to even length.
    packed = np.packbits(masks.ravel(), bitorder="little").tobytes()
    ds.add_new((g, 0x3000), "OW", packed + b"\0" * (len(packed) % 2))


def _lo(text: str) -> str:
    text = (text or "").replace("\\", "/")
    return text if len(text) <= _LO_MAX else text[:_LO_MAX - 1] + "~"


def _ds(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.4e}"


def _mark_derived(ds: Dataset, series: ReferenceSeries, series_uid: str, description: str, names: str,
                  keep_uids: bool) -> None:
    source_class, source_uid = ds.SOPClassUID, ds.SOPInstanceUID
    if keep_uids:
        return
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription = _lo(description)
    ds.SeriesNumber = (int(getattr(ds, "SeriesNumber", 0) or 0) % 100000) + 1000
    image_type = list(getattr(ds, "ImageType", ["ORIGINAL", "PRIMARY"]))
    image_type[0] = "DERIVED"
    if len(image_type) > 1:
        image_type[1] = "SECONDARY"
    ds.ImageType = image_type
    for groups in (getattr(ds, "SharedFunctionalGroupsSequence", None) or [],
                   getattr(ds, "PerFrameFunctionalGroupsSequence", None) or []):
        for item in groups:
            for element in item:
                if element.keyword.endswith("FrameTypeSequence"):
                    for frame_type in element.value:
                        ft = list(frame_type.FrameType)
                        ft[0], ft[1] = "DERIVED", "SECONDARY"
                        frame_type.FrameType = ft
    ds.DerivationDescription = _lo_text(f"Overlay planes added by DicomAnnotEmbed: {names}", 1024)
    ds.DerivationCodeSequence = DicomSequence([_code("113076", "DCM", "Segmentation")])
    reference = Dataset()
    reference.ReferencedSOPClassUID = source_class
    reference.ReferencedSOPInstanceUID = source_uid
    reference.PurposeOfReferenceCodeSequence = DicomSequence(
        [_code("121322", "DCM", "Source image for image processing operation")])
    ds.SourceImageSequence = DicomSequence([reference])


def _lo_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "~"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _set_private_metadata(ds: Dataset, metadata: str) -> None:
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(PRIVATE_METADATA_ELEMENT, "UT", metadata)


def _private_metadata(ds: Dataset, cache: Optional[Dict[str, dict]] = None) -> dict:
    try:
        text = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)[PRIVATE_METADATA_ELEMENT].value
        if cache is not None and text in cache:
            return cache[text]
        data = json.loads(text)
    except (KeyError, ValueError, TypeError):
        return {}
    if cache is not None:
        cache[text] = data
    return data if isinstance(data, dict) and data.get("version") == METADATA_VERSION else {}


# --- import ---------------------------------------------------------------------------------

@dataclass
class _Found:
    name: str
    overlay_type: str
    metadata: dict
    slices: Dict[int, np.ndarray] = field(default_factory=dict)  # k -> packed bits of (J, I)


def import_overlays(source: ReferenceSeries | os.PathLike | str, series_uid: Optional[str] = None,
                    progress: Optional[ProgressCallback] = None) -> AnnotationSet:
    """Read every overlay plane of a series into segments (and our markups) on its grid.

    Works on our files (names, colours, codes and markups restored from the private metadata),
    on scanner-written overlays (named from Overlay Label, else Overlay Description, else the
    group), and on legacy overlays stored in unused high bits of Pixel Data.

    Raises:
        InputError: the series carries no overlay plane.
    """
    series = source if isinstance(source, ReferenceSeries) else load_series(source, series_uid, progress)
    shape2d = series.geometry.shape[1:]
    found: Dict[Tuple[int, str], _Found] = {}
    markups: Dict[str, Markup] = {}
    parsed: Dict[str, dict] = {}  # the same metadata text is in every file of a series
    for file_index in track(range(len(series.files)), progress, "Reading overlays"):
        ds = series.datasets[file_index]
        metadata = _private_metadata(ds, parsed).get("planes", {})
        slice_of_frame = dict(series.slices_of_file(file_index))
        legacy_words: List[np.ndarray] = []  # stored pixel words, read once per file if needed
        for group in OVERLAY_GROUPS:
            if pydicom.tag.Tag(group, 0x0010) not in ds:
                continue
            meta = metadata.get(f"{group:04X}", {})
            overlay_type = str(getattr(ds.get((group, 0x0040)), "value", "") or meta.get("overlay_type") or "G")
            if meta.get("kind") == "markup":
                markup = _markup_from_json(meta["markup"], series.files[file_index])
                markups.setdefault(markup.name, markup)
                continue
            name = (meta.get("name") or _text(ds, group, 0x1500) or _text(ds, group, 0x0022)
                    or f"Overlay {group:04X}")
            key = (group, meta.get("id") or name)
            if key not in found:
                found[key] = _Found(name, overlay_type, meta)
            planes = _read_plane(ds, group, series.files[file_index], legacy_words)
            origin_frame = int(getattr(ds.get((group, 0x0051)), "value", 1) or 1) - 1
            for index, plane in enumerate(planes):
                k = slice_of_frame.get(origin_frame + index)
                if k is None or not plane.any():
                    continue
                mask = _unpack(found[key].slices.get(k), shape2d)
                _paste(mask, plane, ds, group)
                found[key].slices[k] = np.packbits(mask)
    if not found and not markups:
        raise InputError("no overlay planes in this series", series.folder)
    segmentation = Segmentation(series.geometry)
    # Segments in overlay group order: the order in which they were exported.
    ordered = [found[key] for key in sorted(found, key=lambda key: key[0])]
    for n, item in enumerate(ordered):
        meta = item.metadata
        terminology = Terminology.from_slicer_string(meta["terminology"]) if meta.get("terminology") else None
        from .model import _default_color

        segment = Segment(id=meta.get("id") or _unique_id(item.name, segmentation), name=item.name,
                          color=tuple(meta.get("color") or _default_color(n)), terminology=terminology,
                          description=meta.get("description", ""),
                          attributes={"overlay_type": item.overlay_type})
        segmentation.add_segment_slices({k: _unpack(bits, shape2d) for k, bits in item.slices.items()}, segment)
    return AnnotationSet(series.geometry, segmentation, list(markups.values()))


def _unpack(bits: Optional[np.ndarray], shape2d: Tuple[int, int]) -> np.ndarray:
    """A (J, I) mask from packed bits (all False for None)."""
    if bits is None:
        return np.zeros(shape2d, dtype=bool)
    return np.unpackbits(bits, count=shape2d[0] * shape2d[1]).reshape(shape2d).astype(bool)


def _unique_id(name: str, segmentation: Segmentation) -> str:
    existing = {s.id for s in segmentation.segments}
    candidate, n = name, 2
    while candidate in existing:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def _text(ds: Dataset, group: int, element: int) -> str:
    item = ds.get((group, element))
    return str(item.value).strip() if item is not None and item.value else ""


def _read_plane(ds: Dataset, group: int, path: str, legacy_words: List[np.ndarray]) -> np.ndarray:
    """(frames, rows, columns) bool of one overlay group, from Overlay Data or, for legacy
    overlays, from the given bit of the stored pixel words (read from ``path`` into the
    one-item cache ``legacy_words`` the first time a group of the file needs them)."""
    if pydicom.tag.Tag(group, 0x3000) in ds:
        try:
            planes = ds.overlay_array(group)
        except Exception as exc:
            raise InputError(f"overlay group {group:04X} cannot be read ({exc})", path) from None
        planes = np.asarray(planes, dtype=bool)
        return planes[np.newaxis] if planes.ndim == 2 else planes
    bit = int(getattr(ds.get((group, 0x0102)), "value", 0) or 0)
    if not legacy_words:
        legacy_words.append(stored_frames(pydicom.dcmread(path), raw_words=True))
    stored = legacy_words[0]
    high_bit = int(getattr(ds, "HighBit", int(ds.BitsStored) - 1))
    if bit >= int(ds.BitsAllocated) or high_bit - int(ds.BitsStored) < bit <= high_bit:
        raise InputError(f"overlay group {group:04X} has no Overlay Data and its bit position {bit} is "
                         f"inside the stored pixel bits", path)
    return ((stored >> bit) & 1).astype(bool)


def _paste(target: np.ndarray, plane: np.ndarray, ds: Dataset, group: int) -> None:
    """OR an overlay plane into a (rows, columns) image mask at its Overlay Origin (1-based)."""
    origin = getattr(ds.get((group, 0x0050)), "value", None) or [1, 1]
    r0, c0 = int(origin[0]) - 1, int(origin[1]) - 1
    rows, columns = target.shape
    pr, pc = plane.shape
    tr0, tc0 = max(r0, 0), max(c0, 0)
    tr1, tc1 = min(r0 + pr, rows), min(c0 + pc, columns)
    if tr1 > tr0 and tc1 > tc0:
        target[tr0:tr1, tc0:tc1] |= plane[tr0 - r0:tr1 - r0, tc0 - c0:tc1 - c0]
