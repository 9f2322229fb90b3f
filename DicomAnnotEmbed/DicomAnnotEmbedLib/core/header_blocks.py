"""Where the bytes of a DICOM file are: its header read from one block of them (up to the pixel
data, long values deferred), and its Pixel Data value read at the offset that block gave, for
:mod:`core.series` (split from it); and its transfer syntax read from its bytes.

pydicom is imported where used: the command line reads a SEG's transfer syntax here before it
imports pydicom (cli/seg.py)."""
from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

from .inputs import BoundedReader

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: Header values longer than this (bytes) are read when used, not by load_series: Overlay Data
#: is 32 KB per 512x512 plane, and holding a whole series' of it cost the import 25 ms of page
#: faults on top of the memory (benchmark notes); the importer reads it file by file. Our
#: private metadata (JSON, a few KB) stays below.
DEFER_SIZE = 16384

_PIXEL_DATA_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}  # where stop_before_pixels stops

DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"


class _HeaderReader:
    """Reads headers (up to the pixel data, long values deferred) from one block of the file's
    bytes: pydicom parses a BytesIO a tenth to a quarter faster than a file, whose small reads
    each go through the buffered reader (benchmark notes).

    The block is sized to the header: the images of a series end alike (Pixel Data of one size),
    so the file's size less the bytes that followed the last image's header gives this one's
    length. Files unlike that image, headers that do not end in their block and deflated files
    are read from the file, as before. Blocks larger than ``max_block`` are not read: unless the caller uses the deferred
    values in the block (MAX_KEPT_BLOCK), reading them costs more than the faster parse saves."""

    MAX_BLOCK = 1 << 16
    MAX_KEPT_BLOCK = 1 << 22
    FIRST_BLOCK = 1 << 14  # before any image has told how long its header is
    SLACK = 1024  # bytes read beyond the expected end of the header

    def __init__(self, max_block: int = MAX_BLOCK) -> None:
        self.max_block = max_block
        self.trailing: Optional[int] = None  # bytes after the last image's header (Pixel Data and on)
        self.header_length = 0  # the last image's header

    def read(self, path: Path) -> Tuple[Dataset, Optional[bytes]]:
        """The header and the block it was parsed from (None when read from the file)."""
        import pydicom

        # Unbuffered: a buffered reader would read on to its next 4 KiB boundary.
        with open(path, "rb", buffering=0) as raw:
            stat = os.fstat(raw.fileno())
            block = self._block(stat.st_size)
            if block is not None:
                head = raw.read(block)
                ds = self._parse_block(head, len(head) >= stat.st_size)
                if ds is not None:
                    ds.filename, ds.fileobj_type, ds.buffer = str(path), open, None  # as if read from the file
                    ds.timestamp = stat.st_mtime
                    self._learn(ds, stat.st_size)
                    return ds, head
                raw.seek(0)
            with BoundedReader(raw, stat.st_size) as stream:  # pydicom's many small reads need the buffer
                ds = pydicom.dcmread(stream, stop_before_pixels=True, defer_size=DEFER_SIZE)
                ds.pixel_data_offset = stream.tell()  # see pixel_data_offset()
        if is_deflated(ds):
            # pydicom parsed an inflated copy: a deferred value would later be read from the
            # compressed file at the copy's offsets. Nothing is deferred for these (rare) files.
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        self._learn(ds, stat.st_size)
        return ds, None

    def _block(self, size: int) -> Optional[int]:
        """Bytes to read for a header in a file of ``size`` bytes; None: read the file instead."""
        if self.trailing is None:
            return self.FIRST_BLOCK
        expected = size - self.trailing
        if expected <= 0 or expected > 2 * self.header_length + self.FIRST_BLOCK:
            return None  # unlike the last image (another size, another kind of file)
        block = expected + self.SLACK
        return block if block <= self.max_block else None

    def _learn(self, ds: Dataset, size: int) -> None:
        """Remember an image's header length and what followed it (not other files')."""
        end = ds.__dict__.get("pixel_data_offset")
        if end is not None and end < size and "Rows" in ds and not is_deflated(ds):
            self.trailing, self.header_length = size - end, end

    @staticmethod
    def _parse_block(head: bytes, whole_file: bool) -> Optional[Dataset]:
        """The header parsed from ``head``, or None when it does not end inside ``head`` or the file
        is deflated."""
        # Warnings are not caught: a cut ends the parse quietly (short reads stop pydicom's
        # element loop; a cut sequence raises), and catching them per file would reset Python's
        # once-per-place memory of warnings, repeating pydicom's for every file.
        import pydicom

        stream = io.BytesIO(head)
        try:
            ds = pydicom.dcmread(stream, stop_before_pixels=True, defer_size=DEFER_SIZE)
        except Exception:
            if whole_file:
                raise
            return None  # cut inside an element: the file decides
        end = stream.tell()
        if is_deflated(ds):
            return None
        if not whole_file:
            if end + 8 > len(head) or "file_meta" not in ds.__dict__:
                return None
            order = "<" if ds.original_encoding[1] is not False else ">"
            group, element = struct.unpack(order + "HH", head[end:end + 4])
            if group << 16 | element not in _PIXEL_DATA_TAGS:
                return None
        ds.pixel_data_offset = end  # see pixel_data_offset()
        return ds


def is_deflated(ds: Dataset) -> bool:
    """Whether a header comes from a deflated file (pydicom parsed an inflated copy of it)."""
    syntax = getattr(ds.__dict__.get("file_meta"), "TransferSyntaxUID", None)
    return syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN


def pixel_data_offset(ds: Dataset) -> Optional[int]:
    """Where the Pixel Data element (and the rest of the file) starts in the file a header was read
    from by :func:`scan_folder`, so that writers can copy it as bytes instead of parsing it; None for
    other datasets and for deflated files (pydicom read them from a decompressed copy)."""
    return None if is_deflated(ds) else ds.__dict__.get("pixel_data_offset")


#: Value representations with a 4-byte value length in explicit VR (the others have 2), as bytes.
LONG_VR_BYTES = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"))


def element_at(data: bytes, start: int, implicit: bool, little: bool = True) -> Tuple[int, Optional[bytes], int, int]:
    """Tag, VR (None: implicit VR), value length and value position of the element whose header
    starts at ``start`` of ``data`` (struct.error when ``data`` ends inside that header)."""
    order = "<" if little else ">"
    group, element = struct.unpack_from(order + "HH", data, start)
    if implicit:
        return group << 16 | element, None, struct.unpack_from(order + "L", data, start + 4)[0], start + 8
    vr = bytes(data[start + 4:start + 6])
    if vr in LONG_VR_BYTES:
        return group << 16 | element, vr, struct.unpack_from(order + "L", data, start + 8)[0], start + 12
    return group << 16 | element, vr, struct.unpack_from(order + "H", data, start + 6)[0], start + 8


def native_pixel_data(path: str, header: Dataset) -> Optional[bytes]:
    """The Pixel Data value of a native (uncompressed, little endian) image file, read at the offset
    :func:`scan_folder` found for ``header`` without parsing the file again: pydicom reading the
    200 files of a CT was 0.11 of the 0.19 s ``read_int16_volume`` took (Testing/benchmarks/bench_sr.py
    notes). None when the bytes there cannot be trusted to be it - a header not read by
    scan_folder, a compressed, deflated or big endian file, a file not in its transfer syntax's
    encoding or changed since, another element or an undefined length there, a cut value: the
    caller then reads the file with pydicom, whose errors name the problem."""
    import pydicom

    offset = pixel_data_offset(header)
    meta = header.__dict__.get("file_meta")
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    syntax = pydicom.uid.UID(syntax) if isinstance(syntax, str) else None  # (a corrupt VR makes it a str)
    if offset is None or syntax not in (pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian) \
            or header.original_encoding != (syntax.is_implicit_VR, True):
        return None
    with open(path, "rb") as stream:
        if os.fstat(stream.fileno()).st_mtime != getattr(header, "timestamp", None):
            return None
        stream.seek(offset)
        head = stream.read(12)
        if len(head) < 12:
            return None
        tag, _, length, start = element_at(head, 0, syntax.is_implicit_VR)
        if tag != 0x7FE00010 or length == 0xFFFFFFFF:
            return None
        stream.seek(offset + start)
        data = stream.read(length)
    return data if len(data) == length else None


#: Bytes of a file that :func:`file_transfer_syntax` reads: the preamble and a file meta group of
#: a few hundred bytes, with room for private elements.
META_BLOCK = 8192


def file_transfer_syntax(path: os.PathLike | str) -> Optional[str]:
    """The Transfer Syntax UID of a DICOM file's meta information, read from its first bytes
    without pydicom (the meta group is explicit VR little endian); None when the file cannot be
    read, has no preamble and ``DICM``, or no such element in its first :data:`META_BLOCK` bytes:
    the caller then assumes any syntax (pydicom's errors will name the problem)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(META_BLOCK)
    except OSError:
        return None
    if head[128:132] != b"DICM":
        return None
    at = 132
    try:
        while at < len(head):
            tag, _, length, value_at = element_at(head, at, implicit=False)
            if tag >> 16 != 0x0002:
                return None
            if tag == 0x00020010:
                value = head[value_at:value_at + length]
                return value.rstrip(b"\0 ").decode("ascii") if len(value) == length else None
            at = value_at + length
    except (struct.error, UnicodeDecodeError):
        return None
    return None
