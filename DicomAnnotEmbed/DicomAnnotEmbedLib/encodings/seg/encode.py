"""DICOM SEG export (encode side); see the package docstring.

Coordinates: LPS throughout, as in DICOM.
"""
from __future__ import annotations

import copy
import logging
import os
import struct
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ... import __version__
from ...dicom import raw
from ...core.errors import GeometryError, InputError
from ...dicom.header_items import code_item
from ...dicom.values import long_string
from ...core.geometry import VolumeGeometry
from ...core.model import DEFAULT_TERMINOLOGY, FractionPlanes, Segment, Segmentation
from ...core.outputs import atomic_path, prepare_output_file
from ...core.progress import ProgressCallback
from ...core.series import ReferenceSeries
from .common import (ALGORITHM_TYPES, ALLOWED_COMPRESSIONS, COMPRESSIONS, DEFAULT_COMPRESSION, MAX_SEGMENTS, SEG_TYPES,
                     TRANSFER_SYNTAXES, SegExportOptions, SegExportResult, check_compression, _DERIVATION_IMAGE,
                     _DIMENSION_INDEX_VALUES, _FRAME_CONTENT, _IMAGE_POSITION, _PER_FRAME, _PIXEL_DATA, _PLANE_POSITION,
                     _SEGMENT_IDENTIFICATION, _SEGMENT_NUMBER)
from . import template
from .headers import (_clean_sources, _declare_character_set, _reference_all_sources, _set_slice_measures,
                      _slice_measures, pre_encode_bulk_sequences)

log = logging.getLogger(__name__)


def export_seg(series: ReferenceSeries, segmentation: Segmentation, out: os.PathLike | str, *,
               seg_type: str = "auto", compression: str = "auto", keep_empty_frames: bool = False,
               fractional_type: str = "PROBABILITY", max_fractional_value: int = 255,
               palette: bool = False, split_layers: bool = False, keep_empty_segments: bool = True,
               options: Optional[SegExportOptions] = None, engine: str = "fast",
               progress: Optional[ProgressCallback] = None) -> SegExportResult:
    """Write ``segmentation`` (on the series grid) as a DICOM SEG referencing ``series``.

    Args:
        series: the reference series (its headers are enough).
        segmentation: segments on ``series.geometry`` (see :func:`api.load_annotations`).
        out: the output file; with ``split_layers`` and several layers, ``NAME_layerN.dcm``.
        seg_type: "binary", "labelmap", "fractional" or "auto" (LABELMAP when no two segments
            overlap, otherwise BINARY; FRACTIONAL when the segmentation has fractional values).
        compression: "none", "jpegls", "rle", "jpeg2000" or "auto" (JPEG-LS for LABELMAP and
            FRACTIONAL, none for BINARY: its 1-bit frames are small and JPEG 2000 is slow).
        keep_empty_frames: BINARY/FRACTIONAL: also write frames where a segment is absent, so
            that each segment has a frame for every slice (as the LIDC conversion did).
            LABELMAP always has one frame per slice.
        fractional_type: "PROBABILITY" or "OCCUPANCY".
        palette: LABELMAP: add a palette colour LUT built from the segment colours.
        split_layers: LABELMAP with overlapping segments: one instance per layer instead of
            an error.
        keep_empty_segments: a segment without voxels is described in the SEG (its name, codes,
            colour) with no frames, so that it survives a round trip (default); False leaves it
            out (``SegExportResult.skipped_segments``). A segmentation whose every segment is
            empty is refused either way.
        options: series-level and descriptive attributes.
        engine: "fast" (this module writes the frames) or "highdicom" (highdicom builds every
            frame; slower, same result; used as a reference and a fallback).

    Raises:
        InputError: nothing to export, overlapping segments for LABELMAP, too many segments,
            a compression the type does not allow, fractional values outside [0, 1].
        GeometryError: the segmentation is not on the series grid.
        OutputError: the file cannot be written.
    """
    options = options or SegExportOptions()
    if not segmentation.geometry.same_as(series.geometry):
        raise GeometryError("the segmentation is not on the series grid; resample it first "
                            "(api.load_annotations does)")
    seg_type = seg_type.lower()
    compression = compression.lower()
    if seg_type not in SEG_TYPES:
        raise InputError(f"unknown SEG type {seg_type!r}; expected one of {', '.join(SEG_TYPES)}")
    if compression not in COMPRESSIONS:
        raise InputError(f"unknown compression {compression!r}; expected one of {', '.join(COMPRESSIONS)}")
    if options.algorithm_type.upper() not in ALGORITHM_TYPES:
        raise InputError(f"unknown algorithm type {options.algorithm_type!r}; expected one of "
                         f"{', '.join(ALGORITHM_TYPES)}")
    if fractional_type.upper() not in ("PROBABILITY", "OCCUPANCY"):
        raise InputError(f"unknown fractional type {fractional_type!r}; expected PROBABILITY or OCCUPANCY")
    if not 1 <= max_fractional_value <= 255:
        raise InputError(f"maximum fractional value must be 1..255, got {max_fractional_value}")
    check_compression(*series.geometry.shape[1:], compression, f"series {series.folder}")

    result = SegExportResult()
    presence = segmentation.slice_presence()
    kept, empty = [], set()
    for segment in segmentation.segments:
        if _present_slices(segmentation, segment, presence, "fractional").any():
            kept.append(segment)
        elif keep_empty_segments:
            log.info("segment %r is empty: described in the SEG without frames", segment.name)
            result.empty_segments.append(segment.name)
            empty.add(segment.id)
            kept.append(segment)
        else:
            log.warning("segment %r is empty and is skipped", segment.name)
            result.skipped_segments.append(segment.name)
    if len(empty) == len(kept):
        raise InputError("nothing to export: the segmentation has no non-empty segment")
    if len(kept) > MAX_SEGMENTS:
        raise InputError(f"{len(kept)} segments: a DICOM SEG holds at most {MAX_SEGMENTS}")

    overlap = Segmentation(segmentation.geometry, segmentation.layers, kept).has_overlap
    if seg_type == "auto":
        seg_type = "fractional" if segmentation.fractions else ("binary" if overlap else "labelmap")
        log.info("SEG type chosen: %s", seg_type.upper())
    if compression == "auto":
        compression = DEFAULT_COMPRESSION[seg_type]
    if compression not in ALLOWED_COMPRESSIONS[seg_type]:
        raise InputError(f"{seg_type.upper()} SEG cannot use {compression}; allowed: "
                         f"{', '.join(ALLOWED_COMPRESSIONS[seg_type])}")
    if not series.geometry.in_patient_space and engine == "fast":
        engine = "highdicom"  # no plane positions to assemble: highdicom handles such images
    result.seg_type, result.compression = seg_type, compression

    groups: List[List[Segment]] = [kept]
    if seg_type == "labelmap" and overlap:
        if not split_layers:
            raise InputError(
                "segments overlap (Slicer stores them in "
                f"{segmentation.layers.shape[0]} layers), and a LABELMAP SEG gives each voxel one segment: "
                "use --type binary, or --split-layers for one LABELMAP instance per layer")
        # an empty segment overlaps nothing: it goes with the first layer's instance
        layers = sorted({s.layer for s in kept if s.id not in empty})
        groups = [[s for s in kept if (s.layer == layer and s.id not in empty)
                   or (s.id in empty and layer == layers[0])] for layer in layers]

    out = prepare_output_file(out)
    series_uid = generate_uid()
    result.series_instance_uid = series_uid
    numbered_paths = len(groups) > 1
    for index, group in enumerate(groups):
        path = out.with_name(_layer_name(out.name, index + 1)) if numbered_paths else out
        descriptions, tracking = _segment_descriptions(group, options)
        if palette and seg_type == "labelmap":  # the palette carries the colours (highdicom's rule)
            for description in descriptions:
                del description.RecommendedDisplayCIELabValue
        result.tracking.update(tracking)
        # split groups are single layers: only the one whole group can overlap
        writer = _SegWriter(series, segmentation, group, presence, seg_type, compression, keep_empty_frames,
                            overlap and len(groups) == 1, fractional_type.upper(), max_fractional_value, palette,
                            options, progress)
        sop_uid = generate_uid()
        frames = writer.write(path, descriptions, series_uid, sop_uid, options.instance_number + index, engine)
        result.paths.append(path)
        result.frames.append(frames)
        result.segments.append([s.name for s in group])
        result.segment_numbers.append({s.id: number for number, s in enumerate(group, 1)})
        result.sop_instance_uids.append(sop_uid)
    return result


def _present_slices(segmentation: Segmentation, segment: Segment, presence: Dict[str, np.ndarray],
                    seg_type: str) -> np.ndarray:
    """Which slices hold the segment: voxels, or for FRACTIONAL any non-zero fraction."""
    present = presence[segment.id] if segment.id in presence else np.zeros(segmentation.geometry.shape[0], bool)
    if seg_type == "fractional" and segment.id in segmentation.fractions:
        present = present.copy()
        planes = segmentation.fractions[segment.id]
        present[planes.nonzero_slices() if isinstance(planes, FractionPlanes)
                else [k for k, v in planes.items() if v.any()]] = True
    return present


def _layer_name(name: str, layer: int) -> str:
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}_layer{layer}.{suffix}" if dot else f"{name}_layer{layer}"


def _segment_descriptions(segments: Sequence[Segment], options: SegExportOptions):
    """Segment Sequence items (as highdicom's SegmentDescription holds them), numbered 1..N in
    order, and the tracking ids used."""
    from ...dicom.colors import rgb_to_dicom_lab

    uncoded = [s.name for s in segments if s.terminology is None]
    if uncoded:
        log.warning("%d segment(s) without coded meaning get the default %s: %s", len(uncoded),
                    DEFAULT_TERMINOLOGY.short_text(), ", ".join(uncoded[:10]) + (" ..." if len(uncoded) > 10 else ""))
    descriptions, tracking = [], {}
    for number, segment in enumerate(segments, 1):
        term = segment.terminology or DEFAULT_TERMINOLOGY
        attrs = segment.attributes
        algorithm_type = (attrs.get("SegmentAlgorithmType") or options.algorithm_type).upper()
        if algorithm_type not in ALGORITHM_TYPES:
            raise InputError(f"segment {segment.name!r}: unknown algorithm type {algorithm_type!r}")
        algorithm_name = None
        if algorithm_type != "MANUAL":
            algorithm_name = attrs.get("SegmentAlgorithmName") or options.algorithm_name or "DicomAnnotEmbed"
        tracking_id = attrs.get("TrackingIdentifier") or segment.name
        tracking_uid = attrs.get("TrackingUniqueIdentifier") or generate_uid()
        try:
            description = template.segment_description(
                number, long_string(segment.name), term.category, term.type, algorithm_type,
                algorithm_name=algorithm_name, algorithm_version=options.algorithm_version,
                tracking_id=long_string(tracking_id), tracking_uid=tracking_uid, anatomic_region=term.anatomic_region)
            if term.type_modifier is not None:
                description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                    code_item(term.type_modifier)]
            if term.anatomic_region is not None and term.anatomic_region_modifier is not None:
                description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [
                    code_item(term.anatomic_region_modifier)]
        except ValueError as exc:
            raise InputError(f"segment {segment.name!r}: {exc}") from None
        description.RecommendedDisplayCIELabValue = list(rgb_to_dicom_lab(segment.color))
        if segment.description:
            description.SegmentDescription = long_string(segment.description)
        descriptions.append(description)
        tracking[segment.id] = (tracking_id, tracking_uid)
    return descriptions, tracking


class _SegWriter:
    """Writes one SEG file for one group of segments."""

    def __init__(self, series, segmentation, segments, presence, seg_type, compression, keep_empty_frames,
                 overlap, fractional_type, max_fractional_value, palette, options, progress):
        self.series = series
        self.keep_empty_frames = keep_empty_frames
        self.overlap = overlap  # whether these segments overlap (computed once by export_seg)
        self.segmentation = segmentation
        self.segments: List[Segment] = list(segments)
        self.seg_type = seg_type
        self.compression = compression
        self.fractional_type = fractional_type
        self.max_fractional_value = max_fractional_value
        self.palette = palette
        self.options = options
        self.progress = progress
        order = _highdicom_plane_order(series.geometry)
        present = [_present_slices(segmentation, s, presence, seg_type) for s in self.segments]
        if seg_type == "labelmap":
            self.planes = order
            self.frames = [(-1, k) for k in order]
        else:
            union = np.logical_or.reduce(present)
            self.planes = order if keep_empty_frames else [k for k in order if union[k]]
            self.frames = [(index, k) for index in range(len(self.segments))
                           for k in self.planes if keep_empty_frames or present[index][k]]
        self.rank = {k: n for n, k in enumerate(self.planes, 1)}
        self._fraction_cache: Dict[str, Dict[int, np.ndarray]] = {}

    # --- pixels of one frame ---------------------------------------------------------
    def _label_lut(self) -> List[Tuple[int, np.ndarray]]:
        """Per layer, a table from stored label value to segment number (0 elsewhere)."""
        tables = []
        layers = self.segmentation.layers
        top = int(layers.max(initial=0)) if layers.size else 0
        dtype = np.uint8 if len(self.segments) < 256 else np.uint16
        for layer in range(layers.shape[0]):
            members = [(n, s) for n, s in enumerate(self.segments, 1) if s.layer == layer]
            if not members:
                continue
            table = np.zeros(max(top, max(s.label_value for _, s in members)) + 1, dtype=dtype)
            for number, segment in members:
                table[segment.label_value] = number
            tables.append((layer, table))
        return tables

    def frame_pixels(self) -> Iterator[np.ndarray]:
        """The frames in file order: bool (BINARY), uint8 (FRACTIONAL) or uint8/16 (LABELMAP)."""
        layers = self.segmentation.layers
        if self.seg_type == "labelmap":
            tables = self._label_lut()
            identity = len(tables) == 1 and np.array_equal(tables[0][1], np.arange(len(tables[0][1])))
            for _, k in self.frames:
                if identity:
                    yield np.ascontiguousarray(layers[tables[0][0], k], dtype=tables[0][1].dtype)
                    continue
                frame = np.take(tables[0][1], layers[tables[0][0], k])
                for layer, table in tables[1:]:  # no overlap: the layers' numbers add up
                    frame += np.take(table, layers[layer, k])
                yield frame
        elif self.seg_type == "binary":
            for index, k in self.frames:
                segment = self.segments[index]
                yield layers[segment.layer, k] == segment.label_value
        else:
            scale = float(self.max_fractional_value)
            for index, k in self.frames:
                segment = self.segments[index]
                if segment.id not in self._fraction_cache:  # frames come segment by segment: keep one
                    self._fraction_cache = {segment.id: self.segmentation.fraction_slices(segment)}
                slices = self._fraction_cache[segment.id]
                values = slices.get(k)
                if values is None:
                    yield np.zeros(self.series.geometry.shape[1:], dtype=np.uint8)
                else:
                    yield np.rint(values * scale).astype(np.uint8)

    # --- the highdicom object ----------------------------------------------------------
    def _template_pixels(self, n_planes: int) -> np.ndarray:
        """A tiny pixel array in which every segment has one pixel, on ``n_planes`` planes."""
        rows, columns = self.series.geometry.shape[1:]
        count = len(self.segments)
        if count > rows * columns:
            raise InputError(f"{count} segments do not fit the {rows}x{columns} template frame")
        if self.seg_type == "fractional":
            pixels = np.zeros((n_planes, rows, columns, count), dtype=np.float32)
            flat = pixels.reshape(n_planes, rows * columns, count)
            flat[0, np.arange(count), np.arange(count)] = 1.0
            return pixels
        pixels = np.zeros((n_planes, rows * columns), dtype=np.uint16 if count > 255 else np.uint8)
        pixels[0, :count] = np.arange(1, count + 1)
        return pixels.reshape(n_planes, rows, columns)

    def _palette(self):
        import highdicom as hd

        top = len(self.segments)
        lut = np.zeros((top + 1, 3), dtype=np.uint8)
        for number, segment in enumerate(self.segments, 1):
            lut[number] = segment.color_rgb8
        channels = [hd.PaletteColorLUT(0, lut[:, c], color=name) for c, name in enumerate(("red", "green", "blue"))]
        return hd.PaletteColorLUTTransformation(*channels)

    def _highdicom(self, descriptions, series_uid, sop_uid, instance_number, pixel_array, plane_positions,
                   omit_empty_frames, template_plane: Optional[int] = None):
        import highdicom as hd

        o = self.options
        sources = self.series.datasets
        referenced_only = template_plane is not None and len(sources) > 1
        if referenced_only:
            # highdicom checks and works out the geometry of every source image (0.3 s and more
            # for 200), which the one-plane template does not need: it gets its plane's image,
            # and the references to all images are added below as highdicom writes them.
            sources = [sources[self.series.slices[template_plane].file_index]]
        measures = _slice_measures(self.series)
        sources = _clean_sources(sources, measures[0] if measures else None)
        kwargs = dict(
            source_images=sources, pixel_array=pixel_array,
            segmentation_type=self.seg_type.upper(), segment_descriptions=descriptions,
            series_instance_uid=series_uid, series_number=o.series_number, sop_instance_uid=sop_uid,
            instance_number=instance_number, manufacturer="DicomAnnotEmbed",
            manufacturer_model_name="DicomAnnotEmbed", software_versions=__version__, device_serial_number="1",
            content_label=_cs_label(o.content_label), content_description=o.content_description,
            content_creator_name=o.content_creator_name,
            transfer_syntax_uid=TRANSFER_SYNTAXES[self.compression],
            plane_positions=None if plane_positions is None else [hd.PlanePositionSequence("PATIENT", p)
                                                                  for p in plane_positions],
            omit_empty_frames=omit_empty_frames,
            series_description=long_string(o.series_description or _default_description(self)))
        if self.seg_type == "fractional":
            kwargs.update(fractional_type=self.fractional_type, max_fractional_value=self.max_fractional_value)
        if self.palette and self.seg_type == "labelmap":
            kwargs["palette_color_lut_transformation"] = self._palette()
        try:
            ds = hd.seg.Segmentation(**kwargs)
        except (ValueError, TypeError) as exc:
            raise InputError(f"highdicom refused the segmentation: {exc}") from None
        return self._finish(ds, measures, referenced_only)

    def _own_template(self, descriptions, series_uid, sop_uid, instance_number, position_item: Dataset, plane: int):
        """The one-plane template without highdicom (template.py), None where highdicom builds it."""
        if not template.supports(self.series, self.palette, self.seg_type):
            return None
        o = self.options
        measures = _slice_measures(self.series)
        source = _clean_sources([self.series.datasets[self.series.slices[plane].file_index]],
                                measures[0] if measures else None)[0]
        ds = template.build_template(
            source, seg_type=self.seg_type, compression=self.compression, descriptions=descriptions,
            series_uid=series_uid, sop_uid=sop_uid, instance_number=instance_number, series_number=o.series_number,
            series_description=long_string(o.series_description or _default_description(self)),
            content_label=_cs_label(o.content_label), content_description=o.content_description,
            content_creator_name=o.content_creator_name, plane_position=position_item,
            fractional_type=self.fractional_type, max_fractional_value=self.max_fractional_value)
        return None if ds is None else self._finish(ds, measures, True)

    def _finish(self, ds: Dataset, measures, referenced_only: bool) -> Dataset:
        """What both templates get after construction: options, slice measures, character set,
        the type 2 Content Creator's Name, the references to every source image."""
        o = self.options
        for keyword, value in (("ClinicalTrialSeriesID", o.clinical_trial_series_id),
                               ("ClinicalTrialTimePointID", o.clinical_trial_time_point_id),
                               ("ClinicalTrialCoordinatingCenterName", o.clinical_trial_coordinating_center_name),
                               ("BodyPartExamined", o.body_part_examined)):
            if value:
                setattr(ds, keyword, value)
        _set_slice_measures(ds, measures)
        _declare_character_set(ds)
        if "ContentCreatorName" not in ds:  # type 2: present, empty when unknown (dcmqi warns otherwise)
            ds.ContentCreatorName = ""
        if referenced_only:
            _reference_all_sources(ds, self.series.datasets)
        return ds

    def _full_pixel_array(self) -> np.ndarray:
        """The whole volume for highdicom: labels when no two segments overlap, else one channel each."""
        shape = self.series.geometry.shape
        if self.seg_type == "labelmap" or (self.seg_type == "binary" and not self.overlap):
            tables = self._label_lut()
            labels = np.zeros(shape, dtype=tables[0][1].dtype)
            for layer, table in tables:
                labels += table[self.segmentation.layers[layer]]  # np.take: an int64 copy of the volume
            return labels
        dtype = np.float32 if self.seg_type == "fractional" else bool
        pixels = np.zeros(shape + (len(self.segments),), dtype=dtype)
        for index, segment in enumerate(self.segments):
            if self.seg_type == "fractional":
                for k, values in self.segmentation.fraction_slices(segment).items():
                    pixels[k, :, :, index] = values
            else:
                pixels[..., index] = self.segmentation.layers[segment.layer] == segment.label_value
        return pixels

    def write(self, path: Path, descriptions, series_uid: str, sop_uid: str, instance_number: int,
              engine: str) -> int:
        positions = [_plane_position(self.series, k) for k in range(self.series.geometry.shape[0])] \
            if self.series.geometry.in_patient_space else None
        if engine == "fast":
            plane = self.planes[0]
            position_items = [template.plane_position_item(p) for p in positions]
            header = self._own_template(descriptions, series_uid, sop_uid, instance_number, position_items[plane],
                                        plane)
            if header is None:
                header = self._highdicom(descriptions, series_uid, sop_uid, instance_number,
                                         self._template_pixels(1), [positions[plane]], False, template_plane=plane)
            pieces = _FramePieces.from_template(header, self, [[item] for item in position_items])
            if pieces is not None:
                self._write_fast(path, header, pieces)
                return len(self.frames)
            log.info("SEG: highdicom's per-frame layout is not the expected one; highdicom writes every frame")
        ds = self._highdicom(descriptions, series_uid, sop_uid, instance_number, self._full_pixel_array(),
                             positions, self.seg_type != "labelmap" and not self.keep_empty_frames)
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        return int(ds.NumberOfFrames)

    def _write_fast(self, path: Path, template: Dataset, pieces: "_FramePieces") -> None:
        header = template
        del header[_PER_FRAME]
        # pydicom's rule for the ambiguous 'OB or OW' of native pixel data
        pixel_vr = "OW" if int(header.BitsAllocated) > 8 else "OB"
        if _PIXEL_DATA in header:  # highdicom's template has its plane's pixels
            del header[_PIXEL_DATA]
        if header and max(header.keys()) >= _PER_FRAME:
            raise InputError(f"unexpected element {max(header.keys())} after the per-frame groups")  # pragma: no cover
        header.NumberOfFrames = len(self.frames)
        if self._dimension_organization_3d():
            header.DimensionOrganizationType = "3D"
        elif "DimensionOrganizationType" in header:
            del header.DimensionOrganizationType
        if self.seg_type == "binary":
            header.SegmentsOverlap = "YES" if self.overlap else "NO"
        pre_encode_bulk_sequences(header)
        with atomic_path(path) as tmp:
            header.save_as(tmp, enforce_file_format=True)
            with open(tmp, "ab") as stream:
                pieces.write_sequence(stream, self.frames, self.rank)
                _PixelWriter(header, self.compression, pixel_vr).write(stream, self.frame_pixels(), len(self.frames),
                                                                       self.progress)

    def _dimension_organization_3d(self) -> bool:
        """As highdicom decides: several regularly spaced planes and at most one segment channel."""
        if self.seg_type != "labelmap" and len(self.segments) != 1:
            return False
        if len(self.planes) < 2:
            return False
        return len(set(np.diff(self.planes).tolist())) == 1


def _highdicom_plane_order(geometry: VolumeGeometry) -> List[int]:
    """Slice indices in the order highdicom sorts planes: along the normal of its volume index
    convention (column cosines x row cosines, right-handed), which may run against our k."""
    k_order = list(range(geometry.shape[0]))
    if not geometry.in_patient_space:
        return k_order
    directions = geometry.ijk_to_lps[:3, :3] / np.linalg.norm(geometry.ijk_to_lps[:3, :3], axis=0)
    normal = np.cross(directions[:, 1], directions[:, 0])
    return k_order[::-1] if float(normal @ directions[:, 2]) < 0 else k_order


def _cs_label(text: str) -> str:
    """Content Label is a Code String: upper case, digits, space, underscore; 16 characters."""
    import re

    label = re.sub(r"[^A-Z0-9_ ]", "_", text.upper())[:16]
    return label or "SEGMENTATION"


def _default_description(writer: "_SegWriter") -> str:
    names = ", ".join(s.name for s in writer.segments)
    return f"{writer.seg_type.upper()} SEG: {names}"


def _plane_position(series: ReferenceSeries, k: int) -> list:
    """The source frame's Image Position (Patient), LPS, as highdicom takes it from source images
    (the DS values keep the source's text, as highdicom copies it)."""
    ref = series.slices[k]
    ds = series.datasets[ref.file_index]
    position = None
    if "PerFrameFunctionalGroupsSequence" in ds:
        item = ds.PerFrameFunctionalGroupsSequence[ref.frame]
        if "PlanePositionSequence" in item:
            position = item.PlanePositionSequence[0].ImagePositionPatient
    if position is None and "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        if "PlanePositionSequence" in shared:
            position = shared.PlanePositionSequence[0].ImagePositionPatient
    if position is None:
        position = ds.ImagePositionPatient
    return list(position)


class _FramePieces:
    """Encoded pieces of the per-frame functional group items, taken from highdicom's template
    (one plane, every segment) and re-targeted to each slice."""

    def __init__(self):
        self.order: List[Tuple[int, str]] = []  # (tag, kind) in item order
        self.constant: Dict[int, bytes] = {}
        self.per_slice: Dict[int, Dict[int, bytes]] = {}  # tag -> k -> bytes
        self.per_segment: Dict[int, List[bytes]] = {}  # tag -> segment index -> bytes
        self.content_prefix = b""
        self.content_suffix = b""
        self.dimension_kinds: List[str] = []  # "segment" / "position", in Dimension Index order

    @classmethod
    def from_template(cls, template: Dataset, writer: _SegWriter, positions) -> Optional["_FramePieces"]:
        from pydicom.sequence import Sequence as DicomSequence

        pieces = cls()
        items = template.PerFrameFunctionalGroupsSequence
        expected_items = 1 if writer.seg_type == "labelmap" else len(writer.segments)
        if len(items) != expected_items:
            return None
        for index in template.DimensionIndexSequence:
            pointer = int(index.DimensionIndexPointer)
            if pointer == _SEGMENT_NUMBER:
                pieces.dimension_kinds.append("segment")
            elif pointer == _IMAGE_POSITION:
                pieces.dimension_kinds.append("position")
            else:
                return None
        k0 = writer.planes[0]
        slices = writer.series.slices
        for element in items[0]:
            tag = int(element.tag)
            if tag == _FRAME_CONTENT:
                encoded = raw.encode_element(element)
                values = element.value[0].DimensionIndexValues
                values = list(values) if isinstance(values, (list, tuple)) or hasattr(values, "__len__") else [values]
                marker = raw.element_header(_DIMENSION_INDEX_VALUES, "UL", 4 * len(values))
                at = encoded.find(marker)
                if at < 0 or len(values) != len(pieces.dimension_kinds) or len(element.value[0]) != 1:
                    return None
                start = at + len(marker)
                pieces.content_prefix, pieces.content_suffix = encoded[:start], encoded[start + 4 * len(values):]
                pieces.order.append((tag, "content"))
            elif tag == _PLANE_POSITION:
                encoded = raw.encode_variants(
                    writer.planes, lambda k, tag=tag: DataElement(tag, "SQ", positions[k]),
                    lambda k: [positions[k][0]["ImagePositionPatient"]])
                if encoded is None or encoded[k0] != raw.encode_element(element):
                    return None
                pieces.per_slice[tag] = encoded
                pieces.order.append((tag, "slice"))
            elif tag == _DERIVATION_IMAGE:
                source = element.value[0].SourceImageSequence
                if len(element.value) != 1 or len(source) != 1 or \
                        source[0].ReferencedSOPInstanceUID != slices[k0].sop_instance_uid:
                    return None
                with_frame = "ReferencedFrameNumber" in source[0]

                def derivation(k, element=element, with_frame=with_frame):
                    copy_ = copy.deepcopy(element)
                    reference = copy_.value[0].SourceImageSequence[0]
                    reference.ReferencedSOPInstanceUID = slices[k].sop_instance_uid
                    reference.ReferencedSOPClassUID = writer.series.datasets[slices[k].file_index].SOPClassUID
                    if with_frame:
                        reference.ReferencedFrameNumber = slices[k].frame + 1
                    return copy_

                def varying(k, with_frame=with_frame):
                    parts = [DataElement(0x00081150, "UI", writer.series.datasets[slices[k].file_index].SOPClassUID),
                             DataElement(0x00081155, "UI", slices[k].sop_instance_uid)]
                    return parts + ([DataElement(0x00081160, "IS", slices[k].frame + 1)] if with_frame else [])

                encoded = raw.encode_variants(writer.planes, derivation, varying)
                if encoded is None or encoded[k0] != raw.encode_element(element):
                    return None
                pieces.per_slice[tag] = encoded
                pieces.order.append((tag, "slice"))
            elif tag == _SEGMENT_IDENTIFICATION:
                per_segment = []
                for number, item in enumerate(items, 1):
                    value = item[tag].value
                    if not isinstance(value, DicomSequence) or int(value[0].ReferencedSegmentNumber) != number:
                        return None
                    per_segment.append(raw.encode_element(item[tag]))
                pieces.per_segment[tag] = per_segment
                pieces.order.append((tag, "segment"))
            else:
                encoded = raw.encode_element(element)
                if any(raw.encode_element(item[tag]) != encoded for item in items if tag in item):
                    return None
                pieces.constant[tag] = encoded
                pieces.order.append((tag, "constant"))
        if any(set(int(e.tag) for e in item) != set(int(e.tag) for e in items[0]) for item in items):
            return None
        return pieces

    def write_sequence(self, stream, frames: Sequence[Tuple[int, int]], rank: Dict[int, int]) -> None:
        parts = []
        pack = struct.Struct(f"<{len(self.dimension_kinds)}I").pack
        for index, k in frames:
            body = []
            for tag, kind in self.order:
                if kind == "content":
                    values = [index + 1 if d == "segment" else rank[k] for d in self.dimension_kinds]
                    body.append(self.content_prefix + pack(*values) + self.content_suffix)
                elif kind == "slice":
                    body.append(self.per_slice[tag][k])
                elif kind == "segment":
                    body.append(self.per_segment[tag][index])
                else:
                    body.append(self.constant[tag])
            parts.append(raw.item(b"".join(body)))
        value = b"".join(parts)
        stream.write(raw.element_header(_PER_FRAME, "SQ", len(value)))
        stream.write(value)


class _PixelWriter:
    """Pixel Data written frame by frame: packed bits, native words, or encapsulated fragments."""

    def __init__(self, header: Dataset, compression: str, vr: str):
        self.compression = compression
        self.vr = vr
        self.bits_allocated = int(header.BitsAllocated)
        self.bits_stored = int(header.BitsStored)
        self.photometric = str(header.PhotometricInterpretation)
        self.rows, self.columns = int(header.Rows), int(header.Columns)

    def write(self, stream, frames: Iterator[np.ndarray], count: int, progress) -> None:
        from ...core.progress import track

        frame_iter = iter(frames)
        ticks = track(range(count), progress, "Writing SEG frames")
        if self.compression == "none":
            self._write_native(stream, frame_iter, count, ticks)
        else:
            self._write_encapsulated(stream, frame_iter, count, ticks)

    def _write_native(self, stream, frames, count, ticks) -> None:
        pixels = self.rows * self.columns
        if self.bits_allocated == 1:
            length = (count * pixels + 7) // 8
        else:
            length = count * pixels * (self.bits_allocated // 8)
        stream.write(raw.element_header(_PIXEL_DATA, self.vr, length + length % 2))
        if self.bits_allocated == 1:
            # Bits run on across frame boundaries: pack 8 frames at a time so every chunk
            # ends on a byte boundary whatever the frame size.
            chunk: List[np.ndarray] = []
            for _, frame in zip(ticks, frames):
                chunk.append(frame)
                if len(chunk) == 8:
                    stream.write(np.packbits(np.stack(chunk), bitorder="little").tobytes())
                    chunk = []
            if chunk:
                stream.write(np.packbits(np.stack(chunk), bitorder="little").tobytes())
        else:
            dtype = "<u2" if self.bits_allocated == 16 else "u1"
            for _, frame in zip(ticks, frames):
                stream.write(np.ascontiguousarray(frame, dtype=dtype).tobytes())
        if length % 2:
            stream.write(b"\x00")

    def _encoder(self) -> Callable[[np.ndarray], bytes]:
        """The frame codec: pydicom's encoder, called as highdicom's encode_frame calls it; highdicom's
        own for 1-bit JPEG 2000 (openjpeg directly, which pydicom does not do); for JPEG-LS, the
        function of pyjpegls that pydicom's plugin ends in (the same bytes, test_seg_labelmap_fast.py),
        without pydicom's checks of every frame (0.007 s of the 0.065 s for case C's 200 frames)."""
        syntax = TRANSFER_SYNTAXES[self.compression]
        if self.bits_allocated == 1:
            from highdicom.frame import encode_frame

            return lambda frame: encode_frame(frame, transfer_syntax_uid=syntax, bits_allocated=self.bits_allocated,
                                              bits_stored=self.bits_stored,
                                              photometric_interpretation=self.photometric, pixel_representation=0)
        if self.compression == "jpegls":
            try:
                from jpeg_ls import encode_buffer
            except ImportError:  # pragma: no cover - pyjpegls is a dependency; pydicom's plugin needs it too
                encode_buffer = None
            if encode_buffer is not None:
                dtype = "<u2" if self.bits_allocated == 16 else "u1"
                return lambda frame: bytes(encode_buffer(np.ascontiguousarray(frame, dtype=dtype).tobytes(),
                                                         frame.shape[0], frame.shape[1], 1, self.bits_stored))
        from pydicom.pixels.encoders.base import get_encoder

        encoder = get_encoder(syntax)
        return lambda frame: encoder.encode(
            frame, rows=frame.shape[0], columns=frame.shape[1], samples_per_pixel=1, number_of_frames=1,
            bits_allocated=self.bits_allocated, bits_stored=self.bits_stored,
            photometric_interpretation=self.photometric, pixel_representation=0, planar_configuration=None)

    def _write_encapsulated(self, stream, frames, count, ticks) -> None:
        bits = 8 if self.bits_allocated == 1 else self.bits_allocated
        dtype = np.uint16 if bits == 16 else np.uint8
        encode = self._encoder()
        fragments = []
        empty: Optional[bytes] = None  # every codec here is deterministic: one encoding of an empty frame serves all
        for _, frame in zip(ticks, frames):
            blank = not frame.any()
            if blank and empty is not None:
                fragment = empty
            else:
                fragment = encode(np.ascontiguousarray(frame, dtype=dtype))
                if blank:
                    empty = fragment
            fragments.append(fragment + b"\x00" * (len(fragment) % 2))
        offsets, position = [], 0
        for fragment in fragments:
            offsets.append(position)
            position += 8 + len(fragment)
        offset_table = struct.pack(f"<{len(offsets)}I", *offsets) if position < 2 ** 32 else b""
        stream.write(raw.element_header(_PIXEL_DATA, "OB", raw.UNDEFINED_LENGTH))
        stream.write(raw.item(offset_table))
        for fragment in fragments:
            stream.write(raw.item(fragment))
        stream.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
