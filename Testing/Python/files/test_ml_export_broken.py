"""export-ml on damaged inputs: one clear error naming the file, never a bare exception."""
from __future__ import annotations

import pydicom
import pytest
from pydicom.dataelem import DataElement

from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.errors import InputError


@pytest.fixture(scope="module")
def seg_file(sample_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("ml-broken") / "seg.dcm"
    api.export_seg(sample_case.series_dir, sample_case.segmentation_path, out)
    return out


@pytest.mark.parametrize("keyword", ["ReferencedSeriesSequence", "SegmentSequence",
                                     "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"])
def test_a_sequence_turned_into_text_is_named(seg_file, tmp_path, keyword):
    """The long fuzz run's crash: a corrupted VR made a SEG's sequence text; export-ml then
    iterated over its characters (AttributeError in core.headers.header_value)."""
    ds = pydicom.dcmread(seg_file)
    tag = pydicom.datadict.tag_for_keyword(keyword)
    ds[tag] = DataElement(tag, "LO", "abc")
    broken = tmp_path / "in" / "broken.dcm"
    broken.parent.mkdir()
    ds.save_as(broken, enforce_file_format=True)
    with pytest.raises(InputError, match=r"broken\.dcm") as caught:
        api.export_ml(broken.parent, tmp_path / "ml")
    assert keyword in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(InputError, match=rf"broken\.dcm: {keyword}.* is encoded as LO"):
        api.import_seg(broken)
    assert not (tmp_path / "ml").exists()


def test_a_cut_nested_sequence_is_named(tmp_path):
    """The long fuzz run (seed 777013): highdicom's SR cut at byte 3260 reads, but a nested
    sequence in it does not parse (pydicom's OSError "No tag to read") when export-ml checks it."""
    from conftest import interop

    data = interop("highdicom", "sr_document_with_multiple_groups.dcm").read_bytes()
    cut = tmp_path / "in" / "cut.dcm"
    cut.parent.mkdir()
    cut.write_bytes(data[:3260])
    with pytest.raises(InputError, match=r"cut\.dcm.*cannot be decoded \(OSError: No tag to read") as caught:
        api.export_ml(cut.parent, tmp_path / "ml")
    assert "\n" not in str(caught.value)


def test_a_modality_pydicom_cannot_decode_is_named(seg_file, tmp_path):
    """The long fuzz run (seed 8088): an unknown VR in Modality was a bare NotImplementedError
    while export-ml sorted its inputs."""
    data = seg_file.read_bytes()
    at = data.index(b"\x08\x00\x60\x00CS")  # (0008,0060) Modality, explicit VR little endian
    broken = tmp_path / "in" / "broken.dcm"
    broken.parent.mkdir()
    broken.write_bytes(data[:at + 4] + b"ZZ" + data[at + 6:])
    with pytest.raises(InputError, match=r"broken\.dcm Modality cannot be decoded \(NotImplementedError"):
        api.export_ml(broken.parent, tmp_path / "ml")


@pytest.mark.parametrize("series_given", [False, True])
def test_rows_pydicom_cannot_decode_is_named(seg_file, sample_case, tmp_path, series_given):
    """The long fuzz run of 2026-12-05 (seed 12021, case 85761): an unknown VR in a SEG's Rows was a
    bare NotImplementedError while export-ml looked for the series the SEG lies on."""
    data = seg_file.read_bytes()
    at = data.index(b"\x28\x00\x10\x00US")  # (0028,0010) Rows, explicit VR little endian
    broken = tmp_path / "in" / "broken.dcm"
    broken.parent.mkdir()
    broken.write_bytes(data[:at + 4] + b"QQ" + data[at + 6:])
    inputs = [broken, sample_case.series_dir] if series_given else [broken]
    with pytest.raises(InputError, match=r"broken\.dcm.*Rows cannot be decoded \(NotImplementedError"):
        api.export_ml(inputs, tmp_path / "ml")


def test_a_seg_instance_uid_pydicom_cannot_decode_is_named(seg_file, sample_case, tmp_path):
    """Fuzz run K (seed 61206, case 4177): an unknown VR in the SEG's SOP Instance UID reached
    export-ml's case list undecoded (the SEG reader no longer reads it) and raised pydicom's
    NotImplementedError. The SEG is now passed over naming the file and the element."""
    data = seg_file.read_bytes()
    at = data.index(b"\x08\x00\x18\x00UI")  # (0008,0018) SOP Instance UID, explicit VR little endian
    broken = tmp_path / "in" / "broken.dcm"
    broken.parent.mkdir()
    broken.write_bytes(data[:at + 4] + b"QQ" + data[at + 6:])
    with pytest.raises(InputError, match=r"broken\.dcm.*SOPInstanceUID|broken\.dcm.*SOP Instance UID") as caught:
        api.export_ml(broken.parent, tmp_path / "ml")
    assert "\n" not in str(caught.value)
