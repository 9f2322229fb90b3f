"""GSPS import on damaged files: one InputError naming the file."""
from __future__ import annotations

import pydicom
import pytest

from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.errors import InputError


def test_gsps_with_a_sequence_turned_into_text(sample_case, tmp_path):
    from pydicom.dataelem import DataElement

    pr = tmp_path / "pr.dcm"
    api.export_gsps(sample_case.series_dir, [sample_case.markups_path], pr)
    ds = pydicom.dcmread(pr)
    ds[0x00700001] = DataElement(0x00700001, "LO", "abc")  # Graphic Annotation Sequence
    ds.save_as(tmp_path / "broken.dcm")
    with pytest.raises(InputError, match=r"broken\.dcm: GraphicAnnotationSequence \(0070,0001\) is encoded as LO"):
        api.import_gsps(tmp_path / "broken.dcm", sample_case.series_dir)
