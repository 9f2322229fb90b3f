"""dicom.raw.encode_element packs UI and IS elements itself (the varying parts of a SEG's per-frame
items): the same bytes as pydicom's writer, which it uses for everything else."""
from __future__ import annotations

import pytest
from pydicom.dataelem import DataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import generate_uid

from DicomAnnotEmbedLib.dicom.raw import encode_element


def pydicom_bytes(element: DataElement) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_data_element(buffer, element)
    return buffer.getvalue()


UIDS = [generate_uid(), "1.2.3", "1.2.34", "", "1.2.840.10008.5.1.4.1.1.2"] + [generate_uid()[:n] for n in range(1, 40, 3)]


@pytest.mark.parametrize("element", [DataElement(0x00081155, "UI", uid) for uid in UIDS]
                         + [DataElement(0x00081150, "UI", uid) for uid in UIDS[:3]]
                         + [DataElement(0x00081160, "IS", value) for value in (1, 12, 123, 200, 4926, "7", " 8 ", "-3", "")]
                         + [DataElement(0x00200032, "DS", ["1.5", "-2", "3.25"]), DataElement(0x00100010, "PN", "Doe^J")])
def test_encode_element_equals_pydicoms_writer(element):
    assert encode_element(element) == pydicom_bytes(element)
