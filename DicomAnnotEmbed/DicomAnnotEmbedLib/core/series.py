"""Loading a DICOM reference series from a folder: discovery, sorting and exact geometry.

Headers are read up to the pixel data, values longer than DEFER_SIZE (overlay data) only
when used, so loading a series reads no pixel data. Slices are sorted along the slice normal,
never by InstanceNumber. All positions are DICOM patient coordinates (LPS).
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from . import arrays
from .errors import GeometryError, SeriesError, name_files
from .geometry import VolumeGeometry
from .headers import first_item, header_float, header_value
from .headers import header_int as _header_int
from .header_blocks import DEFER_SIZE, _HeaderReader, is_deflated, native_pixel_data, pixel_data_offset  # noqa: F401
from .inputs import is_decoding_error, read_dicom_file, reading
from .progress import ProgressCallback, track

log = logging.getLogger(__name__)

#: Slice positions that differ by less than this many mm are the same position.
SLICE_POSITION_TOLERANCE_MM = 0.01
#: Allowed deviation of a slice gap from the median gap (fraction of the gap).
SLICE_GAP_TOLERANCE = 0.01

# Storage classes that carry no reference image (derived objects that live beside images).
_NON_REFERENCE_MODALITIES = {"SEG", "SR", "RTSTRUCT", "PR", "KO", "RTPLAN", "RTDOSE", "REG", "DOC"}
_DICOMDIR_UID = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class SliceRef:
    """Where slice k of the volume comes from: a file and, for multi-frame files, a frame."""

    file_index: int
    frame: int
    sop_instance_uid: str


@dataclass
class ReferenceSeries:
    """One image series, sorted along its slice normal.

    Attributes:
        folder: the folder that was scanned.
        series_instance_uid, modality, description: from the headers.
        files: paths of the series' files, in slice order of their first frame.
        datasets: the header of each file, read up to (not including) the pixel data.
        slices: for each slice index k, its file and frame.
        geometry: IJK to LPS geometry of the sorted slices.
        skipped: files that were passed over, with the reason (non-DICOM, other series, ...).
    """

    folder: str
    series_instance_uid: str
    modality: str
    description: str
    files: List[str]
    datasets: List[Dataset]
    slices: List[SliceRef]
    geometry: VolumeGeometry
    skipped: Dict[str, str] = field(default_factory=dict)

    @property
    def is_multiframe(self) -> bool:
        return any(int(header_value(ds, "NumberOfFrames", 1)) > 1 for ds in self.datasets)

    def slices_of_file(self, file_index: int) -> List[Tuple[int, int]]:
        """(frame, k) pairs of one file, in frame order."""
        return sorted((s.frame, k) for k, s in enumerate(self.slices) if s.file_index == file_index)

    def read_volume(self, progress: Optional[ProgressCallback] = None) -> np.ndarray:
        """The image as float32 (K, J, I) in modality units (rescale applied, HU for CT)."""
        volume = arrays.zeros(self.geometry.shape, np.float32)  # 4 KiB pages (core.arrays)
        for file_index in track(range(len(self.files)), progress, "Reading pixel data"):
            with reading(self.files[file_index], "the pixel data"):
                frames = modality_frames(*self._image(file_index))
                for frame, k in self.slices_of_file(file_index):
                    volume[k] = frames[frame]
        return volume

    def _image(self, file_index: int) -> Tuple[Dataset, Optional[bytes]]:
        """A file's header and Pixel Data value where load_series found it (:func:`native_pixel_data`),
        else the whole file read by pydicom and None."""
        data = native_pixel_data(self.files[file_index], self.datasets[file_index])
        if data is not None:
            return self.datasets[file_index], data
        return read_dicom_file(self.files[file_index], "image"), None

    def modality_planes(self, progress: Optional[ProgressCallback] = None) -> Iterator[Tuple[int, np.ndarray]]:
        """``(k, slice k)`` for every slice, one file at a time (file order, not k order), in modality
        units: a file's planes are int16 where :meth:`read_int16_volume` would take that file as
        int16, else float32 as :meth:`read_volume`; the same values either way, without holding the
        volume (``sr export``'s statistics, issue 14). A multi-frame file is held while its planes
        are used."""
        for file_index in track(range(len(self.files)), progress, "Reading pixel data"):
            with reading(self.files[file_index], "the pixel data"):
                ds, data = self._image(file_index)
                rescales = frame_rescales(ds)
                stored = stored_frames(ds, pixel_data=data)
                frames = np.empty(stored.shape, np.int16)
                if rescales is None or stored.dtype.kind not in "iu" or not all(
                        _int16_frame(stored[f], *rescales[f], frames[f]) for f in range(len(stored))):
                    frames = _modality_values(ds, stored, rescales)
            for frame, k in self.slices_of_file(file_index):
                yield k, frames[frame]

    def read_int16_volume(self, progress: Optional[ProgressCallback] = None) -> Optional[np.ndarray]:
        """The image as int16 (K, J, I) modality values when they are whole numbers within int16,
        as CTs are: :meth:`read_volume`'s values, without its float32 volume (twice the memory) and
        the test of every value that its cast to int16 needs (export-ml's profile, issue 14). None
        when a file's rescale is not by whole numbers (or is a Modality LUT) or a value falls outside
        int16: then use read_volume. (With whole slope and intercept and the bounds checked here,
        float32 holds every intermediate value of read_volume exactly, so the values are the same.)"""
        volume = arrays.zeros(self.geometry.shape, np.int16)  # 4 KiB pages (core.arrays)
        for file_index in track(range(len(self.files)), progress, "Reading pixel data"):
            with reading(self.files[file_index], "the pixel data"):
                ds, data = self._image(file_index)
                rescales = frame_rescales(ds)
                stored = stored_frames(ds, pixel_data=data) if rescales is not None else None
                if stored is None or stored.dtype.kind not in "iu":
                    return None
                for frame, k in self.slices_of_file(file_index):
                    if not _int16_frame(stored[frame], *rescales[frame], volume[k]):
                        return None
        return volume

    def summary(self) -> str:
        return (f"{self.modality} series {self.series_instance_uid} '{self.description}': "
                f"{len(self.files)} files, {self.geometry.describe()}")


def stored_frames(ds: Dataset, raw_words: bool = False, pixel_data: Optional[bytes] = None) -> np.ndarray:
    """Stored pixel values as (frames, rows, columns).

    ``raw_words`` gives the unsigned words as they are in the file, high bits included (where
    legacy overlays live); otherwise values are as pydicom interprets them (sign, Bits Stored).
    Uncompressed data is viewed directly, without pydicom's decoder machinery. ``pixel_data``
    is the Pixel Data value (not encapsulated) of a header read without it, as load_series
    reads them.
    """
    path = getattr(ds, "filename", None)
    frames, rows, columns, bits = image_size(ds)
    shape = (frames, rows, columns)
    syntax = transfer_syntax(ds)
    stored_bits = _header_int(ds, "BitsStored", bits)
    samples = _header_int(ds, "SamplesPerPixel", 1)
    data = None
    if not syntax.is_compressed:
        data = header_value(ds, "PixelData") if pixel_data is None else pixel_data
        if data is None or isinstance(data, (list, tuple)):
            raise SeriesError("no Pixel Data", path)
        needed = frames * rows * columns * samples * max(bits, 1) // 8
        if len(data) < needed:
            raise SeriesError(f"Pixel Data holds {len(data)} bytes, but {frames} frame(s) of {rows}x{columns}x"
                              f"{samples} samples of {bits} bits need {needed}: the file is cut or its header wrong",
                              path)
    simple = (not syntax.is_compressed and samples == 1
              and bits in (8, 16, 32) and 0 < stored_bits <= bits
              and (raw_words or stored_bits == bits
                   or header_value(ds, "HighBit", stored_bits - 1) == stored_bits - 1))
    if simple:
        signed = not raw_words and _header_int(ds, "PixelRepresentation", 0) == 1
        order = "<" if syntax.is_little_endian else ">"
        words = np.frombuffer(data, dtype=f"{order}u{bits // 8}",
                              count=int(np.prod(shape))).reshape(shape)
        if raw_words:
            return words
        if stored_bits == bits:
            return words.view(f"{order}i{bits // 8}") if signed else words
        # Fewer bits stored (12 of 16 in much CT): as pydicom, the Bits Stored low bits,
        # sign-extended when signed; pydicom's decoder took 0.8 ms per 512x512 image for it.
        shift = bits - stored_bits
        return (words << shift).view(f"i{bits // 8}") >> shift if signed else words & ((1 << stored_bits) - 1)
    if pixel_data is not None:  # pydicom's decoders take a dataset: a copy of the header with it
        header, ds = ds, Dataset(dict(ds.items()))
        ds.file_meta = header.file_meta
        ds.set_original_encoding(*header.original_encoding, header.original_character_set)
        ds.add_new(0x7FE00010, "OB" if bits <= 8 else "OW", bytes(pixel_data))
    with reading(path, "the pixel data"):
        pixels = np.asarray(ds.pixel_array)
    if pixels.size != frames * rows * columns:
        raise SeriesError(f"pixel data decode to {pixels.shape}, not {frames} frame(s) of {rows}x{columns} "
                          f"(Samples per Pixel {samples}: only grey images are supported)", path)
    pixels = pixels.reshape(shape)
    return pixels.view(np.dtype(f"u{pixels.dtype.itemsize}")) if raw_words else pixels


#: The most pixels (frames x rows x columns) one image may declare, whatever its file size
#: (compressed data): 2**31, an 8 GiB float32 volume.
MAX_IMAGE_PIXELS = 1 << 31


def transfer_syntax(ds: Dataset) -> pydicom.uid.UID:
    """The file's Transfer Syntax UID; a SeriesError naming the file when it is missing or unknown."""
    meta = ds.__dict__.get("file_meta")
    syntax = header_value(meta, "TransferSyntaxUID") if meta is not None else None
    if not syntax:
        raise SeriesError("no Transfer Syntax UID in the file meta information", getattr(ds, "filename", None))
    syntax = pydicom.uid.UID(str(syntax))
    try:
        syntax.is_compressed, syntax.is_little_endian  # noqa: B018 - raise for an unknown syntax
    except ValueError:
        raise SeriesError(f"unknown Transfer Syntax UID {str(syntax)[:64]!r}", getattr(ds, "filename", None)) from None
    return syntax


def image_size(ds: Dataset) -> Tuple[int, int, int, int]:
    """(frames, rows, columns, bits allocated) of an image header, checked against what the file
    can hold: positive, and, for uncompressed data, no more pixels than the file has bytes for.

    Raises:
        SeriesError: naming the file, for a missing, non-numeric or impossible value.
    """
    path = getattr(ds, "filename", None)
    frames = _header_int(ds, "NumberOfFrames", 1)
    rows, columns = _header_int(ds, "Rows"), _header_int(ds, "Columns")
    bits = _header_int(ds, "BitsAllocated")
    if frames < 1 or rows < 1 or columns < 1:
        raise SeriesError(f"image size {frames} frame(s) of {rows}x{columns} pixels is empty", path)
    if bits not in (1, 8, 16, 32, 64):
        raise SeriesError(f"Bits Allocated {bits} is not 1, 8, 16, 32 or 64", path)
    pixels = frames * rows * columns
    limit = MAX_IMAGE_PIXELS
    size = os.path.getsize(path) if isinstance(path, str) and os.path.isfile(path) else None
    if size is not None and frames > size:  # every frame takes at least a byte, compressed or not
        raise SeriesError(f"Number of Frames {frames} is more than this file of {size} bytes can hold", path)
    if isinstance(path, str) and os.path.isfile(path) and "file_meta" in ds.__dict__ and not transfer_syntax(ds).is_compressed \
            and not is_deflated(ds):
        limit = os.path.getsize(path) * 8 // bits  # what the file really holds
    if pixels > limit:
        raise SeriesError(f"{frames} frame(s) of {rows}x{columns} pixels of {bits} bits cannot be in this file "
                          f"({os.path.getsize(path) if isinstance(path, str) and os.path.isfile(path) else '?'} bytes):"
                          f" Number of Frames, Rows or Columns is wrong", path)
    return frames, rows, columns, bits


def frame_rescales(ds: Dataset) -> Optional[List[Tuple[float, float]]]:
    """(slope, intercept) of each frame, or None when a non-linear Modality LUT applies."""
    if "ModalityLUTSequence" in ds:
        return None
    return [_frame_rescale(ds, frame) for frame in range(int(header_value(ds, "NumberOfFrames", 1)))]


def modality_frames(ds: Dataset, pixel_data: Optional[bytes] = None) -> np.ndarray:
    """Pixel data of a full dataset (or of a header and ``pixel_data``, see stored_frames) as
    float32 (frames, rows, columns) in modality units."""
    return _modality_values(ds, stored_frames(ds, pixel_data=pixel_data), frame_rescales(ds))


def _modality_values(ds: Dataset, stored: np.ndarray, rescales: Optional[List[Tuple[float, float]]]) -> np.ndarray:
    """Stored frames to float32 modality values: each frame's rescale, or the Modality LUT (pydicom)."""
    if rescales is None:
        from pydicom.pixels import apply_modality_lut

        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32).reshape(stored.shape)
    out = np.empty(stored.shape, dtype=np.float32)
    for frame, (slope, intercept) in enumerate(rescales):
        np.multiply(stored[frame], slope, out=out[frame], casting="unsafe")
        out[frame] += intercept
    return out


def _int16_frame(stored: np.ndarray, slope: float, intercept: float, out: np.ndarray) -> bool:
    """``stored * slope + intercept`` into the int16 plane ``out`` when slope and intercept are whole
    numbers, every value fits int16 and every intermediate is below 2**24 (exact in float32, as
    modality_frames computes it); False (``out`` unspecified) otherwise."""
    if slope != int(slope) or intercept != int(intercept) or stored.size == 0:
        return False
    low, high = int(stored.min()), int(stored.max())
    ends = (low * slope + intercept, high * slope + intercept)
    if max(abs(low), abs(high)) * abs(slope) >= 1 << 24 or abs(intercept) >= 1 << 24 \
            or min(ends) < -32768 or max(ends) > 32767:
        return False
    if slope == 1 and stored.dtype.itemsize == 2 and stored.dtype.isnative:
        # 16-bit sums modulo 2**16: where every result fits int16 (checked above) its bits are the
        # result's, as in int32 and a cast (0.029 -> 0.008 s for a 200-slice CT)
        np.add(stored.view(np.uint16), np.uint16(int(intercept) % 65536), out=out.view(np.uint16))
    elif slope == 1:  # in int32, then cast: every value is known to fit
        np.add(stored, np.int32(intercept), out=out, casting="unsafe")
    else:
        np.copyto(out, stored.astype(np.int32) * int(slope) + int(intercept), casting="unsafe")
    return True


def _frame_rescale(ds: Dataset, frame: int) -> Tuple[float, float]:
    item = _functional_group(ds, frame, "PixelValueTransformationSequence")
    source = ds if item is None else item
    slope = header_float(source, "RescaleSlope", 1.0, getattr(ds, "filename", None)) or 1.0
    return slope, header_float(source, "RescaleIntercept", 0.0, getattr(ds, "filename", None))


def _functional_group(ds: Dataset, frame: int, sequence_name: str) -> Optional[Dataset]:
    """First item of a functional group macro for one frame (per-frame wins over shared); a sequence
    a corrupted VR turned into a number or text is an error naming the file (core.headers)."""
    path = getattr(ds, "filename", None)
    per_frame = header_value(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame) and sequence_name in per_frame[frame]:
        return first_item(per_frame[frame], sequence_name, path)
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    if shared is not None and sequence_name in shared:
        return first_item(shared, sequence_name, path)
    return None


@dataclass
class _Frame:
    file_index: int
    frame: int
    position: Optional[np.ndarray]
    orientation: Optional[np.ndarray]
    spacing: Optional[Tuple[float, float]]
    instance_number: int


#: Called by load_series with each reference image's path, header and, when the header was
#: parsed from a block of the file's bytes, that block (it holds the deferred values too).
HeaderConsumer = Callable[[str, Dataset, Optional[bytes]], None]


def scan_folder(folder: os.PathLike | str, progress: Optional[ProgressCallback] = None,
                on_header: Optional[HeaderConsumer] = None
                ) -> Tuple[Dict[str, List[Tuple[str, Dataset]]], Dict[str, str]]:
    """Read the headers of every DICOM file below ``folder``.

    Returns image series (by Series Instance UID, with their files and headers) and the files
    that are not reference images, with the reason. ``on_header`` sees each reference image
    as it is read (see HeaderConsumer).
    """
    folder = Path(folder)
    if not folder.exists():
        raise SeriesError("folder does not exist", folder)
    if not folder.is_dir():
        raise SeriesError("is not a folder", folder)
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    series: Dict[str, List[Tuple[str, Dataset]]] = defaultdict(list)
    skipped: Dict[str, str] = {}
    # A consumer of the bytes takes them in blocks as large as the headers: it reads the
    # deferred values (overlay data) from them instead of from the file again.
    reader = _HeaderReader(_HeaderReader.MAX_KEPT_BLOCK if on_header else _HeaderReader.MAX_BLOCK)
    with gc_paused():  # the headers stay alive
        for path in track(paths, progress, "Reading headers"):
            _scan_file(path, reader, series, skipped, on_header)
    return dict(series), skipped


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (reference counting still frees memory) while
    building many objects that all stay alive, such as a series' headers: its collections walk
    them again and again, 8% of an overlay import (benchmark notes). Cycles made meanwhile are
    collected after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _scan_file(path: Path, reader: _HeaderReader, series: Dict[str, List[Tuple[str, Dataset]]],
               skipped: Dict[str, str], on_header: Optional[HeaderConsumer] = None) -> None:
    """Read one file's header into ``series`` (by Series Instance UID), or say in ``skipped`` why not."""
    try:
        ds, head = reader.read(path)
    except Exception as exc:
        if not _unreadable(exc):
            raise
        skipped[str(path)] = f"not DICOM ({exc.__class__.__name__})"
        return
    _file_series(path, ds, head, series, skipped, on_header)


def _unreadable(exc: Exception) -> bool:
    """Whether a header read failed the way a file that is not (readable) DICOM does."""
    return is_decoding_error(exc) or isinstance(exc, (OSError, ValueError, TypeError, KeyError, NotImplementedError))


def _file_series(path: Path, ds: Dataset, head: Optional[bytes], series: Dict[str, List[Tuple[str, Dataset]]],
                 skipped: Dict[str, str], on_header: Optional[HeaderConsumer] = None) -> None:
    """Put one file's header into ``series`` (by Series Instance UID), or say in ``skipped`` why not."""
    if "file_meta" in ds.__dict__ and header_value(ds.file_meta, "MediaStorageSOPClassUID") == _DICOMDIR_UID:
        skipped[str(path)] = "DICOMDIR"
        return
    modality = str(header_value(ds, "Modality", ""))
    if modality in _NON_REFERENCE_MODALITIES or "Rows" not in ds or "Columns" not in ds:
        skipped[str(path)] = f"not a reference image ({modality or 'no modality'})"
        return
    uid = str(header_value(ds, "SeriesInstanceUID", ""))
    if not uid:
        skipped[str(path)] = "no Series Instance UID"
        return
    series[uid].append((str(path), ds))
    if on_header is not None:
        on_header(str(path), ds, head)


def load_series(folder: os.PathLike | str, series_uid: Optional[str] = None,
                progress: Optional[ProgressCallback] = None,
                on_header: Optional[HeaderConsumer] = None) -> ReferenceSeries:
    """Find one image series below ``folder`` (recursively) and build its geometry.

    Other series and non-DICOM files are skipped and counted (``ReferenceSeries.skipped``).
    With several image series, ``series_uid`` must name one. ``on_header`` sees every image
    file's header as it is read, the chosen series' and any other (see HeaderConsumer).

    Raises:
        SeriesError: no image series, several without a choice, an unknown ``series_uid``.
        GeometryError: slices that do not form a regular grid (the message names the files).
    """
    with gc_paused():  # all the headers stay alive
        return _load_series(folder, series_uid, progress, on_header)


def read_headers(paths: Sequence[Path], progress: Optional[ProgressCallback] = None
                 ) -> Iterator[Tuple[Path, "Dataset | Exception"]]:
    """Each file's header as :func:`load_series` reads it (up to the pixel data, values longer than
    DEFER_SIZE read from the file when used), or the exception that reading it raised. For callers
    that look at a set of files first (``export-ml`` sorts them into SEG, SR, images) and then want
    their series (:func:`series_from_headers`) without reading every header a second time."""
    reader = _HeaderReader()
    for path in track(list(paths), progress, "Reading headers"):
        try:
            yield path, reader.read(Path(path))[0]
        except Exception as exc:  # the caller decides (load_series passes over what _unreadable says)
            yield path, exc


def series_from_headers(folder: os.PathLike | str, series_uid: str,
                        headers: Dict[str, "Dataset | Exception"]) -> Optional[ReferenceSeries]:
    """What ``load_series(folder, series_uid)`` returns, built from headers already read by
    :func:`read_headers` ({absolute path: header or exception}), or None when ``headers`` does not
    hold every file below ``folder`` (or holds a read failure load_series would raise): then the
    caller loads the series. Raises what load_series raises for those files."""
    folder_path = Path(folder)
    if not folder_path.is_dir():
        return None
    paths = sorted(p for p in folder_path.rglob("*") if p.is_file())
    known = [headers.get(os.path.abspath(p)) for p in paths]
    if any(ds is None or (isinstance(ds, Exception) and not _unreadable(ds)) for ds in known):
        return None
    found: Dict[str, List[Tuple[str, Dataset]]] = defaultdict(list)
    skipped: Dict[str, str] = {}
    with gc_paused():
        for path, ds in zip(paths, known):
            if isinstance(ds, Exception):
                skipped[str(path)] = f"not DICOM ({ds.__class__.__name__})"
            else:
                _file_series(path, ds, None, found, skipped)
        return _choose_series(folder, series_uid, dict(found), skipped)


def _load_series(folder: os.PathLike | str, series_uid: Optional[str],
                 progress: Optional[ProgressCallback], on_header: Optional[HeaderConsumer]) -> ReferenceSeries:
    found, skipped = scan_folder(folder, progress, on_header)
    return _choose_series(folder, series_uid, found, skipped)


def _choose_series(folder: os.PathLike | str, series_uid: Optional[str], found: Dict[str, List[Tuple[str, Dataset]]],
                   skipped: Dict[str, str]) -> ReferenceSeries:
    """The series ``series_uid`` (the only one when None) among those found, built (a header value
    pydicom cannot decode, when it is used, names the folder)."""
    with reading(folder, "an image header"):
        return _choose_built(folder, series_uid, found, skipped)


def _choose_built(folder, series_uid, found, skipped) -> ReferenceSeries:
    if not found:
        detail = f" ({len(skipped)} files passed over: {_reason_counts(skipped)})" if skipped else " (no files)"
        raise SeriesError("no DICOM image series found" + detail, folder)
    if series_uid is None:
        if len(found) > 1:
            raise SeriesError(f"{len(found)} image series found; choose one with --series-uid UID: "
                              + "; ".join(_describe_series(uid, items) for uid, items in found.items()), folder)
        series_uid = next(iter(found))
    elif series_uid not in found:
        raise SeriesError(f"series {series_uid} not found; image series here: "
                          + "; ".join(_describe_series(uid, items) for uid, items in found.items()), folder)
    for uid, items in found.items():
        if uid != series_uid:
            for path, _ in items:
                skipped[path] = f"other series {uid}"
    items = found[series_uid]
    if skipped:
        log.info("%s: %d files passed over (%s)", folder, len(skipped), _reason_counts(skipped))
    return _build_series(str(folder), series_uid, items, skipped)


def _reason_counts(skipped: Dict[str, str]) -> str:
    counts: Dict[str, int] = defaultdict(int)
    for reason in skipped.values():
        counts[reason.split(" (")[0]] += 1
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


def _describe_series(uid: str, items: Sequence[Tuple[str, Dataset]]) -> str:
    ds = items[0][1]
    return f"{uid} ({getattr(ds, 'Modality', '?')}, '{getattr(ds, 'SeriesDescription', '')}', {len(items)} files)"


def _frames_of(file_index: int, ds: Dataset) -> List[_Frame]:
    """Position, orientation and pixel spacing of each frame of a file (None when absent)."""
    n_frames = image_size(ds)[0]
    per_frame = header_value(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n_frames:
        raise SeriesError(f"Number of Frames is {n_frames} but the Per-Frame Functional Groups Sequence has "
                          f"{len(per_frame)} items", getattr(ds, "filename", None))
    try:
        instance = int(header_value(ds, "InstanceNumber", 0))
    except (TypeError, ValueError):
        instance = 0  # only orders frames at the same position; a broken one orders nothing
    frames = []
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        for frame in range(n_frames):
            position = _functional_group(ds, frame, "PlanePositionSequence")
            orientation = _functional_group(ds, frame, "PlaneOrientationSequence")
            measures = _functional_group(ds, frame, "PixelMeasuresSequence")
            frames.append(_Frame(
                file_index, frame,
                _vector(ds, position, "ImagePositionPatient", 3),
                _vector(ds, orientation, "ImageOrientationPatient", 6),
                _pixel_spacing(measures) if measures is not None else _pixel_spacing(ds),
                instance * 100000 + frame))
        return frames
    if n_frames > 1:
        raise SeriesError(f"multi-frame image without functional groups ({n_frames} frames, "
                          f"{getattr(ds, 'SOPClassUID', '?')}): its frames have no positions to place them",
                          getattr(ds, "filename", None))
    return [_Frame(file_index, 0, _vector(ds, ds, "ImagePositionPatient", 3),
                   _vector(ds, ds, "ImageOrientationPatient", 6), _pixel_spacing(ds), instance)]


def _vector(ds: Dataset, source: Optional[Dataset], keyword: str, size: int) -> Optional[np.ndarray]:
    """A position (3) or orientation (6) of a header or functional group item: None when absent,
    a SeriesError naming the file when present with the wrong count or non-finite numbers."""
    if source is None:
        return None
    value = header_value(source, keyword)
    if value is None:
        return None
    values = _floats(value if isinstance(value, (list, tuple)) or hasattr(value, "__len__") and
                     not isinstance(value, str) else [value])
    if values is None or len(values) != size or not np.all(np.isfinite(values)) or np.any(np.abs(values) > 1e9):
        shown = str(value)[:80]
        raise SeriesError(f"{keyword} must be {size} finite numbers, got {shown}", getattr(ds, "filename", None))
    return values


def _floats(value) -> Optional[np.ndarray]:
    if value is None:
        return None
    try:
        return np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None


def _pixel_spacing(ds: Dataset) -> Optional[Tuple[float, float]]:
    for name in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        value = _floats(header_value(ds, name))
        if value is not None and len(value) == 2 and np.all(value > 0):
            return float(value[0]), float(value[1])
    return None


def _build_series(folder: str, uid: str, items: Sequence[Tuple[str, Dataset]],
                  skipped: Dict[str, str]) -> ReferenceSeries:
    paths = [p for p, _ in items]
    datasets = [ds for _, ds in items]
    sizes = {(_header_int(ds, "Rows"), _header_int(ds, "Columns")) for ds in datasets}
    if len(sizes) > 1:
        by_size = defaultdict(list)
        for p, ds in items:
            by_size[(_header_int(ds, "Rows"), _header_int(ds, "Columns"))].append(Path(p).name)
        raise SeriesError("images of different sizes in one series: " + "; ".join(
            f"{c}x{r}: {name_files(f)}" for (r, c), f in by_size.items()), folder)
    rows, columns = sizes.pop()
    frames = [f for index, ds in enumerate(datasets) for f in _frames_of(index, ds)]
    name = lambda f: Path(paths[f.file_index]).name + (f"[frame {f.frame + 1}]" if len(frames) > len(paths) else "")

    located = [f.position is not None and f.orientation is not None for f in frames]
    if any(located) and not all(located):
        raise GeometryError(f"{name_files(name(f) for f, ok in zip(frames, located) if not ok)} have no image "
                            f"position or orientation, but {name_files(name(f) for f, ok in zip(frames, located) if ok)}"
                            f" have", folder)
    if not all(located):
        geometry, order = _nominal_geometry(frames, rows, columns, paths)
    else:
        geometry, order = _patient_geometry(frames, rows, columns, name, folder, _slice_thickness(datasets[0]))

    first_slice = {}
    for k, f in enumerate(order):
        first_slice.setdefault(f.file_index, k)
    file_order = sorted(first_slice, key=first_slice.get)
    remap = {old: new for new, old in enumerate(file_order)}
    slices = [SliceRef(remap[f.file_index], f.frame, str(header_value(datasets[f.file_index], "SOPInstanceUID")))
              for f in order]
    ds0 = datasets[file_order[0]]
    try:
        description = str(header_value(ds0, "SeriesDescription", ""))
    except SeriesError:
        description = ""  # only shown: a value pydicom cannot decode is left out
    return ReferenceSeries(
        folder=folder, series_instance_uid=uid, modality=str(header_value(ds0, "Modality", "OT")),
        description=description,
        files=[paths[i] for i in file_order], datasets=[datasets[i] for i in file_order],
        slices=slices, geometry=geometry, skipped=skipped)


def _nominal_geometry(frames: List[_Frame], rows: int, columns: int, paths: List[str]):
    """Images without position or orientation (CR, DX, some SC): a nominal grid, ordered by
    Instance Number, on which only index-space annotations can be placed."""
    order = sorted(frames, key=lambda f: (f.instance_number, f.file_index, f.frame))
    spacing = frames[0].spacing or (1.0, 1.0)
    log.info("series has no image position/orientation; using a nominal grid (%d images)", len(frames))
    geometry = VolumeGeometry.from_origin_spacing_directions(
        (len(order), rows, columns), (0.0, 0.0, 0.0), (spacing[1], spacing[0], 1.0), np.eye(3),
        in_patient_space=False)
    return geometry, order


def _slice_thickness(ds: Dataset) -> float:
    """Spacing to give a single-slice series (Spacing Between Slices, else Slice Thickness, else 1 mm)."""
    measures = _functional_group(ds, 0, "PixelMeasuresSequence")
    for source in (measures, ds):
        for name in ("SpacingBetweenSlices", "SliceThickness"):
            value = header_value(source, name) if source is not None else None
            try:
                if value is not None and float(value) > 0:
                    return float(value)
            except (TypeError, ValueError):
                pass
    return 1.0


def _patient_geometry(frames: List[_Frame], rows: int, columns: int, name, folder: str, thickness: float):
    orientation = frames[0].orientation
    # np.allclose per frame, in one call (200 calls cost 5 ms)
    same = np.isclose(np.array([f.orientation for f in frames]), orientation, atol=1e-4).all(axis=1)
    mixed = [f for f, ok in zip(frames, same) if not ok]
    if mixed:
        raise GeometryError(
            f"mixed slice orientations: {name_files(name(f) for f in frames if f not in mixed)} have "
            f"{_fmt(orientation)}, but {name_files(name(f) for f in mixed)} have {_fmt(mixed[0].orientation)}",
            folder)
    row_dir, col_dir = orientation[:3], orientation[3:]  # along a row (i), along a column (j)
    normal = np.cross(row_dir, col_dir)
    if abs(np.linalg.norm(normal) - 1.0) > 1e-3:
        raise GeometryError(f"Image Orientation (Patient) {_fmt(orientation)} is not two orthogonal unit "
                            f"vectors", folder)
    normal /= np.linalg.norm(normal)
    spacings = {f.spacing for f in frames}
    if None in spacings:
        raise GeometryError(f"no Pixel Spacing in {name_files(name(f) for f in frames if f.spacing is None)}", folder)
    if len(spacings) > 1:
        raise GeometryError(f"pixel spacing differs between slices: {sorted(spacings)}", folder)
    row_spacing, column_spacing = spacings.pop()

    distance = np.array([float(np.dot(f.position, normal)) for f in frames])
    order_index = np.argsort(distance, kind="stable")
    order = [frames[i] for i in order_index]
    distance = distance[order_index]
    gaps = np.diff(distance)
    duplicates = np.nonzero(gaps < SLICE_POSITION_TOLERANCE_MM)[0]
    if duplicates.size:
        d = duplicates[0]
        raise GeometryError(
            f"{duplicates.size + 1 if duplicates.size == 1 else duplicates.size} slices share a position "
            f"({distance[d]:.3f} mm along the normal): {name(order[d])} and {name(order[d + 1])}; "
            f"the folder may hold several acquisitions, echoes or time points", folder)
    if len(order) > 1:
        gap = float(statistics.median(gaps.tolist()))  # np.median imports numpy.ma on first use: 17 ms
        off = np.nonzero(np.abs(gaps - gap) > SLICE_GAP_TOLERANCE * gap)[0]
        if off.size:
            d = off[0]
            ratio = gaps[d] / gap
            kind = (f"missing slices: a gap of {gaps[d]:.3f} mm (about {round(ratio) - 1} slices missing) "
                    if abs(ratio - round(ratio)) < 0.1 and round(ratio) >= 2
                    else f"irregular slice spacing: {gaps[d]:.3f} mm where the spacing is {gap:.3f} mm ")
            raise GeometryError(kind + f"between {name(order[d])} and {name(order[d + 1])}"
                                + (f" ({off.size} such gaps)" if off.size > 1 else ""), folder)
        step = (order[-1].position - order[0].position) / (len(order) - 1)
        in_plane = step - np.dot(step, normal) * normal
        if np.linalg.norm(in_plane) > 1e-3 * max(1.0, gap):
            raise GeometryError(
                f"gantry tilt or sheared stack: each slice is shifted {np.linalg.norm(in_plane):.3f} mm in-plane "
                f"from the previous one ({name(order[0])} .. {name(order[-1])}); resample the series to a "
                f"regular grid first", folder)
        # Each position must lie on the straight line of the stack (no in-plane jumps).
        expected = order[0].position + np.outer(np.arange(len(order)), step)
        worst = int(np.argmax(np.linalg.norm(np.array([f.position for f in order]) - expected, axis=1)))
        if np.linalg.norm(order[worst].position - expected[worst]) > max(0.01, SLICE_GAP_TOLERANCE * gap):
            raise GeometryError(f"slice positions do not lie on one line: {name(order[worst])} is off by "
                                f"{np.linalg.norm(order[worst].position - expected[worst]):.3f} mm", folder)
        slice_vector = step
    else:
        log.info("single-slice series: slice spacing taken as %.3f mm", thickness)
        slice_vector = normal * thickness
    affine = np.eye(4)
    affine[:3, 0] = row_dir * column_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = slice_vector
    affine[:3, 3] = order[0].position
    return VolumeGeometry((len(order), rows, columns), affine), order


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
