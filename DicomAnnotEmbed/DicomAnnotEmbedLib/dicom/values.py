"""Small DICOM value conversions shared by the SEG and SR encoders and decoders."""
from __future__ import annotations

from typing import Optional

from pydicom.dataset import Dataset

from ..core.model import Code

LONG_STRING_MAX = 64


def long_string(text) -> str:
    """A Long String (LO) value: at most 64 characters, no backslash (it separates values)."""
    return str(text).replace("\\", "/")[:LONG_STRING_MAX]


#: Type 2 patient and study attributes (present, empty when unknown) that highdicom's SEG, SR and
#: GSPS constructors read from the source image unconditionally.
SOURCE_TYPE2_KEYWORDS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                         "StudyDate", "StudyTime", "ReferringPhysicianName")


def with_type2_attributes(ds: Dataset) -> Dataset:
    """``ds``, or a shallow copy of it holding the type 2 patient and study attributes it lacks,
    empty (a source image that leaves them out altogether made the constructors fail with an
    AttributeError). The source itself is never changed."""
    missing = [keyword for keyword in SOURCE_TYPE2_KEYWORDS if keyword not in ds]
    if not missing:
        return ds
    copy = Dataset()
    copy.update(ds)
    if hasattr(ds, "file_meta"):
        copy.file_meta = ds.file_meta
    for keyword in missing:
        setattr(copy, keyword, None)
    return copy


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
