"""Byte-level DICOM for the hot paths: per-frame functional groups of multi-frame objects.

pydicom turns every element into Python objects when it reads and writes. For the thousands
of Per-Frame Functional Groups items of a SEG this costs seconds (the SEG baseline profile:
2.6 s writing and 2.5 s parsing 4,926 items). Here each distinct piece is encoded once by
pydicom and the bytes are reused, and on reading only the few values needed are taken from
the raw bytes. Explicit and implicit VR little endian only; callers fall back to pydicom for
anything else.
"""
from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import UID
from pydicom.valuerep import IS

from ..core.header_blocks import LONG_VR_BYTES

ITEM_TAG = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF

Buffer = Union[bytes, bytearray, memoryview]
RawItem = Dict[int, Union[bytes, List["RawItem"]]]


class RawParseError(ValueError):
    """The bytes are not the expected encoding; the caller falls back to pydicom."""


def encode_element(element: DataElement) -> bytes:
    """One element (tag, VR, length, value) in explicit VR little endian, as pydicom writes it.
    A UID or an integer string (what encode_variants' varying parts are) is packed here
    (:func:`plain_element`): pydicom's writer took ~25 microseconds an element, 0.01 s of a
    200-frame SEG export (bench_seg.py notes)."""
    if element.VR in ("UI", "IS") and type(element.value) in (str, UID, IS) and len(str(element.value)) < 0xFFFF:
        encoded = plain_element(element.tag, element.VR, str(element.value))
        if encoded is not None:
            return encoded
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_data_element(buffer, element)
    return buffer.getvalue()


def encode_variants(keys, build, varying) -> Optional[Dict[int, bytes]]:
    """Encodings of ``build(key)`` for many keys whose elements differ only in the values of
    ``varying(key)`` (a list of elements inside it, e.g. a referenced UID).

    pydicom encodes one element per distinct set of value lengths; the others are that
    encoding with the varying elements' bytes replaced, since equal lengths leave every
    enclosing length unchanged. None when a varying element cannot be found in the encoding.
    """
    patterns: Dict[tuple, Tuple[bytes, List[int]]] = {}
    result: Dict[int, bytes] = {}
    for key in keys:
        parts = [encode_element(part) for part in varying(key)]
        signature = tuple(len(part) for part in parts)
        if signature not in patterns:
            encoded = encode_element(build(key))
            offsets, position = [], 0
            for part in parts:
                found = encoded.find(part, position)
                if found < 0:
                    return None
                offsets.append(found)
                position = found + len(part)
            patterns[signature] = (encoded, offsets)
            result[key] = encoded
            continue
        encoded, offsets = patterns[signature]
        patched = bytearray(encoded)
        for offset, part in zip(offsets, parts):
            patched[offset:offset + len(part)] = part
        result[key] = bytes(patched)
    return result


def item(body: bytes) -> bytes:
    """A sequence item of defined length around already encoded elements."""
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def element_header(tag: int, vr: str, length: int) -> bytes:
    """Tag, VR and length of an explicit VR little endian element."""
    code = vr.encode("ascii")
    if code in LONG_VR_BYTES:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, code, 0, length)
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, code, length)


def parse_sequence(value: Buffer, implicit_vr: bool = False, descend: Optional[set] = None) -> List[RawItem]:
    """Items of a sequence value as {tag: bytes or nested items}.

    Only sequences whose tag is in ``descend`` are parsed into items (None: all); others are
    kept as their raw bytes. Values are not converted: see :func:`ds_values`, :func:`us_value`.

    Raises:
        RawParseError: the bytes do not parse as a sequence.
    """
    try:
        items, _ = _parse_items(memoryview(value), 0, len(value), implicit_vr, descend)
    except (struct.error, IndexError) as exc:
        raise RawParseError(f"truncated sequence ({exc})") from None
    return items


def _parse_items(buf: memoryview, pos: int, end: int, implicit: bool, descend) -> Tuple[List[RawItem], int]:
    items: List[RawItem] = []
    while pos < end:
        group, element, length = struct.unpack_from("<HHI", buf, pos)
        tag = group << 16 | element
        pos += 8
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM_TAG:
            raise RawParseError(f"expected an item, found tag {tag:08X}")
        if length == UNDEFINED_LENGTH:
            parsed, pos = _parse_dataset(buf, pos, end, implicit, descend)
        else:
            if pos + length > end:
                raise RawParseError("item runs past the end of its sequence")
            parsed, _ = _parse_dataset(buf, pos, pos + length, implicit, descend)
            pos += length
        items.append(parsed)
    return items, pos


def _parse_dataset(buf: memoryview, pos: int, end: int, implicit: bool, descend) -> Tuple[RawItem, int]:
    parsed: RawItem = {}
    while pos < end:
        group, element = struct.unpack_from("<HH", buf, pos)
        tag = group << 16 | element
        if tag == ITEM_DELIMITER:
            return parsed, pos + 8
        if implicit:
            (length,) = struct.unpack_from("<I", buf, pos + 4)
            pos += 8
            is_sequence = length == UNDEFINED_LENGTH or _dictionary_is_sequence(tag)
        else:
            vr = bytes(buf[pos + 4:pos + 6])
            if vr in LONG_VR_BYTES:
                (length,) = struct.unpack_from("<I", buf, pos + 8)
                pos += 12
            else:
                (length,) = struct.unpack_from("<H", buf, pos + 6)
                pos += 8
            is_sequence = vr == b"SQ" or (vr == b"UN" and length == UNDEFINED_LENGTH)
        if is_sequence and (descend is None or tag in descend or length == UNDEFINED_LENGTH):
            stop = end if length == UNDEFINED_LENGTH else pos + length
            items, after = _parse_items(buf, pos, stop, implicit, descend)
            parsed[tag] = items
            pos = after if length == UNDEFINED_LENGTH else stop
        else:
            if length == UNDEFINED_LENGTH:
                raise RawParseError(f"undefined length for non-sequence tag {tag:08X}")
            if pos + length > end:
                raise RawParseError(f"element {tag:08X} runs past the end of its item")
            parsed[tag] = bytes(buf[pos:pos + length])
            pos += length
    return parsed, pos


def item_values(value: Buffer, implicit_vr: bool, paths: List[Tuple[int, ...]]) -> List[List[Optional[bytes]]]:
    """For every item of a sequence value, the raw value at each of ``paths`` (sequence tags, then
    the element tag; the first item of each nested sequence), None when absent: what
    ``[first([item], *path) for path in paths]`` gives for the items :func:`parse_sequence` parses.

    A walk that copies only those values and skips the other elements by their lengths: the
    per-frame groups of a BINARY SEG (4,926 items) took parse_sequence 0.075 s of CPU, this 0.03 s;
    items that are alike are read all at once (:func:`_aligned_item_values`), 0.01 s.

    Raises:
        RawParseError: the bytes do not parse as a sequence.
    """
    trie: dict = {}
    for index, path in enumerate(paths):
        node = trie
        for tag in path[:-1]:
            node = node.setdefault(tag, {})
            if not isinstance(node, dict):
                raise ValueError(f"path {path} runs through a value")
        node[path[-1]] = index
    buf = memoryview(value)
    end = len(buf)
    aligned = _aligned_item_values(buf, implicit_vr, trie, len(paths))
    if aligned is not None:
        return aligned
    items: List[List[Optional[bytes]]] = []
    walker = _Walker(buf, implicit_vr)
    try:
        pos = 0
        while pos < end:
            tag, length = _ITEM_HEAD.unpack_from(buf, pos)
            pos += 8
            if tag == _SEQUENCE_DELIMITER_LE:
                break
            if tag != _ITEM_TAG_LE:
                raise RawParseError(f"expected an item, found tag {_tag_name(tag)}")
            found = [None] * len(paths)
            if length == UNDEFINED_LENGTH:
                pos = walker.dataset(pos, end, trie, found)
            else:
                if pos + length > end:
                    raise RawParseError("item runs past the end of its sequence")
                walker.dataset(pos, pos + length, trie, found)
                pos += length
            items.append(found)
    except (struct.error, IndexError) as exc:
        raise RawParseError(f"truncated sequence ({exc})") from None
    return items


#: Tag (group, element) and a 4-byte length read as two little endian words: the tag word is then
#: element << 16 | group.
_ITEM_HEAD = struct.Struct("<II")
_ITEM_TAG_LE = 0xE000FFFE
_SEQUENCE_DELIMITER_LE = 0xE0DDFFFE
_EXPLICIT_HEAD = struct.Struct("<HH2sH")
_LENGTH = struct.Struct("<I")


def _tag_name(word: int) -> str:
    return f"{word & 0xFFFF:04X}{word >> 16:04X}"


class _Walker:
    """:func:`item_values`' walk over one sequence's bytes."""

    def __init__(self, buf: memoryview, implicit: bool):
        self.buf, self.implicit = buf, implicit

    def dataset(self, pos: int, end: int, trie: Optional[dict], found: list) -> int:
        """Walk the elements from ``pos`` to ``end`` or the item delimiter,
        keeping the values ``trie`` asks for; the position after the item."""
        buf = self.buf
        implicit = self.implicit
        while pos < end:
            group, element, vr, short = _EXPLICIT_HEAD.unpack_from(buf, pos)
            tag = group << 16 | element
            if tag == ITEM_DELIMITER:
                return pos + 8
            if implicit:
                (length,) = _LENGTH.unpack_from(buf, pos + 4)
                pos += 8
                is_sequence = length == UNDEFINED_LENGTH or _dictionary_is_sequence(tag)
            elif vr in LONG_VR_BYTES:
                (length,) = _LENGTH.unpack_from(buf, pos + 8)
                pos += 12
                is_sequence = vr == b"SQ" or (vr == b"UN" and length == UNDEFINED_LENGTH)
            else:
                length = short
                pos += 8
                is_sequence = vr == b"SQ"
            wanted = trie.get(tag) if trie else None  # an int: a value's index; a dict: a sequence's paths
            if is_sequence:
                stop = end if length == UNDEFINED_LENGTH else pos + length
                if length != UNDEFINED_LENGTH and stop > end:
                    raise RawParseError(f"element {tag:08X} runs past the end of its item")
                inside = wanted if type(wanted) is dict else None
                pos = self.sequence(pos, stop, inside, found) if inside or length == UNDEFINED_LENGTH else stop
                if type(wanted) is int:
                    found[wanted] = None  # a sequence where a value was asked for
            else:
                if length == UNDEFINED_LENGTH:
                    raise RawParseError(f"undefined length for non-sequence tag {tag:08X}")
                if pos + length > end:
                    raise RawParseError(f"element {tag:08X} runs past the end of its item")
                if type(wanted) is int:
                    found[wanted] = bytes(buf[pos:pos + length])
                pos += length
        return pos  # an item of undefined length cut short ends at ``end``, as parse_sequence reads it

    def sequence(self, pos: int, end: int, trie: Optional[dict], found: list) -> int:
        """Walk a sequence's items, keeping values of its first item only; the position after it."""
        buf = self.buf
        first = True
        while pos < end:
            tag, length = _ITEM_HEAD.unpack_from(buf, pos)
            pos += 8
            if tag == _SEQUENCE_DELIMITER_LE:
                return pos
            if tag != _ITEM_TAG_LE:
                raise RawParseError(f"expected an item, found tag {_tag_name(tag)}")
            keep = trie if first else None
            first = False
            if length == UNDEFINED_LENGTH:
                pos = self.dataset(pos, end, keep, found)
            else:
                if pos + length > end:
                    raise RawParseError("item runs past the end of its sequence")
                if keep:
                    self.dataset(pos, pos + length, keep, found)
                pos += length
        return pos


def _aligned_item_values(buf: memoryview, implicit: bool, trie: dict, count: int) -> Optional[List[List[Optional[bytes]]]]:
    """:func:`item_values`' result, read from all items at once, when they are alike: of defined
    length, and made of the same elements (tags and VRs, one item in each sequence walked into)
    in the same order where the paths lead; None otherwise, and :class:`_Walker` reads them (and
    says what is wrong). Each element is read from every item by a few numpy operations: the
    4,926 per-frame items of the SR benchmark's SEG took the walker 0.032 s, this 0.01 s."""
    starts, ends = [], []
    pos, end = 0, len(buf)
    try:
        while pos < end:
            tag, length = _ITEM_HEAD.unpack_from(buf, pos)
            if tag == _SEQUENCE_DELIMITER_LE:
                break
            if tag != _ITEM_TAG_LE or length == UNDEFINED_LENGTH or pos + 8 + length > end:
                return None
            starts.append(pos + 8)
            pos += 8 + length
            ends.append(pos)
    except struct.error:
        return None
    if len(starts) < 2:
        return None  # nothing to gain
    data = np.frombuffer(buf, np.uint8)
    found: List[Optional[Tuple[np.ndarray, np.ndarray]]] = [None] * count  # each path's (starts, lengths)
    if not _aligned_dataset(data, implicit, np.array(starts, np.int64), np.array(ends, np.int64), trie, found):
        return None
    whole = bytes(buf)
    columns = [[whole[a:b] for a, b in zip(first.tolist(), (first + length).tolist())] if place else [None] * len(starts)
               for place in found for first, length in [place or (None, None)]]
    return [list(values) for values in zip(*columns)]


#: Offsets of an element header's 12 bytes (tag, VR, lengths), gathered from every item at once.
_HEAD_BYTES = np.arange(12)


def _aligned_dataset(data: np.ndarray, implicit: bool, pos: np.ndarray, end: np.ndarray, trie: dict,
                     found: list) -> bool:
    """:meth:`_Walker.dataset` of every item at once (item i from pos[i] to end[i]); False when the
    items differ or anything is not as :func:`_aligned_item_values` needs it."""
    while True:
        going = pos < end
        if not going.all():
            return not going.any()  # the items end together, or differ
        head = data[np.minimum(pos[:, np.newaxis] + _HEAD_BYTES, len(data) - 1)].astype(np.int64)
        words = head[:, 0::2] | head[:, 1::2] << 8  # group, element, VR or length, ...
        tags = words[:, 0] << 16 | words[:, 1]
        tag = int(tags[0])
        if (tags != tag).any() or tag in (ITEM_TAG, ITEM_DELIMITER, SEQUENCE_DELIMITER):
            return False
        if implicit:
            header, length = 8, words[:, 2] | words[:, 3] << 16
            is_sequence = _dictionary_is_sequence(tag)
        else:
            if (words[:, 2] != words[0, 2]).any():
                return False
            vr = bytes(head[0, 4:6].astype(np.uint8))
            header, length = (12, words[:, 4] | words[:, 5] << 16) if vr in LONG_VR_BYTES else (8, words[:, 3])
            is_sequence = vr == b"SQ"
        value = pos + header
        if (length == UNDEFINED_LENGTH).any() or (value + length > end).any():
            return False
        wanted = trie.get(tag)
        if is_sequence and type(wanted) is dict:
            # one item of defined length filling the sequence: its elements, walked alike
            item = data[np.minimum(value[:, np.newaxis] + _HEAD_BYTES[:8], len(data) - 1)].astype(np.int64)
            item_words = item[:, 0::2] | item[:, 1::2] << 8
            if (length < 8).any() or (item_words[:, 0] << 16 | item_words[:, 1] != ITEM_TAG).any() or \
                    (item_words[:, 2] | item_words[:, 3] << 16 != length - 8).any():
                return False
            if not _aligned_dataset(data, implicit, value + 8, value + length, wanted, found):
                return False
        elif type(wanted) is int:
            found[wanted] = None if is_sequence else (value, length)  # a sequence where a value was asked for: None
        pos = value + length


_SEQUENCE_TAGS: Dict[int, bool] = {}


def _dictionary_is_sequence(tag: int) -> bool:
    if tag not in _SEQUENCE_TAGS:
        try:
            _SEQUENCE_TAGS[tag] = dictionary_VR(tag) == "SQ"
        except KeyError:
            _SEQUENCE_TAGS[tag] = False
    return _SEQUENCE_TAGS[tag]


def first(items: List[RawItem], *path: int) -> Optional[bytes]:
    """The raw value at ``path`` (sequence tags, then the element tag) in the first item of each
    nested sequence, or None when absent."""
    node: Union[RawItem, bytes, List[RawItem], None] = items[0] if items else None
    for tag in path:
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, dict) or tag not in node:
            return None
        node = node[tag]
    if isinstance(node, list):
        return None
    return node


def ds_values(value: Optional[bytes]) -> Optional[List[float]]:
    """A DS (decimal string) value as floats."""
    if value is None:
        return None
    text = value.decode("ascii", "replace").strip(" \x00")
    try:
        return [float(v) for v in text.split("\\")] if text else None
    except ValueError:
        raise RawParseError(f"DS value {text[:40]!r} is not numbers") from None


def us_value(value: Optional[bytes]) -> Optional[int]:
    """The first value of a US element."""
    if value is not None and len(value) not in (0, 2):
        raise RawParseError(f"US value of {len(value)} bytes")
    return None if not value else struct.unpack_from("<H", value)[0]


def ui_value(value: Optional[bytes]) -> Optional[str]:
    """A UI value without its padding."""
    return None if value is None else value.decode("ascii", "replace").rstrip("\x00 ")


def is_value(value: Optional[bytes]) -> Optional[int]:
    """The first value of an IS (integer string) element."""
    if not value:
        return None
    text = value.decode("ascii", "replace").strip(" \x00").split("\\")[0]
    try:
        return int(text) if text else None
    except ValueError:
        raise RawParseError(f"IS value {text[:40]!r} is not an integer") from None


# --- plain values, encoded as pydicom encodes them -------------------------------------------------

#: write_string's VRs (and IS, whose text write_number_string pads the same way): the text is
#: padded before it is encoded (UI with NUL, the others with space).
_STRING_PADDING = {"AE": " ", "AS": " ", "CS": " ", "IS": " ", "UI": "\0"}
_TEXT_VRS_PLAIN = ("SH", "LO", "ST", "LT", "UT", "UC")
_NUMBER_FORMATS = {"US": "H", "UL": "I", "SS": "h", "SL": "i"}


def plain_element(tag: int, vr: str, value: Any) -> Optional[bytes]:
    """One element with a plain value (see :func:`encode_items`), None otherwise."""
    encoded = b"" if value in (None, "") else plain_value(value, vr)
    return None if encoded is None else element_header(tag, vr, len(encoded)) + encoded


def encode_items(items: Sequence[Dataset]) -> Optional[bytes]:
    """The value of a sequence of ``items`` in explicit VR little endian, byte for byte what
    pydicom writes (defined lengths, elements in tag order), for items made only of plain values:
    ASCII strings and texts, US/UL/SS/SL numbers and nested sequences of such items. None for
    anything else (the caller lets pydicom write it): other VRs, non-ASCII text, an item with its
    own character set or of undefined length. Tests: test_seg_labelmap_fast.py, test_raw_encode_element.py."""
    parts = []
    for dataset in items:
        body = _encode_plain_dataset(dataset)
        if body is None:
            return None
        parts.append(item(body))
    return b"".join(parts)


def _encode_plain_dataset(ds: Dataset) -> Optional[bytes]:
    """The elements of one item (see :func:`encode_items`), None when one is not plain."""
    if "SpecificCharacterSet" in ds or ds.is_undefined_length_sequence_item:
        return None
    parts = []
    for element in ds:  # tag order, as pydicom writes
        tag, vr = int(element.tag), element.VR
        if tag & 0xFFFF == 0 and tag >> 16 > 6:  # group lengths: pydicom leaves them out
            continue
        value = b"" if element.is_empty else plain_value(element.value, vr)
        if value is None:
            return None
        parts.append(element_header(tag, vr, len(value)) + value)
    return b"".join(parts)


def plain_value(value: Any, vr: str) -> Optional[bytes]:
    """A value as pydicom's write_string / write_text / write_numbers / write_sequence encode it
    (ASCII only), None for one they would encode otherwise."""
    multi = isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
    if vr == "SQ":
        return encode_items(value)
    if vr in _STRING_PADDING or vr in _TEXT_VRS_PLAIN:
        values = list(value) if multi else [value]
        if not all(isinstance(v, str) and v.isascii() for v in values):
            return None
        text = "\\".join(values)
        return (text + (_STRING_PADDING.get(vr, " ") if len(text) % 2 else "")).encode("ascii")
    if vr in _NUMBER_FORMATS:
        values = list(value) if multi else [value]
        if not all(type(v) is int for v in values):
            return None
        return struct.pack(f"<{len(values)}{_NUMBER_FORMATS[vr]}", *values)
    return None
