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


def test_gsps_whose_window_is_not_numbers(sample_case, tmp_path, caplog):
    """The long fuzz run (seed 8088): a Window Center of '1510.0(\\x00U...' (bytes shifted into
    it) was a bare ValueError from float(); the window is only shown, so it is left out with a
    warning and the markups are read."""
    pr = tmp_path / "pr.dcm"
    api.export_gsps(sample_case.series_dir, [sample_case.markups_path], pr)
    ds = pydicom.dcmread(pr)
    voi = pydicom.Dataset()
    voi.WindowCenter, voi.WindowWidth = "40", "400"
    ds.SoftcopyVOILUTSequence = [voi]
    ds.save_as(tmp_path / "good.dcm")
    assert api.import_gsps(tmp_path / "good.dcm", sample_case.series_dir).window == (40.0, 400.0)
    data = (tmp_path / "good.dcm").read_bytes()
    at = data.index(b"\x28\x00\x50\x10DS\x02\x0040")  # (0028,1050) Window Center "40", explicit VR LE
    (tmp_path / "broken.dcm").write_bytes(data[:at + 8] + b"4(" + data[at + 10:])  # the same length
    imported = api.import_gsps(tmp_path / "broken.dcm", sample_case.series_dir)
    assert imported.window is None and imported.markups
    assert "broken.dcm: the window is not read" in caplog.text


def test_gsps_graphic_data_turned_into_bytes(sample_case, tmp_path):
    """The long fuzz run (seed 8088): a Graphic Data whose VR became OB was a bare ValueError from
    numpy; the graphic is reported and the others are read."""
    from pydicom.dataelem import DataElement

    pr = tmp_path / "pr.dcm"
    api.export_gsps(sample_case.series_dir, [sample_case.markups_path], pr)
    ds = pydicom.dcmread(pr)
    graphics = [g for item in ds.GraphicAnnotationSequence for g in item.get("GraphicObjectSequence", [])]
    assert len(graphics) > 1
    graphics[0][0x00700022] = DataElement(0x00700022, "OB", b"\x00\x00\x1aB\x00\x00\xafB")
    ds.save_as(tmp_path / "broken.dcm")
    imported = api.import_gsps(tmp_path / "broken.dcm", sample_case.series_dir)
    assert any("GraphicData must be finite numbers" in line for line in imported.report), imported.report
    assert imported.markups


def test_gsps_referenced_frame_number_turned_into_text(sample_case, tmp_path):
    from pydicom.dataelem import DataElement

    pr = tmp_path / "pr.dcm"
    api.export_gsps(sample_case.series_dir, [sample_case.markups_path], pr)
    ds = pydicom.dcmread(pr)
    ref = ds.GraphicAnnotationSequence[0].ReferencedImageSequence[0]
    ref[0x00081160] = DataElement(0x00081160, "LO", "x")  # Referenced Frame Number
    ds.save_as(tmp_path / "broken.dcm")
    imported = api.import_gsps(tmp_path / "broken.dcm", sample_case.series_dir)
    assert any("Referenced Frame Number 'x' is not frame numbers" in line for line in imported.report), imported.report
