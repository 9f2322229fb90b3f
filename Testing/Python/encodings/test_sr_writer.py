"""encodings.sr.writer encodes a Content Sequence as pydicom's writer does, byte for byte: on
the elements an SR's content holds and on those it hands to pydicom (person names, several
values, non-ASCII text, raw elements read from a file, ambiguous VRs, undefined lengths, an
item with its own character set, a value too long for a 16-bit length, items that several
sequences share)."""
from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DS

from DicomAnnotEmbedLib.encodings.sr.document import mark_explicit
from DicomAnnotEmbedLib.encodings.sr.writer import encode_sequence_value, write_document


def pydicom_value(items, encodings="iso8859") -> bytes:
    """The value bytes of a Content Sequence of ``items`` as pydicom writes it (its 12-byte header cut)."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    holder = Dataset()
    holder.ContentSequence = items
    write_data_element(buffer, holder["ContentSequence"], encodings)
    return buffer.getvalue()[12:]


def code(value, scheme, meaning):
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def content_items():
    """Items of the kinds an SR holds, and the odd ones."""
    num = Dataset()
    num.RelationshipType, num.ValueType = "CONTAINS", "NUM"
    num.ConceptNameCodeSequence = [code("118565006", "SCT", "Volume")]
    measured = Dataset()
    measured.MeasurementUnitsCodeSequence = [code("mm3", "UCUM", "cubic millimeter")]
    measured.NumericValue = DS(1234.5678901234567, auto_format=True)
    measured.FloatingPointValue = 1234.5678901234567
    num.MeasuredValueSequence = [measured]
    image = Dataset()
    image.RelationshipType, image.ValueType = "CONTAINS", "IMAGE"
    reference = Dataset()
    reference.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    reference.ReferencedSOPInstanceUID = generate_uid()  # odd or even length: \0 padding
    reference.ReferencedSegmentNumber = 3
    image.ReferencedSOPSequence = [reference]
    text = Dataset()
    text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
    text.TextValue = "Tumör, 肿瘤"  # not ASCII: pydicom encodes it in the document's character set
    text.ConceptNameCodeSequence = [code("121071", "DCM", "Finding")]
    odd = Dataset()
    odd.ValueType = "CODE"
    odd.PersonName = "Doe^Jane"
    odd.ImageType = ["DERIVED", "PRIMARY"]  # several values
    odd.PixelSpacing = [DS("0.70"), DS("0.8")]
    odd.ImagePositionPatient = [1.0, 2.5, -3.25]
    odd.add_new(0x00720034, "FD", [0.5, 1.5])
    odd.StudyDate, odd.StudyTime, odd.AcquisitionDateTime = "20261205", "013000.123", "20261205013000"
    odd.SliceThickness = DS("1.250")  # its original string is kept
    odd.Rows, odd.ReferencedFrameNumber = 512, 7
    odd.LongCodeValue = ""
    odd.ContentSequence = []
    odd.add_new(0x00280106, "US or SS", 0)  # ambiguous: pydicom's pass resolves it
    odd.add_new(0x00280107, "US or SS", 5)
    odd.PixelRepresentation = 0
    own_charset = Dataset()
    own_charset.SpecificCharacterSet = "ISO_IR 100"
    own_charset.TextValue = "Müller"
    undefined = Dataset()
    undefined.TextValue = "in an item of undefined length"
    undefined.is_undefined_length_sequence_item = True
    long_text = Dataset()
    long_text.CodeMeaning = "x" * 70000  # LO over 64 KB: pydicom writes it as UN
    long_text.TextValue = "y" * 70001
    return [num, image, text, odd, own_charset, undefined, long_text]


def from_file_items(tmp_path, implicit: bool):
    """Items read back from a file: raw elements, implicit or explicit VR."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.34", generate_uid()
    ds.ContentSequence = content_items()[:3]
    ds.ContentSequence[2].TextValue = "ASCII text"
    path = tmp_path / "items.dcm"
    ds.save_as(path, enforce_file_format=True)
    return list(pydicom.dcmread(path).ContentSequence)


@pytest.mark.parametrize("encodings", ["iso8859", "ISO_IR 192", ["ISO_IR 100"]])
def test_content_items_are_encoded_as_pydicom_does(encodings):
    if encodings == "iso8859":
        items = [item for item in content_items() if "TextValue" not in item or item.TextValue.isascii()]
    else:
        items = content_items()
    if encodings == ["ISO_IR 100"]:
        items[2].TextValue = "Tumör"
    with pytest.warns(UserWarning):  # pydicom's own warning for the value over 64 KB, both times
        expected = pydicom_value(items, encodings)
        assert encode_sequence_value(items, encodings) == expected


@pytest.mark.parametrize("implicit", [True, False])
def test_items_read_from_a_file_are_encoded_as_pydicom_does(tmp_path, implicit):
    items = from_file_items(tmp_path, implicit)
    assert encode_sequence_value(items) == pydicom_value(items)


def test_items_shared_by_several_sequences_are_encoded_as_pydicom_does():
    """The fast SR engine shares one code item per code and one algorithm item per group: the
    writer encodes a shared item once and repeats its bytes (also one that pydicom writes whole)."""
    items = content_items()[:4]
    unit, odd = items[0].MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0], items[3]
    items[2].TextValue = "ASCII"
    items[1].ConceptNameCodeSequence = [unit]
    items[2].ContentSequence = [items[0], odd]
    items.extend([items[0], odd, items[2]])
    assert encode_sequence_value(items) == pydicom_value(items)


def test_numbers_of_float_subclasses_are_encoded_as_pydicom_does(monkeypatch):
    """The image library's positions are DS values (DSfloat, a float subclass) put in FD elements
    as they are (document._image_library): the writer packs them itself, and numpy's float64, as
    pydicom's write_numbers does."""
    import numpy as np
    from pydicom.valuerep import DSfloat

    from DicomAnnotEmbedLib.dicom.header_items import put_element
    from DicomAnnotEmbedLib.encodings.sr import writer

    monkeypatch.setattr(writer, "_pydicom_element", lambda *args: pytest.fail("handed to pydicom"))

    items = []
    for value in (DSfloat("-123.456789012345"), DS(0.1 + 0.2, auto_format=True), np.float64(-1e-300), DSfloat("7")):
        measured = Dataset()
        put_element(measured, 0x0040A161, "FD", value)  # Floating Point Value
        put_element(measured, 0x00720076, "FL", value)  # Selector FL Value
        items.append(measured)
    assert encode_sequence_value(items) == pydicom_value(items)


def test_marked_items_are_encoded_as_pydicom_does():
    items = [item for item in content_items()[:4]]
    del items[3][0x00280106], items[3][0x00280107]
    items[2].TextValue = "ASCII"
    document = Dataset()
    document.file_meta = FileMetaDataset()
    document.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    document.ContentSequence = items
    mark_explicit(document)
    assert items[0].original_encoding == (False, True)
    assert encode_sequence_value(items) == pydicom_value(items)


def sr_document() -> Dataset:
    """An empty Comprehensive 3D SR with its file meta information."""
    document = Dataset()
    document.file_meta = FileMetaDataset()
    document.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    document.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.34"
    document.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    document.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.34"
    document.SOPInstanceUID = document.file_meta.MediaStorageSOPInstanceUID
    return document


def test_write_document_writes_pydicoms_file():
    """A whole document: the same file as pydicom.dcmwrite, and the document is left as it was."""
    document = sr_document()
    document.SpecificCharacterSet = "ISO_IR 192"
    document.PatientName = "Müller^Jörg"
    items = content_items()[:5]
    del items[3][0x00280106], items[3][0x00280107]
    document.ContentSequence = items
    mark_explicit(document, content=False)
    assert document.original_encoding == (False, True)
    expected, actual = io.BytesIO(), io.BytesIO()
    pydicom.dcmwrite(expected, document, enforce_file_format=True)
    element = document["ContentSequence"]
    write_document(actual, document)
    assert actual.getvalue() == expected.getvalue()
    assert document["ContentSequence"] is element


def test_write_document_with_an_ambiguous_vr_in_its_header_is_pydicoms_file():
    """A header element of ambiguous VR: the document cannot be marked, pydicom writes all of it."""
    document = sr_document()
    document.PixelRepresentation = 1
    document.add_new(0x00280106, "US or SS", -5)
    document.ContentSequence = content_items()[:2]
    expected, actual = io.BytesIO(), io.BytesIO()
    pydicom.dcmwrite(expected, copy_of(document), enforce_file_format=True)
    write_document(actual, document)
    assert actual.getvalue() == expected.getvalue()


def copy_of(ds: Dataset) -> Dataset:
    import copy

    return copy.deepcopy(ds)
