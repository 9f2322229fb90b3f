"""Segmentation files in and out: Slicer ``.seg.nrrd`` (slicerio), label maps in NRRD, NIfTI or
MetaImage (SimpleITK), and numpy arrays. Every geometry is LPS."""
from __future__ import annotations

import io
import logging
import math
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ..core import arrays
from ..core.errors import InputError, OutputError
from ..core.geometry import VolumeGeometry
from ..core.model import Segment, Segmentation, Terminology, _default_color
from ..core.outputs import atomic_path
from ..core.inputs import reading

log = logging.getLogger(__name__)

LABEL_MAP_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def load_segmentation(path: os.PathLike | str, names: Optional[Dict[int, str]] = None) -> Segmentation:
    """Read a segmentation file on its own grid.

    ``.seg.nrrd`` (or any NRRD with Slicer segment fields) keeps segment names, colours,
    terminology, layers and overlaps; other label maps give one segment per label value
    (named from ``names`` or ``Segment_<value>``).

    Raises:
        InputError: missing, unreadable or not a label volume (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("segmentation file does not exist", path)
    lower = path.name.lower()
    if not lower.endswith(LABEL_MAP_SUFFIXES):
        raise InputError(f"unknown segmentation format; expected one of {', '.join(LABEL_MAP_SUFFIXES)}", path)
    # Errors deep in the model (a singular grid, a bad layer) and decoding errors name the file.
    with reading(path, "the segmentation"):
        if lower.endswith((".nrrd", ".nhdr")) and _is_slicer_segmentation(path):
            return _read_seg_nrrd(path)
        return _read_label_map(path, names)


def _is_slicer_segmentation(path: Path) -> bool:
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception as exc:  # pynrrd raises its own and ValueError for broken headers
        raise InputError(f"not a readable NRRD file ({exc})", path) from None
    return any(key.startswith("Segment0_") for key in header)


def _read_seg_nrrd(path: Path) -> Segmentation:
    import slicerio

    try:
        # The metadata from slicerio; the voxels from _read_gzip_voxels, or slicerio where it
        # does not apply (see there why).
        layers = _read_gzip_voxels(path)
        data = slicerio.read_segmentation(str(path), skip_voxels=layers is not None)
    except Exception as exc:
        raise InputError(f"not a readable Slicer segmentation ({exc})", path) from None
    if layers is None:
        voxels = np.asarray(data["voxels"])
        # slicerio gives (I, J, K) or (layer, I, J, K); the model is (layer, K, J, I).
        layers = voxels.T[np.newaxis] if voxels.ndim == 3 else np.transpose(voxels, (0, 3, 2, 1))
    if not np.issubdtype(layers.dtype, np.integer):
        raise InputError(f"segmentation voxels are {layers.dtype}, expected integer labels", path)
    geometry = VolumeGeometry(layers.shape[1:], np.asarray(data["ijkToLPS"], dtype=float))
    segments = []
    _restore_utf8_texts(path, data.get("segments", []))
    for index, s in enumerate(data.get("segments", [])):
        terminology = Terminology.from_slicerio(s.get("terminology"))
        segments.append(Segment(
            id=str(s.get("id") or f"Segment_{index + 1}"), name=str(s.get("name") or s.get("id")),
            color=tuple(s.get("color") or _default_color(index)), terminology=terminology,
            layer=int(s.get("layer", 0) or 0), label_value=int(s.get("labelValue", index + 1) or index + 1)))
    return Segmentation(geometry, np.ascontiguousarray(layers), segments)


def _restore_utf8_texts(path: Path, segments: list) -> None:
    """Put back the non-ASCII characters of segment ids, names and terminology that slicerio's
    reader (pynrrd decodes header lines as ASCII, dropping other characters) loses. Slicer
    writes them as UTF-8 bytes in the header, as write_seg_nrrd does."""
    import re

    with open(path, "rb") as stream:
        head = stream.read(1 << 16)
        while b"\n\n" not in head:
            more = stream.read(1 << 16)
            if not more:
                break
            head += more
    head = head.split(b"\n\n", 1)[0]
    if head.isascii():
        return
    fields: Dict[int, Dict[str, str]] = {}
    for line in head.split(b"\n"):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("latin-1")  # not UTF-8: as a byte string, never lost
        match = re.match(r"^Segment([0-9]+)_(ID|Name|Tags):=(.*)$", text.rstrip("\r"))
        if match:
            fields.setdefault(int(match.group(1)), {})[match.group(2)] = match.group(3)
    if len(fields) != len(segments):  # slicerio lists one entry per index, in index order
        return
    for segment, index in zip(segments, sorted(fields)):
        own = fields[index]
        if "ID" in own:
            segment["id"] = own["ID"]
        if "Name" in own:
            segment["name"] = own["Name"]
        for tag in own.get("Tags", "").split("|"):
            key, _, value = tag.strip().partition(":")
            if key == "TerminologyEntry" and not value.isascii():
                from slicerio.segmentation import terminology_entry_from_string  # not re-exported

                segment["terminology"] = terminology_entry_from_string(value)


# NRRD type names (the NRRD format specification) of the integer types a segmentation holds.
_NRRD_INTEGER_TYPES = {
    **dict.fromkeys(("signed char", "int8", "int8_t"), "i1"),
    **dict.fromkeys(("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
    **dict.fromkeys(("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t"), "i4"),
    **dict.fromkeys(("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
}
_DEFLATE_MAX_RATIO = 1032  # the most deflate can shrink data
_INFLATE_CHUNK = 1 << 20  # bytes inflated at a time: small enough to stay in the CPU cache
_INFLATE_INPUT_CHUNK = 1 << 16  # compressed bytes given to the inflater at a time


def _read_gzip_voxels(path: Path) -> Optional[np.ndarray]:
    """The label layers (L, K, J, I) of a gzip-encoded, attached-data NRRD, else None (see
    :func:`_read_nrrd_voxels`)."""
    return _read_nrrd_voxels(path, ("gzip", "gz"))


def _read_nrrd_voxels(path: Path, encodings=("gzip", "gz", "raw")) -> Optional[np.ndarray]:
    """The label layers (L, K, J, I) of an integer NRRD with attached data in one of ``encodings``
    (gzip, raw), else None.

    Why not pynrrd (through slicerio): it inflates the whole volume into one growing buffer and
    copies it twice (0.2 s for 512x512x200, the benchmark's notes). Inflating chunk by chunk
    straight into the array takes half that with Python's zlib and a tenth with zlib-ng (a
    dependency; zlib is the fallback). Other encodings, detached data and skips go to slicerio.
    """
    import nrrd

    with open(path, "rb") as stream:
        header = nrrd.read_header(stream)
        dtype = _NRRD_INTEGER_TYPES.get(str(header.get("type", "")))
        if (header.get("encoding") not in encodings or dtype is None
                or any(key in header for key in ("data file", "datafile"))
                or any(header.get(key) for key in ("line skip", "lineskip", "byte skip", "byteskip"))):
            return None
        sizes = [int(n) for n in header["sizes"]]
        if len(sizes) not in (3, 4) or min(sizes) < 1:
            return None
        dtype = np.dtype(dtype).newbyteorder("<" if header.get("endian", "little") == "little" else ">")
        # Sizes the file cannot hold (deflate shrinks at most 1032:1) are left to the other reader,
        # which says what is wrong, instead of allocating them here.
        stored = os.fstat(stream.fileno()).st_size - stream.tell()
        ratio = 1 if header["encoding"] == "raw" else _DEFLATE_MAX_RATIO
        if stored * ratio < math.prod(sizes) * dtype.itemsize:
            return None
        flat = arrays.zeros((int(np.prod(sizes)) * dtype.itemsize,), np.uint8)
        if header["encoding"] == "raw":
            if stream.readinto(memoryview(flat)) != flat.size:
                return None  # cut short: SimpleITK says so
        else:
            _inflate_into(stream.read(), flat, path)
    # NRRD stores the first axis fastest: reversed, the sizes are C order, (K, J, I[, L]).
    voxels = flat.view(dtype).reshape(sizes[::-1])
    if not dtype.isnative:
        voxels = voxels.astype(dtype.newbyteorder("="))
    return voxels[np.newaxis] if voxels.ndim == 3 else np.ascontiguousarray(np.moveaxis(voxels, 3, 0))


def _zlib():
    """zlib-ng's zlib module (inflates ~10x and deflates ~3x faster than Python's, the same streams),
    else Python's."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:  # pragma: no cover - zlib-ng is a dependency; keep working without it
        import zlib

        return zlib
    return zlib_ng


def _inflate_into(compressed: bytes, out: np.ndarray, path: Path) -> None:
    """Inflate gzip data into ``out`` (uint8), which it must fill exactly."""
    zlib = _zlib()
    inflater, at, source = zlib.decompressobj(zlib.MAX_WBITS | 16), 0, memoryview(compressed)
    # Fed a slice at a time: zlib copies its unconsumed input, which for the whole input at
    # once made inflating quadratic in the compressed size.
    for start in range(0, len(source), _INFLATE_INPUT_CHUNK):
        pending = source[start:start + _INFLATE_INPUT_CHUNK]
        while pending and not inflater.eof:
            piece = inflater.decompress(pending, _INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            if at + len(piece) > out.size:
                raise InputError(f"the voxel data holds more than the {out.size} bytes its sizes give", path)
            out[at:at + len(piece)] = np.frombuffer(piece, np.uint8)
            at += len(piece)
        if inflater.eof:
            break
    if at != out.size:
        raise InputError(f"the voxel data holds {at} bytes, its sizes give {out.size}", path)


#: NRRD "space" values of a label map read without SimpleITK, and the sign that takes an axis of
#: that space to LPS.
_NRRD_SPACES = {**dict.fromkeys(("left-posterior-superior", "LPS"), np.array([1.0, 1.0, 1.0])),
                **dict.fromkeys(("right-anterior-superior", "RAS"), np.array([-1.0, -1.0, 1.0]))}


def _read_nrrd_label_map(path: Path) -> Optional[Tuple[VolumeGeometry, np.ndarray]]:
    """The geometry (LPS) and (K, J, I) labels of a plain 3D integer NRRD label map with attached
    raw or gzip data and its geometry in LPS or RAS space directions, read with pynrrd's header
    and our inflater, as SimpleITK reads them (tested against it); None for any other NRRD, which
    SimpleITK reads. Importing SimpleITK alone is 0.06 s of CPU per command (bench_startup.py notes).
    """
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception:  # pynrrd raises its own and ValueError: SimpleITK says what is wrong
        return None
    sign = _NRRD_SPACES.get(str(header.get("space", "")))
    directions = header.get("space directions")
    origin = header.get("space origin", np.zeros(3))
    try:
        directions = np.asarray(directions, dtype=float)
        origin = np.asarray(origin, dtype=float)
    except (TypeError, ValueError):
        return None
    if (sign is None or int(header.get("dimension", 0)) != 3 or directions.shape != (3, 3)
            or origin.shape != (3,) or not np.all(np.isfinite(directions)) or not np.all(np.isfinite(origin))
            or header.get("encoding") not in ("raw", "gzip", "gz")
            or any(str(kind) != "domain" for kind in header.get("kinds", ["domain"] * 3))):
        return None
    spacing = np.linalg.norm(directions, axis=1)  # pynrrd: one row per axis
    if not np.all(spacing > 0):
        return None
    voxels = _read_nrrd_voxels(path)
    if voxels is None:
        return None
    geometry = VolumeGeometry.from_origin_spacing_directions(
        voxels.shape[1:], origin * sign, spacing, (directions / spacing[:, None]).T * sign[:, None])
    return geometry, voxels[0]


def _read_label_map(path: Path, names: Optional[Dict[int, str]]) -> Segmentation:
    if path.name.lower().endswith(".nrrd"):
        read = _read_nrrd_label_map(path)
        if read is not None:
            try:
                return Segmentation.from_label_map(read[0], read[1], names)
            except InputError as exc:
                raise InputError(exc.problem, path) from None
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"not a readable image ({str(exc).strip().splitlines()[-1]})", path) from None
    components = image.GetNumberOfComponentsPerPixel()
    is_float = image.GetPixelIDTypeAsString().endswith("float")  # "32-bit float", "vector of 64-bit float"...
    if image.GetDimension() != 3 or (components != 1 and not is_float):
        raise InputError(f"expected a 3D label map or 3D probability volume(s), got {image.GetDimension()}D with "
                         f"{components} components", path)
    array = sitk.GetArrayFromImage(image)
    try:
        if is_float and (components > 1 or not np.all(np.mod(array, 1) == 0)):
            # Probabilities or occupancies in [0, 1]: one segment per component (FRACTIONAL SEG).
            volumes = np.moveaxis(array, -1, 0) if components > 1 else array[np.newaxis]
            segments = [Segment(id=f"Segment_{n + 1}", name=(names or {}).get(n + 1, f"Segment_{n + 1}"),
                                color=_default_color(n)) for n in range(len(volumes))]
            return Segmentation.from_fractions(VolumeGeometry.from_sitk(image), list(volumes), segments)
        return Segmentation.from_label_map(VolumeGeometry.from_sitk(image), array, names)
    except InputError as exc:
        raise InputError(exc.problem, path) from None


def segmentation_from_array(labels: np.ndarray, geometry: VolumeGeometry,
                            names: Optional[Dict[int, str]] = None) -> Segmentation:
    """From a (K, J, I) integer label array (one segment per value) or a (N, K, J, I) boolean
    stack (one segment per mask, overlaps allowed), for use from Python."""
    labels = np.asarray(labels)
    if labels.ndim == 4 and labels.dtype == bool:
        segments = [Segment(id=f"Segment_{n + 1}", name=(names or {}).get(n + 1, f"Segment_{n + 1}"),
                            color=_default_color(n)) for n in range(labels.shape[0])]
        return Segmentation.from_masks(geometry, list(labels), segments)
    return Segmentation.from_label_map(geometry, labels, names)


#: gzip level of written .seg.nrrd voxels: 2, ITK's (SimpleITK's, dcmqi's) default for NRRD. Case C
#: (52 MB of labels): 0.08 s CPU and 1.30 MB, against 2.05 s and 0.68 MB at pynrrd's default 9
#: (Testing/benchmarks/bench_seg.py notes, "Command start-up").
SEG_NRRD_GZIP_LEVEL = 2


def write_seg_nrrd(path: os.PathLike | str, segmentation: Segmentation) -> None:
    """Write a Slicer ``.seg.nrrd`` (names, colours, terminology, layers)."""
    import slicerio

    layers = segmentation.layers
    voxels = layers[0].T if layers.shape[0] == 1 else np.transpose(layers, (0, 3, 2, 1))
    if layers.shape[0] == 0:
        voxels = np.zeros(segmentation.geometry.shape, np.uint8).T
    segments = []
    texts: Dict[str, str] = {}  # placeholder -> non-ASCII text (pynrrd writes ASCII headers only)

    def ascii_text(value):
        if isinstance(value, str) and not value.isascii():
            texts[f"DicomAnnotEmbedUtf8Text{len(texts):06d}"] = value
            return next(reversed(texts))
        if isinstance(value, (list, tuple)):
            return [ascii_text(v) for v in value]
        if isinstance(value, dict):
            return {k: ascii_text(v) for k, v in value.items()}
        return value

    extents = {}  # layer -> (lo, hi) of every label value, one pass per layer (was a pass per segment)
    for s in segmentation.segments:
        if s.layer not in extents:
            top = max(int(t.label_value) for t in segmentation.segments if t.layer == s.layer)
            extents[s.layer] = arrays.label_extents(layers[s.layer], top)
        entry = {"id": ascii_text(s.id), "name": ascii_text(s.name), "color": list(s.color),
                 "labelValue": int(s.label_value), "layer": int(s.layer), "nameAutoGenerated": False,
                 "colorAutoGenerated": False, "extent": _extent_of(*extents[s.layer], int(s.label_value))}
        if s.terminology is not None:
            entry["terminology"] = ascii_text(s.terminology.to_slicerio())
        segments.append(entry)
    data = {"voxels": voxels,
            "ijkToLPS": segmentation.geometry.ijk_to_lps, "segments": segments,
            "encoding": "gzip", "referenceImageExtentOffset": [0, 0, 0],
            "containedRepresentationNames": ["Binary labelmap"], "masterRepresentation": "Binary labelmap"}
    # The header is slicerio's (through pynrrd), stopped at its end; the voxels are compressed
    # here, straight from the layers. pynrrd copied the volume whole (tobytes, 52 MB for case C,
    # 0.02 s) and compressed it with zlib (0.08 s at level 2); zlib-ng takes 0.03 s for the same
    # stream content (bench_startup.py notes).
    sink = _HeaderSink()
    try:
        slicerio.write_segmentation(sink, data, compression_level=SEG_NRRD_GZIP_LEVEL)
    except _HeaderWritten:
        pass
    except TypeError:  # pragma: no cover - a slicerio that takes only file names
        sink.written.clear()
    with atomic_path(path) as tmp:
        if sink.header is None:  # pragma: no cover - a slicerio or pynrrd that writes otherwise
            _write_whole(tmp, slicerio, data, bytes(sink.written), texts)
            return
        # NRRD stores the first axis fastest: the Fortran order of ``voxels``, which is the C
        # order of the (K, J, I) layer (no copy); with several layers (L, I, J, K) a copy in that order.
        ordered = np.asfortranarray(voxels).ravel(order="F")
        with open(tmp, "wb") as stream:
            stream.write(_put_utf8_texts(sink.header, texts))
            _deflate_to(stream, ordered.view(np.uint8), SEG_NRRD_GZIP_LEVEL)


def _write_whole(tmp: str, slicerio, data: dict, written: bytes, texts: Dict[str, str]) -> None:
    """The .seg.nrrd as slicerio writes it whole (header and voxels, pynrrd's zlib): ``written``
    when the sink got all of it, else written by slicerio to ``tmp``; the UTF-8 texts put back."""
    if not written:
        slicerio.write_segmentation(tmp, data, compression_level=SEG_NRRD_GZIP_LEVEL)
        written = Path(tmp).read_bytes()
    end = written.index(b"\n\n") + 2
    with open(tmp, "wb") as stream:
        stream.write(_put_utf8_texts(written[:end], texts))
        stream.write(memoryview(written)[end:])


class _HeaderWritten(Exception):
    """Raised by :class:`_HeaderSink` when the NRRD header is complete."""


class _HeaderSink(io.RawIOBase):
    """A file for pynrrd to write into that keeps the header (up to and including the blank line
    that ends it) and stops the writer there, before it converts and compresses the voxels."""

    def __init__(self):
        super().__init__()
        self.written = bytearray()
        self.header: Optional[bytes] = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.written += data
        # pynrrd writes each field as one line and then the blank line alone (a segment name
        # may itself hold blank lines, written as before)
        if bytes(data) == b"\n" and self.written.endswith(b"\n\n"):
            self.header = bytes(self.written)
            raise _HeaderWritten
        return len(data)


_DEFLATE_CHUNK = 1 << 20  # bytes compressed at a time


def _deflate_to(stream, data: np.ndarray, level: int) -> None:
    """Write ``data`` (contiguous uint8) to ``stream`` as one gzip member at ``level``."""
    zlib = _zlib()
    compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    source = memoryview(data)
    for start in range(0, len(source), _DEFLATE_CHUNK):
        stream.write(compressor.compress(source[start:start + _DEFLATE_CHUNK]))
    stream.write(compressor.flush())


def _put_utf8_texts(header: bytes, texts: Dict[str, str]) -> bytes:
    """The header with the placeholders replaced by their text as UTF-8 bytes, as Slicer writes
    non-ASCII segment names (the NRRD header is otherwise ASCII)."""
    for placeholder, text in texts.items():
        header = header.replace(placeholder.encode("ascii"), text.replace("\n", " ").encode("utf-8"))
    return header


def _extent_of(lo: np.ndarray, hi: np.ndarray, value: int) -> list:
    """Slicer's segment extent [i0, i1, j0, j1, k0, k1] from arrays.label_extents; empty is [0, -1, 0, -1, 0, -1]."""
    if hi[value, 0] < 0:
        return [0, -1, 0, -1, 0, -1]
    return [int(lo[value, 0]), int(hi[value, 0]), int(lo[value, 1]), int(hi[value, 1]),
            int(lo[value, 2]), int(hi[value, 2])]


def write_label_map(path: os.PathLike | str, segmentation: Segmentation) -> None:
    """Write a plain label map (NRRD/NIfTI by suffix). Overlapping segments cannot be one label map."""
    import SimpleITK as sitk

    if segmentation.layers.shape[0] > 1:
        raise InputError("overlapping segments (several layers) cannot be written as one label map; "
                         "use .seg.nrrd", path)
    if not str(path).lower().endswith(LABEL_MAP_SUFFIXES):
        raise OutputError(f"a label map is written as {', '.join(LABEL_MAP_SUFFIXES)} (by its name)", path)
    labels = segmentation.layers[0] if segmentation.layers.shape[0] else np.zeros(segmentation.geometry.shape, np.uint8)
    with atomic_path(path) as tmp:
        sitk.WriteImage(segmentation.geometry.to_sitk_image(labels), tmp, useCompression=True)
