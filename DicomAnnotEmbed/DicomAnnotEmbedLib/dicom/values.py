"""Small DICOM value conversions shared by the SEG and SR encoders and decoders."""
from __future__ import annotations

from typing import Optional

from ..core.model import Code

LONG_STRING_MAX = 64


def long_string(text) -> str:
    """A Long String (LO) value: at most 64 characters, no backslash (it separates values)."""
    return str(text).replace("\\", "/")[:LONG_STRING_MAX]


def coded_concept(code: Code):
    """highdicom's CodedConcept for a model Code (the meaning defaults to the value)."""
    from highdicom.sr import CodedConcept

    return CodedConcept(code.value, code.scheme, code.meaning or code.value)


def code_of(item) -> Optional[Code]:
    """The Code of a code sequence item (short, long or URN code value), or None when the item is
    absent or lacks a value or a coding scheme."""
    if item is None or not hasattr(item, "get"):  # absent, or a value of another VR (a broken file)
        return None
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue")
    scheme = item.get("CodingSchemeDesignator")
    if not value or not scheme:
        return None
    return Code(str(value), str(scheme), str(item.get("CodeMeaning", "")))
