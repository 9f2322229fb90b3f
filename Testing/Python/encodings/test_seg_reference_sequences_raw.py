"""The SEG's references to its source images (Referenced Series > Referenced Instance Sequence,
Source Image Sequence) are read for their SOP Class UIDs from the raw bytes, not opened by
read_seg_file's check_sequences (read_pixels.REFERENCE_SEQUENCES; bench_startup.py notes,
2026-12-05): the same UIDs as pydicom's parse, the same refusals of a sequence encoded as
another VR, and pydicom's reading where the bytes do not parse."""
import glob
import re
import subprocess
import sys

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from conftest import SHARED_INTEROP
from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.dicom import raw
from DicomAnnotEmbedLib.encodings.seg import decode, import_seg
from DicomAnnotEmbedLib.encodings.seg.read_pixels import REFERENCE_SEQUENCES, read_seg_file

SOURCE_IMAGES, REFERENCED_SERIES, REFERENCED_INSTANCES = 0x00082112, 0x00081115, 0x0008114A
CT, SLIDE = "1.2.840.10008.5.1.4.1.1.2", decode.VL_WHOLE_SLIDE_MICROSCOPY_IMAGE_STORAGE


def _parsed_sop_classes(path) -> set:
    """What the import took before: every item parsed by pydicom."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    items = [item for series in ds.get("ReferencedSeriesSequence", []) or []
             for item in series.get("ReferencedInstanceSequence", []) or []]
    items += list(ds.get("SourceImageSequence", []) or [])
    return {decode._uid_of(item, 0x00081150) for item in items}


@pytest.fixture(scope="module")
def labelmap_seg(tmp_path_factory, sample_case):
    """A LABELMAP SEG of the sample's first layer, written by our writer (sequences of defined
    length: pydicom leaves them raw)."""
    from DicomAnnotEmbedLib.core.model import Segmentation
    from DicomAnnotEmbedLib.files.segio import load_segmentation, write_seg_nrrd

    folder = tmp_path_factory.mktemp("refs")
    whole = load_segmentation(sample_case.segmentation_path)
    write_seg_nrrd(folder / "layer0.seg.nrrd", Segmentation(whole.geometry, whole.layers[:1],
                                                            [s for s in whole.segments if s.layer == 0]))
    subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "-q", "seg", "export", "--series",
                    str(sample_case.series_dir), "--segmentation", str(folder / "layer0.seg.nrrd"),
                    "--type", "labelmap", "--out", str(folder / "seg.dcm")], check=True)
    return folder / "seg.dcm"


def _segs(labelmap_seg):
    return [labelmap_seg] + sorted(glob.glob(str(SHARED_INTEROP / "**" / "*.dcm"), recursive=True))


def test_same_sop_classes_as_pydicom_parses(labelmap_seg):
    ds, _ = read_seg_file(labelmap_seg)
    for tag in REFERENCE_SEQUENCES:  # left raw: the raw path is what is compared here
        assert isinstance(ds.get_item(tag), RawDataElement), hex(tag)
    assert decode._referenced_sop_classes(ds, str(labelmap_seg)) == _parsed_sop_classes(labelmap_seg) == {CT}
    for path in _segs(labelmap_seg)[1:]:
        try:
            ds, _ = read_seg_file(path)
        except InputError:
            continue  # not a SEG
        assert decode._referenced_sop_classes(ds, path) == _parsed_sop_classes(path), path


def _raw_holder(value: bytes) -> Dataset:
    return Dataset({Tag(SOURCE_IMAGES): RawDataElement(Tag(SOURCE_IMAGES), "SQ", len(value), value, 0, False, True)})


def _item(uid: str) -> bytes:
    value = uid.encode("ascii") + (b"\0" if len(uid) % 2 else b"")
    return raw.item(raw.element_header(0x00081150, "UI", len(value)) + value)


def test_raw_and_parsed_sequences_give_the_same_classes():
    value = _item(CT) + _item(SLIDE) + raw.item(b"")
    from_raw = decode._sop_classes_of(_raw_holder(value), SOURCE_IMAGES, "x")
    parsed = _raw_holder(value)
    parsed[SOURCE_IMAGES].value  # pydicom parses it: the other path
    assert from_raw == decode._sop_classes_of(parsed, SOURCE_IMAGES, "x") == {CT, SLIDE, ""}
    # bytes that are no sequence: pydicom reads them as it did before (here leniently)
    garbage = b"\x01\x00\x02\x00" + b"\x00" * 12
    assert decode._sop_classes_of(_raw_holder(garbage), SOURCE_IMAGES, "x") == \
        {decode._uid_of(item, 0x00081150) for item in _raw_holder(garbage)[SOURCE_IMAGES].value}


def test_slide_references_are_refused_through_the_raw_bytes():
    ds = Dataset()
    ds.update(_raw_holder(_item(CT) + _item(SLIDE)))
    with pytest.raises(InputError, match="drawn on VL Whole Slide Microscopy images"):
        decode._refuse_tiled(ds, "x.dcm")
    ds = Dataset()
    ds.update(_raw_holder(_item(CT)))
    decode._refuse_tiled(ds, "x.dcm")


@pytest.mark.parametrize("tag, keyword", [(SOURCE_IMAGES, "SourceImageSequence (0008,2112)"),
                                          (REFERENCED_INSTANCES, "ReferencedInstanceSequence (0008,114A)")])
def test_a_reference_sequence_encoded_as_text_is_refused_as_before(labelmap_seg, tmp_path, tag, keyword):
    data = labelmap_seg.read_bytes()
    head = Tag(tag).group.to_bytes(2, "little") + Tag(tag).element.to_bytes(2, "little") + b"SQ"
    at = data.index(head)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data[:at + 4] + b"UT" + data[at + 6:])
    with pytest.raises(InputError, match=re.escape(f"{keyword} is encoded as UT")):
        import_seg(broken)
