"""Overlay import: every overlay plane of a series (ours, scanner-written, legacy in Pixel
Data's high bits) back into segments, and our markups from the private metadata.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ...core import arrays
from ...core.errors import InputError
from ...core.headers import header_int
from ...core.inputs import read_dicom_file, reading
from ...core.model import AnnotationSet, Markup, Segment, Segmentation, Terminology
from ...core.progress import ProgressCallback, track
from ...core.series import ReferenceSeries, gc_paused, header_value, is_deflated, load_series, stored_frames
from ...core.markup_dicts import markup_from_dict
from .common import OVERLAY_GROUPS, _frames_of_files, _private_metadata


#: A piece of a mask on one slice: top row, left column and the (rows, columns) block: bool,
#: or _PackedRows (defined below) until painted.
_Piece = Tuple[int, int, "np.ndarray | _PackedRows"]


@dataclass
class _Found:
    name: str
    overlay_type: str
    metadata: dict
    slices: Dict[int, List[_Piece]] = field(default_factory=dict)  # k -> pieces, in image pixels


def import_overlays(source: ReferenceSeries | os.PathLike | str, series_uid: Optional[str] = None,
                    progress: Optional[ProgressCallback] = None) -> AnnotationSet:
    """Read every overlay plane of a series into segments (and our markups) on its grid.

    Works on our files (names, colours, codes and markups restored from the private metadata),
    on scanner-written overlays (named from Overlay Label, else Overlay Description, else the
    group), and on legacy overlays stored in unused high bits of Pixel Data.

    Raises:
        InputError: the series carries no overlay plane.
    """
    decoded: Dict[str, Union[_FileOverlays, InputError]] = {}
    parsed: Dict[object, dict] = {}  # the same metadata text is in every file of a series
    with gc_paused():  # everything made here stays alive until the segments are built
        if isinstance(source, ReferenceSeries):
            series = source
        else:
            # Each file's planes are decoded as its header is read, from the bytes it was read
            # from: reading them from the file again was a quarter of the import (benchmark notes).
            # Errors wait until the file turns out to be in the chosen series.
            def decode(path: str, ds: Dataset, head: Optional[bytes]) -> None:
                if series_uid is None or str(header_value(ds, "SeriesInstanceUID", "")) == series_uid:
                    try:
                        decoded[path] = _decode_file(_OverlayElements(ds, path, head), path, parsed)
                    except InputError as error:
                        decoded[path] = error

            series = load_series(source, series_uid, progress, on_header=decode)
        shape2d = series.geometry.shape[1:]
        found: Dict[Tuple[int, str], _Found] = {}
        markups: Dict[str, Markup] = {}
        frames_of_file = _frames_of_files(series)
        for file_index in track(range(len(series.files)), progress, "Reading overlays"):
            path = series.files[file_index]
            planes = decoded.pop(path, None)
            if isinstance(planes, InputError):
                raise planes
            if planes is None:
                planes = _decode_file(_OverlayElements(series.datasets[file_index], path), path, parsed)
            _add_file(planes, dict(frames_of_file[file_index]), shape2d, found, markups)
        if not found and not markups:
            raise InputError("no overlay planes in this series", series.folder)
        # Segments in overlay group order: the order in which they were exported.
        ordered = [found[key] for key in sorted(found, key=lambda key: key[0])]
        return AnnotationSet(series.geometry, _segmentation(series.geometry, ordered), list(markups.values()))


@dataclass
class _FileOverlays:
    """The overlay planes of one file: per group its key (group, segment), name, type, our
    metadata and the (frame, top row, left column, bool block) pieces with pixels; our markups."""

    groups: List[Tuple[Tuple[int, str], str, str, dict, List[Tuple[int, int, int, np.ndarray]]]]
    markups: List[Markup]


def _decode_file(elements: "_OverlayElements", path: str, parsed: Dict[object, dict]) -> _FileOverlays:
    """Decode the overlay planes of one file (see _FileOverlays).

    Raises:
        InputError: an overlay group that cannot be read (the message names the file).
    """
    try:
        with reading(path, "the overlay planes"):  # elements pydicom cannot decode name the file
            return _decode_groups(elements, path, parsed)
    except (ValueError, TypeError, KeyError, IndexError, struct.error) as error:  # values pydicom cannot convert
        raise InputError(f"overlay planes cannot be read ({error})", path) from None


def _decode_groups(elements: "_OverlayElements", path: str, parsed: Dict[object, dict]) -> _FileOverlays:
    ds = elements.ds
    metadata = _private_metadata(ds, parsed).get("planes", {})
    result = _FileOverlays([], [])
    legacy_words: List[np.ndarray] = []  # stored pixel words, read once per file if needed
    for group in OVERLAY_GROUPS:
        if group << 16 | 0x0010 not in elements.tags:
            continue
        meta = metadata.get(f"{group:04X}", {})
        if meta.get("kind") == "markup":
            result.markups.append(_markup_from_json(meta["markup"], path))
            continue
        name = meta.get("name") or _text(ds, group, 0x1500) or _text(ds, group, 0x0022) or f"Overlay {group:04X}"
        pieces: List[Tuple[int, int, int, np.ndarray]] = []
        result.groups.append(((group, meta.get("id") or name), name,
                              elements.text(group, 0x0040) or meta.get("overlay_type") or "G", meta, pieces))
        blocks = _plane_blocks(elements, group, path, legacy_words)
        if not any(block is not None for block in blocks):
            continue  # about half the planes: written empty to keep the groups contiguous
        origin = elements.numbers(group, 0x0050) or (1, 1)
        origin_frame = (elements.number(group, 0x0051) or 1) - 1
        for index, block in enumerate(blocks):
            if block is not None:
                pieces.append((origin_frame + index, block[0] + int(origin[0]) - 1, int(origin[1]) - 1, block[1]))
    return result


def _add_file(planes: _FileOverlays, slice_of_frame: Dict[int, int], shape2d: Tuple[int, int],
              found: Dict[Tuple[int, str], _Found], markups: Dict[str, Markup]) -> None:
    """Add one file's planes to ``found`` (by group and segment, on slices k) and ``markups``."""
    for markup in planes.markups:
        markups.setdefault(markup.name, markup)
    for key, name, overlay_type, meta, pieces in planes.groups:
        if key not in found:
            found[key] = _Found(name, overlay_type, meta)
        for frame, row, column, block in pieces:
            k = slice_of_frame.get(frame)
            piece = _placed(row, column, block, shape2d) if k is not None else None
            if piece is not None:
                found[key].slices.setdefault(k, []).append(piece)


class _OverlayElements:
    """Overlay element values of one header, read from their raw bytes where pydicom has not
    converted them yet (little endian): pydicom's conversion of ~8 elements per plane was the
    largest cost of the import (benchmark notes). Anything else goes through pydicom.

    load_series defers Overlay Data (series.DEFER_SIZE): it is taken from the block of bytes
    the header was parsed from (``head``), else read here, all planes of a file in one read."""

    def __init__(self, ds: Dataset, path: str, head: Optional[bytes] = None):
        self.ds, self.path = ds, path
        # int keys: looking an int up among pydicom's BaseTag keys calls BaseTag.__eq__ (Python)
        self.elements = {int(tag): item for tag, item in ds.items()}
        self.tags = self.elements.keys()
        self.little = ds.original_encoding[1] is True
        # (file position, bytes) of all deferred data: the block the header was read from, if any
        self._deferred: Optional[Tuple[int, memoryview]] = None if head is None else (0, memoryview(head))

    def _raw(self, group: int, element: int, vr: str) -> Tuple[bool, Optional[bytes]]:
        """(present, the value's bytes when readable here, else None)."""
        item = self.elements.get(group << 16 | element)
        if item is None:
            return False, None
        if item.is_raw and self.little and item.VR in (None, vr):
            return True, item.value
        return True, None

    def _value(self, group: int, element: int):
        return self.ds[group << 16 | element].value

    def number(self, group: int, element: int, vr: str = "US") -> Optional[int]:
        """A US or IS value (None when absent or empty)."""
        present, raw = self._raw(group, element, vr)
        if raw is not None and vr == "US" and len(raw) == 2:
            return _US.unpack(raw)[0]
        if raw is not None and vr == "IS" and raw.strip(b" \0").isdigit():
            return int(raw.strip(b" \0"))
        value = self._value(group, element) if present else None
        return int(value) if value not in (None, "") else None

    def numbers(self, group: int, element: int) -> Optional[Tuple[int, ...]]:
        """An SS value of several numbers (Overlay Origin)."""
        present, raw = self._raw(group, element, "SS")
        if raw is not None and len(raw) == 4:
            return _SS2.unpack(raw)
        value = self._value(group, element) if present else None
        return tuple(int(v) for v in value) if value else None

    def text(self, group: int, element: int) -> str:
        """A CS value."""
        present, raw = self._raw(group, element, "CS")
        if raw is not None and raw.isascii():
            return raw.decode("ascii").strip(" \0")
        return str(self._value(group, element) or "") if present else ""

    def data(self, group: int) -> Optional[bytes]:
        """Overlay Data's bytes as stored (little endian only), else None."""
        item = self.elements.get(group << 16 | 0x3000)
        if item is None or not item.is_raw or not self.little or item.VR not in (None, "OB", "OW"):
            return None
        if item.value is not None or item.length in (0, 0xFFFFFFFF):
            return item.value
        if is_deflated(self.ds):  # its positions are in the inflated copy pydicom parsed, not in the file
            return None
        if self._deferred is None:  # deferred by load_series
            self._deferred = self._read_deferred()
        start, data = self._deferred
        at = item.value_tell - start
        return data[at:at + item.length] if 0 <= at and at + item.length <= len(data) else None

    def _read_deferred(self) -> Tuple[int, memoryview]:
        """The file's bytes from the first to the end of the last deferred Overlay Data value."""
        items = [self.elements.get(group << 16 | 0x3000) for group in OVERLAY_GROUPS]
        spans = [(item.value_tell, item.value_tell + item.length) for item in items
                 if item is not None and item.is_raw and item.value is None and item.length != 0xFFFFFFFF]
        start, end = min(s for s, _ in spans), max(e for _, e in spans)
        with open(self.path, "rb") as stream:
            stream.seek(start)
            return start, memoryview(stream.read(end - start))


_US, _SS2 = struct.Struct("<H"), struct.Struct("<2h")


def _plane_blocks(elements: _OverlayElements, group: int, path: str,
                  legacy_words: List[np.ndarray]) -> List[Optional[Tuple[int, np.ndarray]]]:
    """For each frame of an overlay group: a row and the rows from it that hold all the frame's
    pixels (give or take a few empty rows; bool, or _PackedRows), or None when the frame is empty.

    Overlay Data is unpacked only around the bytes that have bits set: a plane of a small
    segment is mostly zero bytes. Data that pydicom would warn about or
    refuse, big endian data and legacy overlays (in Pixel Data's high bits) go through
    _read_plane, which makes whole planes."""
    data = elements.data(group)
    rows, columns = elements.number(group, 0x0010), elements.number(group, 0x0011)
    frames = elements.number(group, 0x0015, "IS")
    frames = 1 if frames is None else frames
    # Sized by what the file holds, before anything is sized by it: the image's frames (an image
    # without Number of Frames has one) and the bytes of Overlay Data.
    image_frames = header_int(elements.ds, "NumberOfFrames", 1, path) if "Rows" in elements.ds else frames
    if not 0 < frames <= image_frames or (data is not None and (rows or 0) * (columns or 0) * frames > 8 * len(data)):
        raise InputError(f"overlay group {group:04X}: Number of Frames in Overlay {frames} does not fit the image "
                         f"({image_frames} frame(s)) or its Overlay Data ({len(data or b'')} bytes)", path)
    expected = -(-(rows or 0) * (columns or 0) * frames // 8)  # bytes, before padding to even length
    if (data is not None and rows and columns and frames > 0 and elements.number(group, 0x0100) is not None
            and len(data) == expected + expected % 2):
        bits, size, blocks = np.frombuffer(data, np.uint8), rows * columns, []
        if not np.count_nonzero(bits):  # about half the planes are empty (written to keep groups contiguous)
            return [None] * frames
        for frame in range(frames):
            start = frame * size  # bit index of the frame's first pixel
            span = _nonzero_span(bits[start // 8:(start + size + 7) // 8])
            if span is None:
                blocks.append(None)
                continue
            first = max(start, (start // 8 + span[0]) * 8) - start  # bits of the frame
            last = min(start + size, (start // 8 + span[1]) * 8) - start
            top, bottom = first // columns, -(-last // columns)
            at, count = start + top * columns, (bottom - top) * columns
            band = _PackedRows(bits[at // 8:(at + count - 1) // 8 + 1].copy(), at % 8, (bottom - top, columns))
            if size % 8 == 0:
                blocks.append((top, band))
            else:  # a byte shared with the neighbouring frame can hold only its bits
                rows_of_band = band.unpack()
                blocks.append((top, rows_of_band) if rows_of_band.any() else None)
        return blocks
    planes = _read_plane(elements.ds, group, path, legacy_words)
    blocks = []
    for plane in planes:
        rows_set = np.flatnonzero(plane.any(axis=1))
        blocks.append((int(rows_set[0]), plane[rows_set[0]:rows_set[-1] + 1]) if rows_set.size else None)
    return blocks


class _PackedRows:
    """Rows of an overlay plane as stored (a bit a pixel, first pixel in the lowest bit of the
    first byte after ``skip`` bits), unpacked only when painted: unpacked at decoding, all
    planes were alive at once, each in fresh memory, as large as the painted part of the label
    layer, and page faults to make and unmappings to free cost ~15% of the import."""

    __slots__ = ("packed", "skip", "shape")

    def __init__(self, packed: np.ndarray, skip: int, shape: Tuple[int, int]):
        self.packed, self.skip, self.shape = packed, skip, shape

    def unpack(self) -> np.ndarray:
        """The rows as a bool array of ``shape``."""
        count = self.shape[0] * self.shape[1]
        unpacked = np.unpackbits(self.packed, count=self.skip + count, bitorder="little")
        return unpacked[self.skip:].view(bool).reshape(self.shape)


def _unpacked(block: Union[np.ndarray, _PackedRows]) -> np.ndarray:
    return block.unpack() if isinstance(block, _PackedRows) else block


def _nonzero_span(chunk: np.ndarray) -> Optional[Tuple[int, int]]:
    """A range of bytes of ``chunk`` (uint8) that holds all its non-zero bytes, to 8 bytes; None
    when all are zero. Searched by 8-byte words: argmax over reversed bytes is 5x slower."""
    core = chunk.size - chunk.size % 8
    words = chunk[:core].view(np.uint64) != 0
    tail = core < chunk.size and bool(chunk[core:].any())
    first = int(words.argmax()) if words.size else 0
    if words.size == 0 or not words[first]:  # no non-zero word
        return (core, chunk.size) if tail else None
    last = chunk.size if tail else (words.size - int(words[::-1].argmax())) * 8
    return first * 8, last


def _placed(row: int, column: int, block: np.ndarray, shape2d: Tuple[int, int]) -> Optional[_Piece]:
    """The part of ``block`` (top-left pixel at ``row``, ``column``; 0-based) on the image."""
    top, left = max(row, 0), max(column, 0)
    bottom, right = min(row + block.shape[0], shape2d[0]), min(column + block.shape[1], shape2d[1])
    if bottom <= top or right <= left:
        return None
    if (top, left, bottom, right) == (row, column, row + block.shape[0], column + block.shape[1]):
        return top, left, block  # all of it: packed rows stay packed
    return top, left, _unpacked(block)[top - row:bottom - row, left - column:right - column]


def _segmentation(geometry, found: List[_Found]) -> Segmentation:
    """The segments, each in the first layer where it overlaps nothing (as
    Segmentation.add_segment_slices places them), painted piece by piece: whole-slice masks
    cost a boolean scan of every slice of every segment."""
    from ...core.model import _default_color

    layers: List[np.ndarray] = []
    # Per layer and slice, the boxes painted so far: a piece whose box meets none of them
    # cannot overlap, and its pixels need not be read (reading never-written pages of the
    # layer maps them, and painting them then faults them in a second time).
    boxes: List[Dict[int, List[Tuple[int, int, int, int]]]] = []
    segments: List[Segment] = []
    for n, item in enumerate(found):
        meta = item.metadata
        terminology = Terminology.from_slicer_string(meta["terminology"]) if meta.get("terminology") else None
        segment = Segment(id=meta.get("id") or _unique_id(item.name, {s.id for s in segments}), name=item.name,
                          color=tuple(meta.get("color") or _default_color(n)), terminology=terminology,
                          description=meta.get("description", ""),
                          attributes={"overlay_type": item.overlay_type})
        pieces = [((k, slice(r, r + b.shape[0]), slice(c, c + b.shape[1])), b)
                  for k, in_slice in item.slices.items() for r, c, b in in_slice]
        for layer, labels in enumerate(layers):
            value = max((s.label_value for s in segments if s.layer == layer), default=0) + 1
            if value <= 65535 and not any(_meets(boxes[layer].get(at[0], ()), at)
                                          and np.logical_and(labels[at], _unpacked(b)).any() for at, b in pieces):
                break
        else:
            layer, value = len(layers), 1
            layers.append(arrays.zeros(geometry.shape, layers[0].dtype if layers else np.uint8))
            boxes.append({})
        for (k, rows, columns), _ in pieces:
            boxes[layer].setdefault(k, []).append((rows.start, rows.stop, columns.start, columns.stop))
        if value > np.iinfo(layers[layer].dtype).max:
            layers = [labels.astype(np.uint16) for labels in layers]
        for at, b in pieces:
            np.copyto(layers[layer][at], value, where=_unpacked(b))
        segment.layer, segment.label_value = layer, value
        segments.append(segment)
    stacked = None
    if len(layers) == 1:
        stacked = layers[0][np.newaxis]
    elif layers:
        stacked = np.stack(layers, out=arrays.zeros((len(layers),) + layers[0].shape, layers[-1].dtype))
    return Segmentation(geometry, stacked, segments)


def _meets(boxes: Sequence[Tuple[int, int, int, int]], at: Tuple[int, slice, slice]) -> bool:
    """Whether the box of ``at`` (slice, rows, columns) meets any of ``boxes`` (row and column ranges)."""
    _, rows, columns = at
    return any(r0 < rows.stop and rows.start < r1 and c0 < columns.stop and columns.start < c1
               for r0, r1, c0, c1 in boxes)


def _unique_id(name: str, existing: set) -> str:
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
        legacy_words.append(stored_frames(read_dicom_file(path, "image"), raw_words=True))
    stored = legacy_words[0]
    high_bit = int(getattr(ds, "HighBit", int(ds.BitsStored) - 1))
    if bit >= int(ds.BitsAllocated) or high_bit - int(ds.BitsStored) < bit <= high_bit:
        raise InputError(f"overlay group {group:04X} has no Overlay Data and its bit position {bit} is "
                         f"inside the stored pixel bits", path)
    return ((stored >> bit) & 1).astype(bool)


def _markup_from_json(data: dict, source: str) -> Markup:
    return markup_from_dict(data, source)
