"""Reading input files with one clear error per problem (the message names the file)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import traceback
from pathlib import Path
from typing import Any, Iterator, Optional

from .errors import DicomAnnotEmbedError, InputError, one_line

#: Libraries that decode input files: an exception raised inside one of them while a reader is
#: reading a file is a fault of that file (pydicom decodes elements lazily, when first used:
#: an unknown VR, a cut sequence or a wrong length surfaces far from dcmread).
DECODING_LIBRARIES = ("pydicom", "highdicom", "nrrd", "SimpleITK", "PIL", "slicerio", "pylibjpeg",
                      "jpeg_ls", "openjpeg", "rle", "zlib_ng", "gzip", "zlib", "csv", "json")


def is_decoding_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from decoding a file: raised inside a decoding library, or one of
    the exceptions that only byte parsing raises."""
    import pydicom.errors

    if isinstance(exc, (struct.error, EOFError, UnicodeDecodeError, pydicom.errors.InvalidDicomError,
                        pydicom.errors.BytesLengthException)):
        return True
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    innermost = frames[-1].filename.replace("\\", "/")
    if innermost.endswith("/DicomAnnotEmbedLib/dicom/raw.py"):  # our own byte-level parser
        return True
    if "/DicomAnnotEmbedLib/" in innermost:
        return False
    # Below our last frame: raised in a decoding library, or in what it called (pydicom -> enum)
    names = [f.filename.replace("\\", "/") for f in frames]
    ours = max((i for i, name in enumerate(names) if "/DicomAnnotEmbedLib/" in name), default=-1)
    return any(f"/{lib}/" in name or name.endswith(f"/{lib}.py") for name in names[ours + 1:] for lib in DECODING_LIBRARIES)


@contextlib.contextmanager
def reading(path: Optional[os.PathLike | str], what: str = "") -> Iterator[None]:
    """Guard a reader's work on one input file.

    Inside it, a project error that names no file gets ``path``; an exception raised while a
    decoding library (pydicom, highdicom, pynrrd, ...) decodes the file becomes one
    :class:`InputError` naming ``path`` ("cannot decode ..."). Other exceptions (bugs) pass.
    """
    try:
        yield
    except DicomAnnotEmbedError as exc:
        if exc.path is None and path is not None:
            exc.set_path(path)
        raise
    except Exception as exc:
        if path is None or isinstance(exc, MemoryError) or not is_decoding_error(exc):
            raise
        raise InputError(f"cannot decode{' ' + what if what else ''}: "
                         f"{exc.__class__.__name__}: {one_line(exc, 300)}", path) from None


def read_text_file(path: os.PathLike | str, what: str) -> str:
    """The text of a UTF-8 file (a byte-order mark is tolerated).

    Raises:
        InputError: missing, not a file, unreadable, or not UTF-8 text.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"file does not exist; expected {what}", path)
    if not path.is_file():
        raise InputError(f"is not a file; expected {what}", path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"not UTF-8 text; expected {what}", path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None


def read_json_file(path: os.PathLike | str, what: str, **loads_options) -> Any:
    """The parsed content of a JSON file.

    Args:
        path: the file.
        what: what the file should be, for messages (e.g. "a Slicer markups file").
        loads_options: passed to :func:`json.loads` (e.g. ``object_pairs_hook``).

    Raises:
        InputError: missing, not a file, unreadable, not UTF-8 text, or invalid JSON.
    """
    text = read_text_file(path, what)
    try:
        return json.loads(text, **loads_options)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}); expected {what}",
                         path) from None


class BoundedReader(io.BufferedReader):
    """A buffered binary file whose reads never ask for more than the file holds: pydicom reads a
    value by its declared length, and ``read(0xFFFFFFF0)`` on a broken file first allocates 4 GiB."""

    def __init__(self, raw, size: Optional[int] = None):
        super().__init__(raw)
        self._size = os.fstat(raw.fileno()).st_size if size is None else size

    def read(self, size=-1):
        if size is not None and size > 65536:
            size = max(0, min(size, self._size - self.tell()))
        return super().read(size)


def open_bounded(path: os.PathLike | str) -> BoundedReader:
    """``open(path, "rb")`` with reads bounded by the file size (see BoundedReader)."""
    return BoundedReader(io.FileIO(str(path), "rb"))


def read_dicom_file(path: os.PathLike | str, what: str, **dcmread_options):
    """A DICOM dataset read by pydicom, pixel data included unless ``stop_before_pixels``.

    Raises:
        InputError: missing, not a file, or not readable as DICOM.
    """
    import pydicom

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file does not exist" if not path.exists() else f"is not a file; expected {what}",
                         path)
    try:
        if dcmread_options.get("defer_size") is not None:  # deferred values are read from the path later
            ds = pydicom.dcmread(path, **dcmread_options)
        else:
            with open_bounded(path) as stream:
                ds = pydicom.dcmread(stream, **dcmread_options)
            ds.filename = str(path)  # as dcmread(path) sets it
        check_sequences(ds, path)
        return ds
    except InputError:
        raise
    except Exception as exc:  # pydicom raises several types for broken files
        raise InputError(f"not a readable DICOM file ({one_line(exc, 300)})", path) from None


#: Sequences check_sequences() does not open: the per-frame groups of a multi-frame object are
#: thousands of items, read from their raw bytes (dicom/raw.py) or through core.headers.
_UNOPENED_SEQUENCES = frozenset({0x52009230})


def check_sequences(ds, path: Optional[os.PathLike | str] = None, unopened: frozenset = frozenset()) -> None:
    """Refuse a sequence encoded as another VR (one corrupted VR turns a sequence into text,
    and ``for item in ds.get("...Sequence", [])`` then iterates over characters): an
    InputError naming ``path``. Opens every sequence but the per-frame functional groups and
    the tags in ``unopened`` (of ``ds`` itself; their VR is checked) (a sequence's items are
    parsed, their values are not converted; deferred values are not read)."""
    from pydicom.datadict import DicomDictionary

    for tag in list(ds.keys()):
        element = ds.get_item(tag, keep_deferred=True)
        vr = getattr(element, "VR", None)
        expected = DicomDictionary.get(tag, ("",))[0]
        if vr != "SQ" and expected != "SQ":
            continue
        if vr not in (None, "SQ", "UN"):
            name = DicomDictionary[tag][4] or DicomDictionary[tag][2]
            raise InputError(f"{name} ({tag >> 16:04X},{tag & 0xFFFF:04X}) is encoded as {vr}, not as a sequence", path)
        if tag in _UNOPENED_SEQUENCES or tag in unopened:
            continue
        for item in sequence_items(ds, tag, path):
            check_sequences(item, path)


def sequence_items(ds, tag: int, path: Optional[os.PathLike | str] = None):
    """The items of the sequence ``tag`` of ``ds``, parsed (their values not converted); an
    InputError naming ``path`` when it cannot be decoded or is not a sequence."""
    from pydicom.datadict import DicomDictionary

    name = DicomDictionary[tag][4] if tag in DicomDictionary else f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    try:
        value = ds[tag].value  # parses the items (not their values)
    except Exception as exc:  # a cut or broken sequence (pydicom raises OSError, ValueError, ...)
        raise InputError(f"{name} cannot be decoded ({exc.__class__.__name__}: {one_line(exc, 200)})", path) from None
    if not hasattr(value, "__iter__") or isinstance(value, (str, bytes)):
        raise InputError(f"{name} is not a sequence", path)
    return value
