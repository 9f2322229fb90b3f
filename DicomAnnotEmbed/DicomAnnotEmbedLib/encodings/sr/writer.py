"""The bytes pydicom writes for a dataset's elements in explicit VR little endian, made faster:
the SR's content tree (75,000 elements for 100 segments on 200 images) took pydicom's writer
1.0 s CPU, ~13 microseconds an element (a buffer, tag, VR and length objects, and charset look-ups
for each). :func:`encode_sequence_value` encodes the elements that an SR's content items hold
(strings, numbers, sequences) directly and hands every other element to pydicom's own
``write_data_element``, so the result is pydicom's, byte for byte
(Testing/Python/encodings/test_sr_writer.py compares them; test_sr_speed_equivalence.py the
documents). :func:`raw_sequence` wraps the bytes as a raw element, which pydicom's writer copies as
it is.
"""
from __future__ import annotations

from struct import Struct
from typing import Iterable, List, Union

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

_HEADER_16 = Struct("<HH2sH")  # tag, VR, 2-byte length
_HEADER_32 = Struct("<HH2sxxL")  # tag, VR, 2 reserved bytes, 4-byte length
_ITEM = Struct("<HHL")  # item tag (FFFE,E000) and its length
_NUMBERS = {"FD": Struct("<d"), "FL": Struct("<f"), "US": Struct("<H"), "UL": Struct("<L"), "SS": Struct("<h"),
            "SL": Struct("<l")}
#: VRs whose explicit VR length field has 4 bytes (PS3.5 7.1.2).
_LENGTH_32 = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
#: VRs pydicom writes with write_string (not charset dependent): the value's characters as they are.
_PLAIN = frozenset({"AE", "AS", "CS", "DA", "DT", "TM"})
#: VRs pydicom encodes with the dataset's character set (write_text); ASCII is the same in all of
#: those a DICOM file can declare without code extensions, so only ASCII values are taken here.
_TEXT = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_BASE_ENCODING = "iso8859"


def raw_sequence(tag: Union[int, str], value: bytes) -> RawDataElement:
    """A raw SQ element (explicit VR little endian) holding the encoded items ``value``."""
    return RawDataElement(Tag(tag), "SQ", len(value), value, 0, False, True)


def encode_sequence_value(items: Iterable[Dataset], encodings: Union[str, List[str]] = _BASE_ENCODING) -> bytes:
    """The bytes pydicom writes as the value of a sequence of ``items`` (explicit VR little endian),
    in the character set ``encodings`` of the dataset holding it."""
    out: List[bytes] = []
    _items(items, encodings, out, {})
    return b"".join(out)


def _items(items: Iterable[Dataset], encodings, out: List[bytes], done: dict) -> None:
    """``done``: the bytes of each item already encoded in this call, by id: an item that several
    sequences share (the fast engine's code, algorithm and image library items: ~40,000 of case
    C's 75,000 elements) is encoded once (nothing changes an item while it is written)."""
    for item in items:
        known = done.get(id(item))
        if known is not None:
            out.append(known)
            continue
        at = len(out)
        out.append(b"")  # the item's header, once its length is known
        try:
            if getattr(item, "is_undefined_length_sequence_item", False) or 0x00080005 in item._dict:
                raise _Pydicom  # (0008,0005): the item has its own Specific Character Set
            _dataset(item, encodings, out, _plain_encoding(item), done)
        except _Pydicom:
            del out[at:]
            out.append(_pydicom_item(item, encodings))
        else:
            out[at] = _ITEM.pack(0xFFFE, 0xE000, sum(map(len, out[at + 1:])))
            out[at:] = [b"".join(out[at:])]
        done[id(item)] = out[-1]


class _Pydicom(Exception):
    """An item that pydicom's writer is to write whole (it would first correct ambiguous VRs)."""


def _plain_encoding(item: Dataset) -> bool:
    """True when pydicom skips its ambiguous-VR and character set pass on ``item`` (read as, or
    marked as, explicit VR little endian in the character set it has). The pass changes nothing
    in a dataset of decoded elements (DataElement) without ambiguous VRs: only raw elements and
    ambiguous VRs (e.g. "US or SS") make :func:`_dataset` hand an item without it to pydicom."""
    return item.original_encoding == (False, True) and item.original_character_set == item._character_set


def _dataset(ds: Dataset, encodings, out: List[bytes], plain: bool, done: dict) -> None:
    elements = ds._dict
    for tag in sorted(elements, key=int):  # (BaseTag's own __lt__, a Python call a comparison: ~10% of the time)
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # pydicom leaves out retired group lengths
        element = elements[tag]
        decoded = type(element) is DataElement
        value = _value(element, encodings, out, done) if decoded else None
        if value is None:
            if not decoded and not plain or element.VR is not None and len(element.VR) != 2:
                raise _Pydicom
            out.append(_pydicom_element(element, encodings))
        elif value is not _WRITTEN:
            vr = element.VR
            if vr in _LENGTH_32:
                out.append(_HEADER_32.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)))
            else:
                out.append(_HEADER_16.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)))
            out.append(value)


_WRITTEN = object()


def _value(element: DataElement, encodings, out: List[bytes], done: dict):
    """The encoded value of ``element`` (or _WRITTEN when a sequence was written to ``out``), or None
    when pydicom is to write it."""
    vr = element.VR
    value = element._value
    if vr == "SQ":
        if element.is_undefined_length:
            return None
        tag = element.tag
        at = len(out)
        out.append(b"")
        _items(value or (), encodings, out, done)
        out[at] = _HEADER_32.pack(tag >> 16, tag & 0xFFFF, b"SQ", sum(map(len, out[at + 1:])))
        return _WRITTEN
    if value is None:
        return b""
    kind = type(value)
    if kind is str and not value:
        return b""
    if vr == "UI":
        if not isinstance(value, str):
            return None
        encoded = value.encode(_BASE_ENCODING)
        return encoded + b"\0" if len(encoded) % 2 else encoded
    if vr in _NUMBERS:
        # (a float's subclass too: the image library's positions are DSfloat, 600 FD values for
        # 200 images, which pydicom's write_numbers packs as it packs a float)
        return _NUMBERS[vr].pack(value) if kind is int or isinstance(value, float) else None
    if vr == "DS" or vr == "IS":
        if not isinstance(value, (str, int, float)):
            return None  # several values, a Decimal
        text = value.original_string if hasattr(value, "original_string") else str(value)
    elif kind is str and (vr in _PLAIN or vr in _TEXT and value.isascii()):
        text = value
    else:
        return None
    encoded = text.encode(_BASE_ENCODING)
    if len(encoded) > 0xFFFF:
        return None  # pydicom writes it as UN
    return encoded + b" " if len(encoded) % 2 else encoded


def _pydicom_element(element, encodings) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    buffer = _buffer(DicomBytesIO)
    write_data_element(buffer, element, encodings)
    return buffer.getvalue()


def _pydicom_item(item: Dataset, encodings) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_sequence_item

    buffer = _buffer(DicomBytesIO)
    write_sequence_item(buffer, item, encodings if isinstance(encodings, list) else [encodings])
    return buffer.getvalue()


def _buffer(kind):
    buffer = kind()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    return buffer


def write_document(path, document: Dataset) -> None:
    """``pydicom.dcmwrite(path, document, enforce_file_format=True)``, the same file, faster: the
    datasets of the header are marked explicit (``document.mark_explicit``) and the Content
    Sequence is encoded by :func:`encode_sequence_value`. When the document cannot be marked
    (an ambiguous VR, raw elements in its header), pydicom writes it all (content marked)."""
    import pydicom

    from .document import mark_explicit

    mark_explicit(document, content=False)
    tag = 0x0040A730  # Content Sequence
    element = document._dict.get(tag)
    if type(element) is not DataElement or element.VR != "SQ" or element.is_undefined_length or not (
            document.original_encoding == (False, True)
            and document.original_character_set == document._character_set):
        mark_explicit(document)
        pydicom.dcmwrite(path, document, enforce_file_format=True)
        return
    encodings = document.get("SpecificCharacterSet", _BASE_ENCODING)
    document._dict[tag] = raw_sequence(tag, encode_sequence_value(element.value, encodings))
    try:
        pydicom.dcmwrite(path, document, enforce_file_format=True)
    finally:
        document._dict[tag] = element
