"""Safe accessors for DICOM header values: one place where a value of the wrong type, count or
encoding becomes a SeriesError (an InputError) naming the file, for every reader.

pydicom converts values lazily, when they are first used: an unknown VR, a cut sequence or a
non-numeric IS/DS surfaces at the access, far from dcmread. These accessors convert at the access.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from .errors import SeriesError
from .inputs import is_decoding_error

#: VRs whose values header_value() reads from the raw bytes itself.
_RAW_TEXT_VRS = ("IS", "DS", "CS", "UI")


def header_value(ds: Dataset, keyword: str, default=None, path=None):
    """``getattr(ds, keyword, default)``, also ``default`` for an empty value, for the simple
    values read from every header (US; IS, DS, CS and UI text): parsed from the element's raw
    bytes while pydicom has not converted it. pydicom's conversion (value objects, validation)
    of the dozen values the geometry needs cost about half as much as reading the headers
    (benchmark notes). IS is an int, DS a float or a list of floats for several values; other
    elements and values (several CS or UI values, non-ASCII) go through pydicom."""
    tag = tag_for_keyword(keyword)
    element = ds.get_item(tag, keep_deferred=True) if tag is not None else None
    if element is None:
        return default
    if element.is_raw and element.value is not None and not keyword.endswith("Sequence"):
        raw, vr = element.value, element.VR or dictionary_VR(tag)
        if vr == "US" and len(raw) == 2:
            return int.from_bytes(raw, "little" if element.is_little_endian else "big")
        if vr in _RAW_TEXT_VRS and raw.isascii():
            text = raw.decode("ascii").strip(" \0")
            try:
                if not text:
                    return default
                if vr == "DS":
                    values = [float(v) for v in text.split("\\")]
                    return values[0] if len(values) == 1 else values
                if "\\" not in text:
                    return int(text) if vr == "IS" else text
            except ValueError:
                pass  # pydicom decides (and warns or raises)
    try:
        value = ds[tag].value
    except Exception as exc:
        if not is_decoding_error(exc) and not isinstance(exc, (ValueError, TypeError)):
            raise
        raise SeriesError(f"{keyword} cannot be decoded ({exc.__class__.__name__}: {exc})",
                          _path(ds, path)) from None
    if value is None or value == "":
        return default
    if keyword.endswith("Sequence") and not isinstance(value, Sequence) and dictionary_VR(tag) == "SQ":
        # A corrupted VR turns a sequence into text (or bytes): its "items" would be characters.
        raise SeriesError(f"{keyword} is encoded as {ds[tag].VR}, not as a sequence", _path(ds, path))
    return value


def _path(ds: Dataset, path):
    return path if path is not None else getattr(ds, "filename", None)


def header_int(ds: Dataset, keyword: str, default=None, path=None) -> int:
    """An integer header value; a SeriesError naming the file (``path``, else the dataset's
    filename) when it is missing (and no default) or not one whole number."""
    value = header_value(ds, keyword, default, path)
    if value is None:
        raise SeriesError(f"{keyword} is missing", _path(ds, path))
    try:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise SeriesError(f"{keyword} is not one whole number ({str(value)[:80]})", _path(ds, path)) from None


def header_float(ds: Dataset, keyword: str, default: Optional[float] = None, path=None) -> float:
    """One finite number; a SeriesError naming the file when missing (no default) or not one."""
    value = header_value(ds, keyword, default, path)
    if value is None:
        raise SeriesError(f"{keyword} is missing", _path(ds, path))
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number):
        raise SeriesError(f"{keyword} is not one finite number ({str(value)[:80]})", _path(ds, path))
    return number


def header_floats(ds: Dataset, keyword: str, count: Optional[int] = None, path=None) -> Optional[List[float]]:
    """Finite numbers (``count`` of them when given), or None when absent; a SeriesError naming
    the file for a wrong count or a value that is not a number."""
    value = header_value(ds, keyword, None, path)
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and
                                                                 not isinstance(value, (str, bytes))) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if not numbers or (count is not None and len(numbers) != count) or not np.all(np.isfinite(numbers)):
        expected = f"{count} " if count is not None else ""
        raise SeriesError(f"{keyword} must be {expected}finite numbers, got {str(value)[:80]}", _path(ds, path))
    return numbers


def first_item(ds: Dataset, keyword: str, path=None) -> Optional[Dataset]:
    """The first item of a sequence, or None when the sequence is absent or empty; a SeriesError
    naming the file (``path``, else the dataset's filename) when it is not a sequence."""
    sequence = header_value(ds, keyword, path=path)
    if sequence is None:
        return None
    item = sequence[0] if len(sequence) else None
    if item is not None and not isinstance(item, Dataset):
        raise SeriesError(f"{keyword} is not a sequence", _path(ds, path))
    return item
