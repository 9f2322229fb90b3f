"""Reading a DICOM SEG's dataset and its frames (decode side; see decode.py): the native pixel
data mapped from the file, compressed frames decoded one at a time.
"""
from __future__ import annotations

import mmap
import os
from typing import Optional, Tuple

import numpy as np
import pydicom
from pydicom.charset import default_encoding
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import JPEGLSLossless

from ...core.errors import InputError, one_line
from ...core.header_blocks import element_at
from ...core.headers import header_value
from ...core.inputs import check_sequences, open_bounded, read_dicom_file
from ...core.series import image_size, is_deflated, transfer_syntax
from .common import SEG_SOP_CLASSES


#: Sequences of the SEG that check_sequences leaves unopened (their VR is still checked): its
#: references to the source images, 200 items each for a 200-slice SEG (the Referenced Series
#: Sequence's Referenced Instance Sequence and the Source Image Sequence). The decoder reads only
#: their Referenced SOP Class UIDs, from the raw bytes (decode._referenced_sop_classes), and opens
#: them with core.inputs.sequence_items where those do not parse: pydicom parsing the 400 items
#: was 9 ms of a LABELMAP import (bench_startup.py notes, 2026-12-05).
REFERENCE_SEQUENCES = frozenset({0x00081115, 0x00082112})


def checked_seg(ds: Dataset, path, has_pixel_data: bool = False) -> Dataset:
    """``ds``, checked to be a SEG with the elements the import needs (``has_pixel_data``: its
    Pixel Data is known to be in the file, not in ``ds``)."""
    sop_class = str(getattr(ds, "SOPClassUID", ""))
    if sop_class not in SEG_SOP_CLASSES:
        raise InputError(f"not a DICOM SEG (SOP Class UID {sop_class or 'missing'}, Modality "
                         f"{getattr(ds, 'Modality', '?')})", path)
    for keyword in ("Rows", "Columns", "SegmentSequence", "PixelData"):
        if keyword not in ds and not (keyword == "PixelData" and has_pixel_data):
            raise InputError(f"SEG has no {keyword} (truncated or incomplete file)", path)
    return ds


def read_whole(path: os.PathLike | str) -> Dataset:
    """The SEG dataset read whole by pydicom (pixel data included), checked to be a SEG."""
    return checked_seg(read_dicom_file(path, "SEG"), path)


def read_seg_file(path: os.PathLike | str) -> Tuple[Dataset, Optional[memoryview]]:
    """The SEG dataset, checked as :func:`read_whole` checks it (but for the items of
    :data:`REFERENCE_SEQUENCES`, which the decoder reads itself), and the value of its native
    (uncompressed) little endian Pixel Data mapped from the file instead of read into the dataset
    (then absent there): a 100-segment BINARY SEG holds 163 MB of frames, which reading copied
    (0.1 s of CPU, and the memory) before the decoder looked at most of them once. Other pixel
    data (encapsulated, or in deflated or big endian files) is read by pydicom as before.

    Raises:
        InputError: not DICOM, not a SEG, or truncated.
    """
    if not os.path.isfile(path):
        return read_whole(path), None  # which says what the path is
    mapped = None
    try:
        with open_bounded(path) as stream:
            ds = pydicom.dcmread(stream, stop_before_pixels=True)
            ds.filename = str(path)  # as dcmread(path) sets it
            if is_deflated(ds):  # pydicom parsed an inflated copy: its offsets are not the file's
                return read_whole(path), None
            offset = stream.tell()
            implicit, little = ds.original_encoding
            head = stream.read(12)
            tag, _, length, at = element_at(head, 0, implicit) if little and len(head) == 12 else (None, None, None, 0)
            if tag == 0x7FE00010 and length != 0xFFFFFFFF:
                start = offset + at
                available = max(0, min(length, os.fstat(stream.fileno()).st_size - start))
                mapped = memoryview(b"")
                if available:
                    mapped = _mapped(stream, start, available)
            else:
                stream.seek(offset)  # the pixel data and what follows, as dcmread reads them
                ds.update(read_dataset(stream, implicit, little,
                                       parent_encoding=getattr(ds, "_character_set", default_encoding)))
    except Exception as exc:  # pydicom raises several types for broken files (as read_dicom_file)
        raise InputError(f"not a readable DICOM file ({one_line(exc, 300)})", path) from None
    check_sequences(ds, path, unopened=REFERENCE_SEQUENCES)
    return checked_seg(ds, path, mapped is not None), mapped


def _mapped(stream, start: int, length: int) -> memoryview:
    """``length`` bytes of the file from ``start``: mapped (the map stays open while the view, the
    decoder's frames, lives), or read where the file cannot be mapped (some network or FUSE file
    systems)."""
    try:
        return memoryview(mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ))[start:start + length]
    except (OSError, ValueError):
        stream.seek(start)
        return memoryview(stream.read(length))


class FrameDecoder:
    """Frames of the SEG's pixel data, one at a time (packed bits are never unpacked whole)."""

    #: Bytes of a mapped file read before the decoder lets the kernel drop its pages from this
    #: process (madvise DONTNEED; the file stays in the page cache): a mapped file's pages count in
    #: the RSS once touched, and decoding the 164 MB BINARY SEG of the SR benchmark kept all of it
    #: (sr export's peak 266 MiB, of which that SEG's pages ~150).
    RESIDENT_BYTES = 16 << 20

    def __init__(self, ds: Dataset, path: str, native: Optional[memoryview] = None):
        """``native``: the native pixel data's bytes when not in ``ds`` (see read_seg_file)."""
        self.ds = ds
        self.path = path
        self.count, self.rows, self.columns, self.bits = image_size(ds)
        if self.bits not in (1, 8, 16):
            raise InputError(f"Bits Allocated {self.bits}: a SEG has 1 (BINARY), 8 or 16", path)
        self.syntax = transfer_syntax(ds)
        pixels = self.rows * self.columns
        if not self.syntax.is_compressed:
            data = native if native is not None else header_value(ds, "PixelData", b"", path)
            needed = (self.count * pixels + 7) // 8 if self.bits == 1 else self.count * pixels * self.bits // 8
            if len(data) < needed:
                raise InputError(f"pixel data has {len(data)} bytes where {self.count} frames need {needed} "
                                 "(truncated file?)", path)
            self.data = np.frombuffer(data, dtype=np.uint8 if self.bits in (1, 8) else "<u2",
                                      count=needed if self.bits in (1, 8) else needed // 2)
        else:
            self.data = None
            self._fragments = None
        self._boxes = None
        self._map = getattr(native, "obj", None)  # the memory map the pixel data is a view of, if any
        self._map = self._map if hasattr(self._map, "madvise") else None
        self._touched = 0

    def _read(self, nbytes: int) -> None:
        """Count bytes read from a mapped file (a frame's, even when only some rows are: the
        kernel maps the pages around each one it faults in); past :data:`RESIDENT_BYTES`, drop its pages."""
        self._touched += nbytes
        if self._map is not None and self._touched >= self.RESIDENT_BYTES:
            self._touched = 0
            try:
                self._map.madvise(mmap.MADV_DONTNEED)
            except (AttributeError, OSError, ValueError):  # no madvise here: the pages stay
                self._map = None

    def packed_frame(self, index: int) -> Optional[np.ndarray]:
        """The packed bytes of a 1-bit native frame when it starts on a byte boundary."""
        pixels = self.rows * self.columns
        if self.bits != 1 or self.data is None or (index * pixels) % 8 or pixels % 8:
            return None
        return self.data[index * pixels // 8:(index + 1) * pixels // 8]

    def _packed_rows(self, index: int) -> Optional[np.ndarray]:
        """The packed frame as (rows, bytes a row) when its rows are whole bytes, else None."""
        packed = self.packed_frame(index)
        if packed is None or self.columns % 8:
            return None
        return packed.reshape(self.rows, self.columns // 8)

    def packed_boxes(self) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Rows r0:r1 and columns c0:c1 (whole bytes: multiples of 8) holding every set pixel of
        each frame (r1 == 0: empty), for packed frames of whole-byte rows (else None), in one pass
        over the packed bytes, a slab of frames at a time, so that empty rows are never unpacked.

        Each frame is cut into blocks of 8 rows: a block's maximum (a long contiguous reduction)
        tells whether it holds a set pixel; only those blocks' rows are OR-ed together (by halves)
        for the columns, and only the first and last one's rows looked at for the rows (numpy
        reduces the short axis of a row's 8 words one row at a time, as slowly as a pass over all
        the data). The SR benchmark's SEG (164 MB, mapped): the rows from a pass and the columns
        from each frame's bytes took 0.07 s, this 0.045 s."""
        if self.bits != 1 or self.data is None or self.columns % 8:
            return None
        if self._boxes is None:
            per_row = self.columns // 8
            word = np.uint64 if per_row % 8 == 0 else np.uint8
            width = per_row // 8 if word is np.uint64 else per_row
            height = 8 if self.rows % 8 == 0 else 1  # rows a block
            blocks = self.rows // height
            boxes = np.zeros((4, self.count), np.int64)
            frame_bytes = self.rows * per_row
            for start in range(0, self.count, 64):  # 64 frames of 512x512: 2 MB, in the cache
                end = min(self.count, start + 64)
                slab = self.data[start * frame_bytes:end * frame_bytes].view(word).reshape(
                    end - start, blocks, height, width)
                occupied = slab.reshape(end - start, blocks, height * width).max(axis=2) != 0
                counts = occupied.sum(axis=1)
                columns = np.zeros((end - start, width), word)
                if counts.any():
                    block_columns = _or_rows(slab.reshape(-1, height, width)[np.flatnonzero(occupied)])
                    firsts = np.cumsum(counts) - counts  # each frame's first block in block_columns
                    columns[counts > 0] = np.bitwise_or.reduceat(block_columns, firsts[counts > 0], axis=0)
                columns = columns.view(np.uint8) != 0  # (frames, bytes a row)
                filled = occupied.any(axis=1)
                first, last = occupied.argmax(axis=1), blocks - 1 - occupied[:, ::-1].argmax(axis=1)
                frames = np.arange(end - start)
                first_rows = (slab[frames, first] != 0).any(axis=2)  # (frames, height)
                last_rows = (slab[frames, last] != 0).any(axis=2)
                boxes[0, start:end] = first * height + first_rows.argmax(axis=1)
                boxes[1, start:end] = (last + 1) * height - last_rows[:, ::-1].argmax(axis=1)
                boxes[2, start:end] = columns.argmax(axis=1) * 8
                boxes[3, start:end] = (per_row - columns[:, ::-1].argmax(axis=1)) * 8
                boxes[:, start:end] *= filled
                self._read(slab.nbytes)
            self._boxes = tuple(boxes)
        return self._boxes

    def box(self, index: int) -> Optional[Tuple[int, int, int, int]]:
        """Rows r0:r1 and columns c0:c1 holding every set pixel of frame ``index`` (None: empty):
        :meth:`packed_boxes` for packed frames, else the whole frame."""
        boxes = self.packed_boxes()
        if boxes is None:
            return (0, self.rows, 0, self.columns) if self.data is None or self.frame(index).any() else None
        r0, r1, c0, c1 = (int(values[index]) for values in boxes)
        return None if r1 == 0 else (r0, r1, c0, c1)

    def box_pixels(self, index: int, box: Tuple[int, int, int, int]) -> np.ndarray:
        """The pixels of frame ``index`` in ``box`` as bool (only those bytes are unpacked)."""
        r0, r1, c0, c1 = box
        packed = self._packed_rows(index)
        if packed is None:
            return self.frame(index)[r0:r1, c0:c1].astype(bool)
        self._read(packed.nbytes)  # the whole frame: a page fault maps its neighbours too (64 KB)
        return np.unpackbits(packed[r0:r1, c0 // 8:c1 // 8], axis=1, bitorder="little").view(bool)  # 0/1

    def block_pixels(self, indices: np.ndarray, box: Tuple[int, int, int, int]) -> np.ndarray:
        """The pixels of packed frames ``indices`` in one ``box`` (columns whole bytes) as bool,
        (frames, rows, columns): one gather and one unpacking for many frames."""
        r0, r1, c0, c1 = box
        per_row = self.columns // 8
        frames = self.data[:self.count * self.rows * per_row].reshape(self.count, self.rows, per_row)
        self._read(len(indices) * self.rows * per_row)
        return np.unpackbits(frames[indices, r0:r1, c0 // 8:c1 // 8], axis=2, bitorder="little").view(bool)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as (rows, columns): bool/uint8 for 1-bit, uint8 or uint16 otherwise."""
        pixels = self.rows * self.columns
        if self.data is not None:
            self._read(pixels * self.bits // 8)
            if self.bits == 1:
                start = index * pixels
                first, last = start // 8, (start + pixels + 7) // 8
                bits = np.unpackbits(self.data[first:last], bitorder="little")
                offset = start - first * 8
                return bits[offset:offset + pixels].reshape(self.rows, self.columns)
            return self.data[index * pixels:(index + 1) * pixels].reshape(self.rows, self.columns)
        return self._decoded(index)

    def _decoded(self, index: int) -> np.ndarray:
        """One compressed frame. JPEG-LS goes straight to CharLS (pyjpegls): through pydicom's
        decoder framework each frame costs 4x more; other codecs use pydicom's plugins."""
        from pydicom.encaps import generate_fragmented_frames

        if self._fragments is None:
            try:
                self._fragments = [b"".join(f) for f in generate_fragmented_frames(
                    self.ds.PixelData, number_of_frames=self.count)]
            except Exception as exc:
                raise InputError(f"encapsulated pixel data cannot be read ({exc}; truncated file?)", self.path) from None
            if len(self._fragments) < self.count:
                raise InputError(f"{len(self._fragments)} compressed frames for {self.count} frames "
                                 "(truncated file?)", self.path)
        dtype = np.uint16 if self.bits == 16 else np.uint8
        pixels = self.rows * self.columns
        try:
            if self.syntax == JPEGLSLossless:
                import jpeg_ls

                data, _ = jpeg_ls.decode_buffer(self._fragments[index])
                array = np.frombuffer(data, dtype=dtype)
                if array.size != pixels:
                    raise ValueError(f"{array.size} pixels decoded, {pixels} expected")
            else:
                from pydicom.pixels import get_decoder

                array, _ = get_decoder(self.syntax).as_array(self.ds, index=index)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"frame {index + 1} cannot be decoded ({exc})", self.path) from None
        return np.asarray(array).reshape(self.rows, self.columns)


def _or_rows(values: np.ndarray) -> np.ndarray:
    """``values`` (n, rows, width) OR-ed along the rows, by halves: a few long operations, where
    numpy's own reduce runs one short inner loop a row."""
    count = values.shape[1]
    while count > 1:
        half = count // 2
        merged = values[:, :half] | values[:, count - half:count]
        if count % 2:  # the middle row
            merged[:, :1] |= values[:, half:half + 1]
        values, count = merged, half
    return values[:, 0]
