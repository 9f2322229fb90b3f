"""Overlay export: segments and markups as overlay planes (60xx) in copies of the
source images, readable by any DICOM viewer (decode.py reads them back).

Each segment becomes one Type R (ROI) plane with Overlay Label = segment name, Overlay
Description = its coded meaning and ROI Area / Mean / Standard Deviation computed from the
image under the mask. Each markup becomes one Type G (graphics) plane drawn on the slices it
crosses. A plane is written on the images where it has pixels; its group is the same on every
image of the output series. Full names, colours, codes and markup control points (LPS) are
kept in one private element so that our own files import back exactly.
"""
from __future__ import annotations

import bisect
import copy
import io
import json
import logging
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pydicom
from pydicom.charset import convert_encodings, default_encoding, encode_string, python_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from ...core.errors import InputError, TooManySegmentsError
from ...core.header_blocks import LONG_VR_BYTES, element_at
from ...core.markup_dicts import markup_to_dict
from ...core.model import AnnotationSet, Markup, Segment
from ...core.outputs import check_output_dir, relocate, staged_folder, write_atomic
from ...core.progress import ProgressCallback, track
from ...core.series import ReferenceSeries, frame_rescales, modality_frames, pixel_data_offset, stored_frames
from .common import (METADATA_VERSION, OVERLAY_GROUPS, PRIVATE_CREATOR, PRIVATE_GROUP, PRIVATE_METADATA_ELEMENT,
                     _frames_of_files, used_overlay_groups)

log = logging.getLogger(__name__)

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
    final_dir = Path(out_dir)
    check_output_dir(final_dir, force)
    if keep_uids:
        if len(batches) > 1:
            raise InputError("--keep-uids cannot be combined with splitting into several series")
        warnings.warn(UID_WARNING, KeepUidsWarning, stacklevel=2)
        log.warning(UID_WARNING)
    # Written into a hidden folder beside out_dir and renamed into place when complete: a failure
    # or a kill never leaves part of a series under final names (core.outputs.staged_folder).
    with staged_folder(final_dir, force) as out_dir:
        for number, batch in enumerate(batches, 1):
            folder = out_dir if len(batches) == 1 else out_dir / f"series_{number:02d}"
            if folder != out_dir:
                folder.mkdir(exist_ok=True)
            for plane, group in zip(batch, free):
                plane.group = group
            result.series.append(_write_series(series, batch, folder, keep_uids, series_description,
                                               (number, len(batches)), progress))
    return relocate(result, out_dir, final_dir)


def _plan_planes(annotations: AnnotationSet, fill_markups: bool, result: OverlayExportResult) -> List[_Plane]:
    from ...core.rasterize import markup_slice_masks

    planes: List[_Plane] = []
    segmentation = annotations.segmentation
    if segmentation is not None:
        presence = segmentation.slice_presence()
        for segment in segmentation.segments:
            layer, present = segmentation.layers[segment.layer], presence[segment.id]
            if not present.any():
                log.warning("segment %r is empty and is skipped", segment.name)
                result.skipped_segments.append(segment.name)
                continue
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
    return markup_to_dict(markup, coordinate_system="LPS")


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
    headers = _DerivedHeaders(new_series_uid, description, names, metadata, keep_uids,
                              texts=[text for p in planes for text in (p.name, p.description)])
    our_groups = {p.group for p in planes}
    shape2d = series.geometry.shape[1:]
    frames_of_file = _frames_of_files(series)
    files = []
    for file_index in track(range(len(series.files)), progress,
                            "Writing overlays" + (f" ({part[0]}/{part[1]})" if part[1] > 1 else "")):
        source = _SourceFile(series.files[file_index], series.datasets[file_index], our_groups)
        frames = frames_of_file[file_index]
        statistics = _RoiStatistics(source)
        stacks = []
        for plane in planes:
            masks = [plane.slice_mask(k) for _, k in frames]
            stacks.append(np.stack([np.zeros(shape2d, bool) if m is None else m for m in masks])
                          if any(m is not None and m.any() for m in masks) else None)
        # Planes are written up to the last one with pixels on this image, empty ones included:
        # validators (dciodvfy) expect the overlay groups of an image to have no gaps.
        last = max((n for n, stack in enumerate(stacks) if stack is not None), default=-1)
        charset = headers.charset(source.header)
        encoder = _ElementEncoder(source.header, charset)
        empty = np.zeros((len(frames),) + shape2d, bool)
        changes, sop_instance_uid = headers.changes(source.header, encoder, charset)
        for plane, stack in zip(planes[:last + 1], stacks):
            changes[plane.group << 16] = _plane_bytes(
                encoder, plane, empty if stack is None else stack,
                statistics if plane.overlay_type == "R" and stack is not None else None, len(frames) > 1)
        out = folder / f"IMG{file_index + 1:05d}.dcm"
        write_atomic(out, lambda stream, s=source, c=changes, u=sop_instance_uid: headers.write(stream, s, c, u))
        files.append(str(out))
    return OverlaySeries(str(folder), new_series_uid, description, files,
                         {f"{p.group:04X}": p.name for p in planes})


class _SourceFile:
    """One source image: its header (from load_series) and, when the output can be written by
    splicing, the file's bytes.

    pydicom writes element by element, which made writing our files cost more than twice
    pydicom's own read + write of the source (benchmark notes). So the output is the source's
    bytes with the changed elements replaced and the overlay groups inserted: nothing is
    parsed twice, nothing unchanged is encoded again. The header gives each element's position
    in the file, checked against the bytes. pydicom reads and writes the files this does not
    suit (``data`` is None): deflated files, files whose encoding is not their transfer
    syntax's, files not in tag order, headers not read by load_series, files changed since,
    and files that already have elements in one of our overlay groups.
    """

    def __init__(self, path: str, header: Dataset, our_groups: Iterable[int]):
        self.path, self.header = path, header
        self.offset = pixel_data_offset(header)
        self.data: Optional[bytes] = None
        self._full: Optional[Dataset] = None
        syntax = header.file_meta.get("TransferSyntaxUID")
        self.tags = [int(tag) for tag in header.keys()]  # the file's order (pydicom keeps it); int sorts faster
        if (self.offset is None or syntax is None or not syntax.is_transfer_syntax
                or syntax == DeflatedExplicitVRLittleEndian
                or (syntax.is_implicit_VR, syntax.is_little_endian) != header.original_encoding
                or self.tags != sorted(self.tags) or any(tag >> 16 in our_groups for tag in self.tags)):
            return
        with open(path, "rb") as stream:
            if os.fstat(stream.fileno()).st_mtime == getattr(header, "timestamp", None):
                self.data = stream.read()

    def full(self) -> Dataset:
        """The whole file, read by pydicom."""
        if self._full is None:
            self._full = pydicom.dcmread(self.path)
        return self._full

    def pixels(self) -> Tuple[Dataset, Optional[memoryview]]:
        """The image for ROI statistics: the header and Pixel Data's value taken from the bytes
        when it is native, else the whole file read by pydicom (and None)."""
        if self.data is not None and self.offset + 12 <= len(self.data):
            tag, _, length, at = self._element_at(self.offset)
            if tag == 0x7FE00010 and at + length <= len(self.data):  # not encapsulated (undefined length)
                return self.header, memoryview(self.data)[at:at + length]
        return self.full(), None

    def _element_at(self, start: int) -> Tuple[int, Optional[bytes], int, int]:
        """Tag, VR (None: implicit), value length and value position of the element at ``start``."""
        return element_at(self.data, start, *self.header.original_encoding)

    def element_start(self, index: int) -> Optional[int]:
        """Where the header's element number ``index`` (file order) starts in ``data``, the end of
        the header for ``index == len(tags)``; None when its position does not match the bytes."""
        if index == len(self.tags):
            return self.offset
        tag = self.tags[index]
        element = self.header.get_item(tag, keep_deferred=True)
        value_at = element.value_tell if element.is_raw else element.file_tell
        implicit, little = self.header.original_encoding
        tag_bytes = struct.pack("<HH" if little else ">HH", tag >> 16, tag & 0xFFFF)
        for header_length in (8,) if implicit else (8, 12):
            start = (value_at or 0) - header_length
            if (start >= 0 and self.data[start:start + 4] == tag_bytes
                    and (implicit or (self.data[start + 4:start + 6] in LONG_VR_BYTES) == (header_length == 12))):
                return start
        return None

    def splice(self, changes: Dict[int, bytes]) -> Optional[List[bytes]]:
        """The dataset's bytes with the encoded elements of ``changes`` (by tag; for an overlay
        group, by group << 16) in place of the header's or inserted in tag order, followed by
        Pixel Data and the rest of the file; None when a position does not check."""
        view = memoryview(self.data)
        # pydicom does not write Group Length elements (retired) above the file meta: nor do we.
        changes = {**{tag: b"" for tag in self.tags if tag & 0xFFFF == 0 and tag >> 16 > 6}, **changes}
        position = self.element_start(0)
        parts = []
        for tag in sorted(changes):
            index = bisect.bisect_left(self.tags, tag)
            start = self.element_start(index)
            if start is None or position is None or start < position:
                return None
            parts += [view[position:start], changes[tag]]
            replaced = index < len(self.tags) and self.tags[index] == tag
            position = self.element_start(index + 1) if replaced else start
        if position is None:
            return None
        parts.append(view[position:])
        return parts



class _DerivedHeaders:
    """What the export changes in the headers of one output series (a derived image in a new
    series, with our private metadata), encoded, and the writing of each file.

    The elements that are the same in every file are encoded by pydicom once per encoding, the
    others by _ElementEncoder: pydicom's writer costs tens of microseconds per element, sequences
    more (benchmark notes).
    """

    def __init__(self, series_uid: str, description: str, names: str, metadata: str, keep_uids: bool,
                 texts: Sequence[str] = ()):
        self.keep_uids = keep_uids
        self.derivation_description = _lo_text(f"Overlay planes added by DicomAnnotEmbed: {names}", 1024)
        self.fixed: List[DataElement] = [] if keep_uids else [
            _element("SeriesInstanceUID", series_uid),
            _element("SeriesDescription", _lo(description)),
            _element("DerivationDescription", self.derivation_description),
            _element("DerivationCodeSequence", DicomSequence([_code("113076", "DCM", "Segmentation")]))]
        self.metadata = metadata
        # The text we write (the private metadata is JSON with \u escapes: ASCII).
        self.texts = list(texts) + ([] if keep_uids else [_lo(description), self.derivation_description])
        self._charsets: Dict[str, Optional[str]] = {}
        self._encoded: Dict[tuple, Dict[int, bytes]] = {}  # (encoding, charset, private slot) -> fixed elements
        self._file_meta: Dict[tuple, Tuple[bytes, bytes]] = {}  # see _file_meta_bytes

    def charset(self, header: Dataset) -> Optional[str]:
        """The Specific Character Set the output must declare when it differs from the header's:
        "ISO_IR 192" (UTF-8) when a text we write does not fit the header's character set (none
        declared: ASCII), else None (the source's is kept)."""
        declared = header.get("SpecificCharacterSet")
        key = str(declared)
        if key not in self._charsets:
            self._charsets[key] = None if all(_fits(text, declared) for text in self.texts) else UTF8
        return self._charsets[key]

    def changes(self, header: Dataset, encoder: _ElementEncoder,
                charset: Optional[str] = None) -> Tuple[Dict[int, bytes], str]:
        """The changed and added elements of one image (tag -> encoded element), and its new SOP
        Instance UID; ``charset``: the new Specific Character Set (see :meth:`charset`)."""
        changes = dict(self._fixed_elements(header, charset))
        if charset is not None:
            changes[0x00080005] = encoder.text(0x0008, 0x0005, "CS", charset)
        if self.keep_uids:
            return changes, header.SOPInstanceUID
        e, uid = encoder, generate_uid()
        enhanced = _is_enhanced(header)
        # Value 2: SECONDARY on classic images; enhanced IODs (C.8.16.1.1, C.8.13.1.1.1) allow
        # only PRIMARY there (dciodvfy: "Unrecognized enumerated value"): DERIVED\PRIMARY.
        second = "PRIMARY" if enhanced else "SECONDARY"
        image_type = header.get("ImageType") or ["ORIGINAL", "PRIMARY"]
        image_type = [image_type] if isinstance(image_type, str) else list(image_type)
        image_type[0] = "DERIVED"
        if len(image_type) > 1:
            image_type[1] = second
        series_number = (int(header.get("SeriesNumber") or 0) % 100000) + 1000
        changes[0x00080008] = e.text(0x0008, 0x0008, "CS", "\\".join(image_type))
        changes[0x00080018] = e.text(0x0008, 0x0018, "UI", uid)
        changes[0x00200011] = e.text(0x0020, 0x0011, "IS", str(series_number))
        if not enhanced:
            # Source Image Sequence: one item, the source image with its purpose of reference code.
            purpose = e.sequence(0x0040, 0xA170, [
                e.text(0x0008, 0x0100, "SH", "121322") + e.text(0x0008, 0x0102, "SH", "DCM")
                + e.text(0x0008, 0x0104, "LO", "Source image for image processing operation")])
            changes[0x00082112] = e.sequence(0x0008, 0x2112, [
                e.text(0x0008, 0x1150, "UI", header.SOPClassUID) + e.text(0x0008, 0x1155, "UI", header.SOPInstanceUID)
                + purpose])
            return changes, uid
        # Enhanced multi-frame: Frame Type and the derivation live in the functional groups.
        derivation_in_frames = False
        for keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
            if keyword not in header:
                continue
            groups = copy.deepcopy(header[keyword])
            for item in groups.value:
                derivation_in_frames |= keyword.startswith("PerFrame") and "DerivationImageSequence" in item
                for element in item:
                    if element.keyword.endswith("FrameTypeSequence"):
                        for frame_type in element.value:
                            ft = list(frame_type.FrameType)
                            ft[0], ft[1] = "DERIVED", "PRIMARY"
                            frame_type.FrameType = ft
            if keyword.startswith("Shared") and groups.value and not derivation_in_frames:
                # Derivation Image Functional Group (C.7.6.16.2.6), for all frames: the source
                # instance (every frame of it), how it was derived.
                groups.value[0].DerivationImageSequence = DicomSequence([self._derivation_item(header)])
            changes[groups.tag] = _pydicom_bytes(groups, header, charset)
        if not derivation_in_frames:  # Source Image Evidence: needed with a Source Image Sequence in the groups
            changes[0x00089154] = _pydicom_bytes(DataElement(0x00089154, "SQ", DicomSequence(
                [_source_evidence(header)])), header, charset)
        return changes, uid

    def _derivation_item(self, header: Dataset) -> Dataset:
        source = Dataset()
        source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID = header.SOPClassUID, header.SOPInstanceUID
        source.PurposeOfReferenceCodeSequence = DicomSequence(
            [_code("121322", "DCM", "Source image for image processing operation")])
        item = Dataset()
        item.DerivationDescription = self.derivation_description
        item.DerivationCodeSequence = DicomSequence([_code("113076", "DCM", "Segmentation")])
        item.SourceImageSequence = DicomSequence([source])
        return item

    def _fixed_elements(self, header: Dataset, charset: Optional[str]) -> Dict[int, bytes]:
        """The elements that are the same in every file, with our private creator in the first
        free slot of the header (as pydicom's private_block) and our metadata."""
        base = PRIVATE_GROUP << 16
        creators = {tag & 0xFF: tag for tag in header.keys()
                    if tag >> 16 == PRIVATE_GROUP and 0x10 <= tag & 0xFFFF <= 0xFF}
        slot = next((s for s, tag in creators.items() if header[tag].value == PRIVATE_CREATOR), None)
        new_creator = slot is None
        if new_creator:
            slot = next(s for s in range(0x10, 0x100) if s not in creators)
        enhanced = _is_enhanced(header)  # its derivation is in the functional groups (see changes)
        key = (header.original_encoding, charset or str(header.get("SpecificCharacterSet")), slot, new_creator,
               enhanced)
        if key not in self._encoded:
            fixed = [e for e in self.fixed if not (enhanced and e.keyword.startswith("Derivation"))]
            elements = fixed + [DataElement(base | slot << 8 | PRIVATE_METADATA_ELEMENT, "UT", self.metadata)]
            if new_creator:
                elements.append(DataElement(base | slot, "LO", PRIVATE_CREATOR))
            self._encoded[key] = {element.tag: _pydicom_bytes(element, header, charset) for element in elements}
        return self._encoded[key]

    def write(self, stream: BinaryIO, source: _SourceFile, changes: Dict[int, bytes], sop_instance_uid: str) -> None:
        """Write one file: the source with ``changes`` (see _SourceFile.splice)."""
        header = source.header
        # A new character set where the source declared one: every text element is re-encoded
        # (by pydicom); without one the source's text is ASCII, which UTF-8 keeps as it is.
        transcode = 0x00080005 in changes and _declared(header.get("SpecificCharacterSet")) != []
        parts = source.splice(changes) if source.data is not None and not transcode else None
        if parts is not None:
            stream.write(self._file_meta_bytes(header, sop_instance_uid))
            stream.writelines(parts)
            return
        # pydicom reads and writes the whole file, with the same elements (read from their bytes).
        ds = source.full()
        if transcode:
            ds.decode()  # every text value read in the source's character set before it changes
        changed = read_dataset(io.BytesIO(b"".join(changes.values())), *header.original_encoding)
        if 0x00080005 in changes:  # values of ours, in the new character set, converted while it is known
            encodings = convert_encodings(UTF8)
            changed = {tag: convert_raw_data_element(changed.get_item(tag), encoding=encodings, ds=changed)
                       for tag in changed.keys()}
        ds.update(changed)
        ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
        ds.save_as(stream, enforce_file_format=True)

    def _file_meta_bytes(self, header: Dataset, sop_instance_uid: str) -> bytes:
        """Preamble and File Meta Information as pydicom's dcmwrite(enforce_file_format=True) writes
        them. They differ between files in Media Storage SOP Instance UID only (and the group
        length), so pydicom writes them once per series and each file gets its UID spliced in."""
        key = tuple((tag, repr(element.value)) for tag, element in header.file_meta.items()
                    if tag not in (0x00020000, 0x00020003)) + (header.get("SOPClassUID"), header.preamble)
        value = sop_instance_uid.encode() + b"\0" * (len(sop_instance_uid) % 2)  # explicit VR little endian
        uid_element = struct.pack("<HH2sH", 0x0002, 0x0003, b"UI", len(value)) + value
        if key not in self._file_meta:
            # Copies of the elements: pydicom's writer sets some in place, and they are the header's.
            meta = FileMetaDataset({tag: copy.copy(element) for tag, element in header.file_meta.items()
                                    if tag != 0x00020000})  # the group length is recomputed
            meta.add(_element("MediaStorageSOPInstanceUID", sop_instance_uid))
            sop_class = header.get("SOPClassUID")
            if "MediaStorageSOPClassUID" not in meta or (sop_class and meta.MediaStorageSOPClassUID != sop_class):
                meta.add(_element("MediaStorageSOPClassUID", sop_class))
            buffer = DicomBytesIO()
            write_file_meta_info(buffer, meta, enforce_standard=True)
            encoded = buffer.getvalue()
            at = encoded.index(uid_element)
            self._file_meta[key] = ((header.preamble or b"\0" * 128) + b"DICM" + encoded[:at],
                                    encoded[at + len(uid_element):])
        before, after = self._file_meta[key]
        length = len(before) - 132 - 12 + len(uid_element) + len(after)  # after the group length element
        return before[:132 + 8] + struct.pack("<L", length) + before[132 + 12:] + uid_element + after


def _source_evidence(header: Dataset) -> Dataset:
    """Hierarchical SOP Instance Reference Macro (C.17-3) item naming the source image."""
    instance = Dataset()
    instance.ReferencedSOPClassUID, instance.ReferencedSOPInstanceUID = header.SOPClassUID, header.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = header.SeriesInstanceUID
    series.ReferencedSOPSequence = DicomSequence([instance])
    study = Dataset()
    study.StudyInstanceUID = header.StudyInstanceUID
    study.ReferencedSeriesSequence = DicomSequence([series])
    return study


def _is_enhanced(header: Dataset) -> bool:
    """Whether the image is of an enhanced multi-frame IOD (functional groups)."""
    return "SharedFunctionalGroupsSequence" in header or "PerFrameFunctionalGroupsSequence" in header


def _element(keyword: str, value) -> DataElement:
    return DataElement(keyword, dictionary_VR(keyword), value)


def _pydicom_bytes(element: DataElement, header: Dataset, charset: Optional[str] = None) -> bytes:
    """An element as pydicom writes it in the header's encoding and character set (``charset``
    when given)."""
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = header.original_encoding
    encodings = convert_encodings(charset or header.get("SpecificCharacterSet") or default_encoding)
    write_data_element(buffer, element, encodings)
    return buffer.getvalue()


UTF8 = "ISO_IR 192"


def _declared(charset) -> List[str]:
    """The declared character set terms; [] for the default repertoire (ASCII)."""
    terms = [charset] if isinstance(charset, str) else list(charset or [])
    terms = [str(term).strip() for term in terms]
    return [] if all(term in ("", "ISO_IR 6", "ISO 2022 IR 6") for term in terms) else terms


def _fits(text: str, charset) -> bool:
    """Whether ``text`` can be written in the declared character set without loss (a set with
    code extensions only for ASCII text: pydicom picks their escape sequences itself)."""
    terms = _declared(charset)
    if not terms or len(terms) > 1 or text.isascii():
        return text.isascii()
    codec = python_encoding.get(terms[0])
    try:
        return codec is not None and text.encode(codec) is not None
    except (UnicodeError, LookupError):
        return False


class _RoiStatistics:
    """ROI Area, Mean and Standard Deviation under a mask, in modality units (HU for CT).

    Pixels are decoded once per image, and only if a segment is on it. With one linear rescale
    for all frames the statistics are taken on the stored values and rescaled (no float image)."""

    def __init__(self, source: _SourceFile):
        self._source = source
        self._ds: Optional[Dataset] = None
        self._pixel_data: Optional[memoryview] = None
        self._stored: Optional[np.ndarray] = None
        self._rescales = None

    def __call__(self, masks: np.ndarray) -> Tuple[int, float, float]:
        if self._ds is None:
            self._ds, self._pixel_data = self._source.pixels()
            self._stored = stored_frames(self._ds, pixel_data=self._pixel_data)
            self._rescales = frame_rescales(self._ds)
        if self._rescales is not None and len(set(self._rescales)) == 1:
            slope, intercept = self._rescales[0]
            inside = self._stored[masks].astype(np.float64)
            return inside.size, float(inside.mean()) * slope + intercept, float(inside.std()) * abs(slope)
        inside = modality_frames(self._ds, pixel_data=self._pixel_data)[masks].astype(np.float64)
        return inside.size, float(inside.mean()), float(inside.std())


class _ElementEncoder:
    """Elements as bytes in a dataset's encoding and character set, as pydicom.filewriter writes
    them (the tests compare), for the elements written per plane and per file."""

    def __init__(self, ds: Dataset, charset: Optional[str] = None):
        self.implicit, little = ds.original_encoding
        self.order = "<" if little else ">"
        self.encodings = convert_encodings(charset or ds.get("SpecificCharacterSet") or default_encoding)

    def element(self, group: int, element: int, vr: str, value: bytes) -> bytes:
        if len(value) % 2:
            value += b"\0" if vr in ("OB", "OW", "UI") else b" "
        tag = struct.pack(self.order + "HH", group, element)
        if self.implicit:
            return tag + struct.pack(self.order + "L", len(value)) + value
        if vr.encode() in LONG_VR_BYTES:
            return tag + vr.encode() + struct.pack(self.order + "2xL", len(value)) + value
        return tag + vr.encode() + struct.pack(self.order + "H", len(value)) + value

    def numbers(self, group: int, element: int, vr: str, *values: int) -> bytes:
        code = {"US": "H", "SS": "h"}[vr]
        return self.element(group, element, vr, struct.pack(self.order + code * len(values), *values))

    def text(self, group: int, element: int, vr: str, value: str) -> bytes:
        return self.element(group, element, vr, encode_string(value, self.encodings) if value else b"")

    def sequence(self, group: int, element: int, items: List[bytes]) -> bytes:
        """A sequence of items given as their encoded elements (defined lengths, as pydicom)."""
        return self.element(group, element, "SQ", b"".join(
            struct.pack(self.order + "HHL", 0xFFFE, 0xE000, len(item)) + item for item in items))


def _plane_bytes(encoder: _ElementEncoder, plane: _Plane, masks: np.ndarray,
                 statistics: Optional[_RoiStatistics], multiframe: bool) -> bytes:
    """One overlay plane's elements, encoded; ``masks`` is (frames, rows, columns) in frame order."""
    g, e = plane.group, encoder
    rows, columns = masks.shape[1:]
    parts = [e.numbers(g, 0x0010, "US", rows), e.numbers(g, 0x0011, "US", columns)]
    if multiframe:
        parts.append(e.text(g, 0x0015, "IS", str(masks.shape[0])))
    parts += [e.text(g, 0x0022, "LO", _lo(plane.description)), e.text(g, 0x0040, "CS", plane.overlay_type),
              e.numbers(g, 0x0050, "SS", 1, 1)]
    if multiframe:
        parts.append(e.numbers(g, 0x0051, "US", 1))
    parts += [e.numbers(g, 0x0100, "US", 1), e.numbers(g, 0x0102, "US", 0)]
    if statistics is not None:
        area, mean, std = statistics(masks)
        parts += [e.text(g, 0x1301, "IS", str(area)), e.text(g, 0x1302, "DS", _ds(mean)),
                  e.text(g, 0x1303, "DS", _ds(std))]
    parts.append(e.text(g, 0x1500, "LO", _lo(plane.name)))
    # Overlay bits run on across frames, first pixel in the lowest bit, padded to even length.
    parts.append(e.element(g, 0x3000, "OW", np.packbits(masks.ravel(), bitorder="little").tobytes()))
    return b"".join(parts)


def _lo(text: str) -> str:
    return _lo_text((text or "").replace("\\", "/"), _LO_MAX)


def _ds(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.4e}"


def _lo_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` bytes in UTF-8 (the longest of the encodings we write: checkers
    count a value's bytes), ending in "~" when cut."""
    encoded = text.encode("utf-8")
    return text if len(encoded) <= limit else encoded[:limit - 1].decode("utf-8", "ignore") + "~"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item
