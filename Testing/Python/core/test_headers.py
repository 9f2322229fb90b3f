"""core.headers and core.inputs on damaged headers: a sequence whose VR was corrupted into text
(found by the long fuzz run through export-ml on a SEG: an AttributeError in header_value)."""
from __future__ import annotations

import shutil

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from DicomAnnotEmbedLib.core.errors import InputError, SeriesError
from DicomAnnotEmbedLib.core.headers import first_item, header_value
from DicomAnnotEmbedLib.core.inputs import check_sequences, read_dicom_file


def _with_text_sequence(tmp_path, keyword="SharedFunctionalGroupsSequence"):
    """A file whose ``keyword`` sequence is written as LO text, as a flipped VR byte leaves it."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.SOPInstanceUID = "1.2.3.4"
    item = Dataset()
    item.PixelMeasuresSequence = Sequence([Dataset()])
    ds.PerFrameFunctionalGroupsSequence = Sequence([item])
    tag = pydicom.datadict.tag_for_keyword(keyword)
    ds[tag] = DataElement(tag, "LO", "abc")
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    path = tmp_path / "broken.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_header_value_refuses_a_sequence_turned_into_text(tmp_path):
    path = _with_text_sequence(tmp_path)
    ds = pydicom.dcmread(path)
    with pytest.raises(SeriesError, match=r"broken\.dcm: SharedFunctionalGroupsSequence is encoded as LO, not as a "
                                          r"sequence"):
        header_value(ds, "SharedFunctionalGroupsSequence")
    with pytest.raises(SeriesError, match="broken.dcm"):
        first_item(ds, "SharedFunctionalGroupsSequence")  # was 'a' as the item, then an AttributeError
    # Real sequences and plain values are unchanged.
    assert isinstance(first_item(ds, "PerFrameFunctionalGroupsSequence"), Dataset)
    assert header_value(ds, "SOPInstanceUID") == "1.2.3.4"
    assert first_item(ds, "ReferencedSeriesSequence") is None


def test_first_item_refuses_items_that_are_not_datasets():
    ds = Dataset()
    ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
    assert isinstance(first_item(ds, "SharedFunctionalGroupsSequence"), Dataset)


def test_read_dicom_file_refuses_a_sequence_turned_into_text(tmp_path):
    path = _with_text_sequence(tmp_path, "ReferencedSeriesSequence")
    with pytest.raises(InputError, match=r"broken\.dcm: ReferencedSeriesSequence \(0008,1115\) is encoded as LO"):
        read_dicom_file(path, "SEG")
    # Nested sequences are checked too, without opening the per-frame groups.
    ds = Dataset()
    inner = Dataset()
    inner[0x00081115] = DataElement(0x00081115, "LO", "x")
    ds.SourceImageSequence = Sequence([inner])
    with pytest.raises(InputError, match=r"f\.dcm: ReferencedSeriesSequence"):
        check_sequences(ds, "f.dcm")
    good = pydicom.dcmread(_with_text_sequence(tmp_path, "SOPInstanceUID"))
    check_sequences(good, "ok.dcm")
    assert good.get_item(0x52009230, keep_deferred=True).is_raw  # the per-frame groups stay unparsed


def test_series_with_a_functional_group_sequence_turned_into_a_number(sample_case, tmp_path):
    """The long fuzz run (seed 20261313): a VR flipped to OF in an enhanced image's functional
    groups; loading the series was an AttributeError in header_value ('int' has no get_item)."""
    from DicomAnnotEmbedLib.core.series import load_series

    source = sorted(sample_case.series_dir.iterdir())[0]
    ds = pydicom.dcmread(source)
    item = Dataset()
    item[0x00289110] = DataElement(0x00289110, "OF", b"\0\0\0\0")  # Pixel Measures Sequence
    ds.SharedFunctionalGroupsSequence = Sequence([item])
    folder = tmp_path / "series"
    folder.mkdir()
    ds.save_as(folder / "broken.dcm")
    with pytest.raises(SeriesError, match=r"broken\.dcm: PixelMeasuresSequence is encoded as OF, not as a sequence"):
        load_series(folder).read_volume()


def test_series_whose_description_pydicom_cannot_decode(sample_case, tmp_path):
    """The long fuzz run (seed 4131): an unknown VR (ZZ) in Series Description was a bare
    NotImplementedError from pydicom when the series was built; the description is only shown,
    so the series loads without it."""
    from DicomAnnotEmbedLib.core.series import load_series

    folder = tmp_path / "series"
    folder.mkdir()
    for source in sorted(sample_case.series_dir.iterdir()):
        ds = pydicom.dcmread(source)
        ds.SeriesDescription = "CT"
        ds.save_as(folder / source.name)
        data = (folder / source.name).read_bytes()
        at = data.index(b"\x08\x00\x3e\x10LO")  # (0008,103E) LO, explicit VR little endian
        (folder / source.name).write_bytes(data[:at + 4] + b"ZZ" + data[at + 6:])
    series = load_series(folder)
    assert series.description == "" and series.modality == "CT"
    assert series.read_volume().shape == series.geometry.shape


def test_series_with_a_header_value_pydicom_cannot_decode_is_named(sample_case, tmp_path):
    """A header value pydicom cannot decode while the series is built is an error naming the file
    or the folder (here an unknown VR in Modality), never a bare NotImplementedError."""
    from DicomAnnotEmbedLib.core.errors import InputError
    from DicomAnnotEmbedLib.core.series import load_series

    folder = tmp_path / "series"
    folder.mkdir()
    for source in sorted(sample_case.series_dir.iterdir()):
        data = source.read_bytes()
        at = data.index(b"\x08\x00\x60\x00CS")  # (0008,0060) Modality CS
        (folder / source.name).write_bytes(data[:at + 4] + b"ZZ" + data[at + 6:])
    with pytest.raises(InputError, match=rf"^{folder}(/IMG\d+\.dcm)?: .*Unknown Value Representation 'ZZ'"):
        load_series(folder)


def test_pixel_data_pydicom_fails_on_below_its_own_code_is_named(sample_case, tmp_path):
    """The long fuzz run (seed 8088): a multi-valued Photometric Interpretation made pydicom's
    pixel decoding raise TypeError from the enum module it calls, which was not taken for a
    decoding error (only the innermost frame was looked at): a bare TypeError."""
    from DicomAnnotEmbedLib.core.errors import InputError
    from DicomAnnotEmbedLib.core.series import load_series

    folder = tmp_path / "series"
    shutil.copytree(sample_case.series_dir, folder)
    first = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(first)
    ds.PhotometricInterpretation = ["MONOCHROME2", "MONOCHROME2"]
    ds.BitsStored = 12  # not the fast path of whole words: pydicom decodes
    ds.save_as(first)
    with pytest.raises(InputError, match=rf"{first.name}: cannot decode the pixel data: TypeError"):
        load_series(folder).read_volume()
