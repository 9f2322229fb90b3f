"""The SEG decoder's fast paths (encodings/seg/decode.py, dicom/raw.py) against highdicom's own
decoding of the same files: the per-frame values read by raw.item_values instead of parsing every
item, BINARY frames unpacked only inside the box of their set pixels (rows from one pass over the
packed frames, columns from those rows' bytes), and the layer chosen by comparing those boxes.

Files: our writer's BINARY SEGs (overlapping segments, so several layers; a frame size that is
not a whole number of bytes, which takes the unpacked path), highdicom's and dcmqi's SEGs from
../shared/interop (skipped when absent)."""
from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest

from conftest import interop
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.core.model import Segment, Segmentation
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.dicom import raw
from DicomAnnotEmbedLib.encodings.seg import export_seg, import_seg
from DicomAnnotEmbedLib.encodings.seg.decode import _FRAME_VALUE_PATHS

hd = pytest.importorskip("highdicom")


def _points(indices: np.ndarray, affine: np.ndarray) -> set:
    """LPS points (0.01 mm) of voxel indices through a 4x4 affine."""
    lps = np.c_[indices, np.ones(len(indices))] @ affine.T
    return set(map(tuple, np.round(lps[:, :3], 2).tolist()))


def _ours(imported) -> dict:
    """{segment number: LPS points of its voxels} of an import on the SEG's own grid."""
    seg = imported.segmentation
    result = {}
    for segment in seg.segments:
        k, j, i = np.nonzero(seg.mask(segment))
        result[imported.segment_numbers[segment.id]] = _points(np.c_[i, j, k], seg.geometry.ijk_to_lps)
    return result


def _highdicom(path) -> dict:
    """{segment number: LPS points} from highdicom's get_volume (fractional values of 0.5 and
    more count, as the import's layers count them)."""
    seg = hd.seg.segread(str(path))
    volume = seg.get_volume()
    result = {}
    for index, number in enumerate(seg.segment_numbers):
        array = volume.array[..., index]
        result[number] = _points(np.argwhere(array >= 0.5), volume.affine)
    return result


def assert_same_as_highdicom(path):
    imported = import_seg(path)
    ours, theirs = _ours(imported), _highdicom(path)
    if imported.seg_type == "labelmap":
        theirs.pop(0, None)  # the background, described as segment 0
    assert ours.keys() <= theirs.keys()
    for number, points in theirs.items():
        assert ours.get(number, set()) == points, f"segment {number} of {path}"


INTEROP_SEGS = [("highdicom", "seg_image_ct_binary.dcm"), ("highdicom", "seg_image_ct_binary_overlap.dcm"),
                ("highdicom", "seg_image_ct_binary_fractional.dcm"), ("highdicom", "seg_image_ct_true_fractional.dcm"),
                ("dcmqi", "liver.dcm"), ("dcmqi", "sr-example", "seg.dcm"), ("dcmqi", "sparse-labelmap-ppv5.dcm")]


@pytest.mark.parametrize("parts", INTEROP_SEGS, ids=lambda parts: "/".join(parts))
def test_other_tools_segs_as_highdicom_reads_them(parts):
    assert_same_as_highdicom(interop(*parts))


@pytest.mark.parametrize("parts", INTEROP_SEGS, ids=lambda parts: "/".join(parts))
def test_item_values_as_the_parsed_items(parts):
    """raw.item_values gives what parse_sequence + first give, for explicit and implicit VR."""
    _assert_item_values(*_per_frame_bytes(pydicom.dcmread(interop(*parts))))


def _per_frame_bytes(ds) -> tuple:
    """The per-frame sequence's value bytes and whether they are implicit VR: as read when pydicom
    left them raw (defined length), else encoded again in explicit VR (delimiters kept)."""
    element = ds.get_item(0x52009230)
    if element.is_raw:
        return element.value, element.is_implicit_VR
    encoded = raw.encode_element(ds["PerFrameFunctionalGroupsSequence"])
    return encoded[12:], False


def _assert_item_values(value: bytes, implicit: bool):
    descend = {tag for path in _FRAME_VALUE_PATHS for tag in path[:-1]}
    items = raw.parse_sequence(value, implicit, descend=descend)
    expected = [[raw.first([item], *path) for path in _FRAME_VALUE_PATHS] for item in items]
    assert raw.item_values(value, implicit, _FRAME_VALUE_PATHS) == expected
    assert any(value is not None for values in expected for value in values)


def test_item_values_of_undefined_lengths(tmp_path):
    """Items and sequences of undefined length (delimited) read as those of defined length."""
    ds = pydicom.dcmread(interop("dcmqi", "liver.dcm"))
    for item in ds.PerFrameFunctionalGroupsSequence:
        item.is_undefined_length_sequence_item = True
        for element in item:
            if element.VR == "SQ":
                element.is_undefined_length = True
                for inner in element.value:
                    inner.is_undefined_length_sequence_item = True
    ds.save_as(tmp_path / "undefined.dcm")
    value, implicit = _per_frame_bytes(pydicom.dcmread(tmp_path / "undefined.dcm"))
    assert value.count(b"\xfe\xff\x0d\xe0") >= 3 and value.endswith(b"\xfe\xff\xdd\xe0\0\0\0\0")  # delimiters
    _assert_item_values(value, implicit)
    assert_same_as_highdicom(tmp_path / "undefined.dcm")


def test_cut_per_frame_groups_as_parse_sequence_reads_them():
    """Per-frame bytes cut and followed by junk: RawParseError where parse_sequence raises it (the
    decoder then lets pydicom read the items, whose errors name the file), else the same values
    (a cut in the last delimiters of undefined lengths), for explicit and implicit VR."""
    descend = {tag for path in _FRAME_VALUE_PATHS for tag in path[:-1]}
    raised = 0
    for parts in [("highdicom", "seg_image_ct_binary_overlap.dcm"), ("dcmqi", "liver.dcm")]:
        value, implicit = _per_frame_bytes(pydicom.dcmread(interop(*parts)))
        for cut in (0, 9, 30, len(value) // 3, len(value) // 2, len(value) - 20, len(value) - 3):
            broken = value[:cut] + b"\xff" * 7
            try:
                items = raw.parse_sequence(broken, implicit, descend=descend)
            except raw.RawParseError:
                raised += 1
                with pytest.raises(raw.RawParseError):
                    raw.item_values(broken, implicit, _FRAME_VALUE_PATHS)
            else:
                expected = [[raw.first([item], *path) for path in _FRAME_VALUE_PATHS] for item in items]
                assert raw.item_values(broken, implicit, _FRAME_VALUE_PATHS) == expected
    assert raised >= 8


@pytest.fixture(scope="module")
def our_binary_segs(sample_case, tmp_path_factory):
    """BINARY SEGs of our writer: the sample (128 columns: rows of 16 bytes, read 8 at a time;
    its tumour overlaps the liver) and an odd grid of 13x21 pixels (frames that are no whole
    number of bytes) with three overlapping blocks (three layers)."""
    folder = tmp_path_factory.mktemp("binary")
    series = load_series(sample_case.series_dir)
    segmentation = api.load_annotations(series, sample_case.segmentation_path).segmentation
    export_seg(series, segmentation, folder / "sample.dcm", seg_type="binary")

    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.arange(5 * 13 * 21, dtype=np.int16).reshape(5, 13, 21))
    image.SetSpacing((0.8, 0.9, 2.0))
    sitk.WriteImage(image, str(folder / "odd.nrrd"))
    api.dicomize(folder / "odd.nrrd", folder / "odd_series")
    odd = load_series(folder / "odd_series")
    layers = np.zeros((3,) + odd.geometry.shape, np.uint8)
    layers[0, 1:4, 2:9, 3:17] = 1
    layers[1, 0:3, 5:12, 1:20] = 1
    layers[2, 2:5, 0:6, 10:21] = 1
    layers[0, 4, 12, 20] = 2  # a second segment of one voxel, in the last byte of the frame
    segments = [Segment(id=f"s{n}", name=f"s{n}", color=(1.0, 0.5, 0.0)) for n in range(4)]
    for segment, (layer, value) in zip(segments, [(0, 1), (1, 1), (2, 1), (0, 2)]):
        segment.layer, segment.label_value = layer, value
    export_seg(odd, Segmentation(odd.geometry, layers, segments), folder / "odd.dcm", seg_type="binary")
    return folder


@pytest.mark.parametrize("name", ["sample.dcm", "odd.dcm"])
def test_our_binary_segs_as_highdicom_reads_them(our_binary_segs, name):
    path = our_binary_segs / name
    assert pydicom.dcmread(path, stop_before_pixels=True).SegmentationType == "BINARY"
    assert_same_as_highdicom(path)
    assert import_seg(path).segmentation.layers.shape[0] >= 2  # overlapping segments: layers


def test_several_frames_of_a_segment_on_one_slice_merge(our_binary_segs, tmp_path):
    """Two frames of one segment at one position (allowed, if unusual): their union, as highdicom
    reads it (its volume of the segment is the frames' maximum)."""
    ds = pydicom.dcmread(our_binary_segs / "sample.dcm")
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), -1)
    groups = ds.PerFrameFunctionalGroupsSequence
    first = 0
    shifted = np.roll(frames[first].reshape(ds.Rows, ds.Columns), (7, -5), axis=(0, 1)).reshape(-1)
    frames = np.concatenate([frames, shifted[np.newaxis]])
    groups.append(copy.deepcopy(groups[first]))
    ds.NumberOfFrames = len(frames)
    ds.PixelData = pydicom.pixels.pack_bits(frames.reshape(-1))
    ds.save_as(tmp_path / "merged.dcm")
    imported = import_seg(tmp_path / "merged.dcm")
    number = groups[first].SegmentIdentificationSequence[0].ReferencedSegmentNumber
    segment = next(s for s in imported.segmentation.segments if imported.segment_numbers[s.id] == number)
    k = imported.segmentation.geometry.lps_to_ijk_points(
        np.array([groups[first].PlanePositionSequence[0].ImagePositionPatient], float))[0, 2]
    plane = imported.segmentation.mask(segment)[int(round(k))]
    expected = (frames[first] | shifted).reshape(ds.Rows, ds.Columns).astype(bool)
    np.testing.assert_array_equal(plane, expected)


def test_truncated_binary_pixel_data_names_the_file(our_binary_segs, tmp_path):
    data = (our_binary_segs / "sample.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:len(data) - 100])
    with pytest.raises(InputError) as info:
        import_seg(tmp_path / "cut.dcm")
    assert "cut.dcm" in str(info.value)


def test_mapped_pixel_data_as_pydicom_reads_it(our_binary_segs, tmp_path):
    """Native pixel data is mapped from the file (implicit VR: highdicom's files; explicit: ours),
    and read by pydicom as before in a deflated file, whose bytes are not the dataset's: the same
    segmentation from all three, and from the dataset pydicom reads whole."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from DicomAnnotEmbedLib.encodings.seg.read_pixels import read_seg_file

    path = our_binary_segs / "odd.dcm"
    ds, mapped = read_seg_file(path)
    assert mapped is not None and "PixelData" not in ds
    assert bytes(mapped) == pydicom.dcmread(path).PixelData[:len(mapped)]
    deflated = pydicom.dcmread(path)
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    assert read_seg_file(tmp_path / "deflated.dcm")[1] is None
    expected = import_seg(path).segmentation
    back = import_seg(tmp_path / "deflated.dcm").segmentation
    np.testing.assert_array_equal(back.layers, expected.layers)
    implicit = interop("highdicom", "seg_image_ct_binary_overlap.dcm")
    assert read_seg_file(implicit)[1] is not None


def test_pixel_data_read_where_the_file_cannot_be_mapped(our_binary_segs, monkeypatch):
    """A file system without mmap: the pixel data is read instead, the same segmentation."""
    from DicomAnnotEmbedLib.encodings.seg import read_pixels

    path = our_binary_segs / "sample.dcm"
    expected = import_seg(path).segmentation.layers

    def refuse(*args, **kwargs):
        raise OSError(19, "No such device")

    monkeypatch.setattr(read_pixels.mmap, "mmap", refuse)
    ds, pixels = read_pixels.read_seg_file(path)
    assert pixels is not None and bytes(pixels) == pydicom.dcmread(path).PixelData
    np.testing.assert_array_equal(import_seg(path).segmentation.layers, expected)


def mapped_kib(path) -> int:
    """Resident KiB of this process's memory maps of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            inside = len(fields) >= 6 and fields[-1] == str(path)
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


def test_mapped_frames_do_not_stay_resident(tmp_path, monkeypatch):
    """The pages of a mapped SEG count in the RSS once touched: the decoder lets the kernel drop
    them every RESIDENT_BYTES it reads (the 164 MB SEG of the SR benchmark: seg import's peak
    274 -> 113 MiB), and the segmentation is the same as when they stay."""
    import os

    import SimpleITK as sitk

    from DicomAnnotEmbedLib.encodings.seg import read_pixels

    if not os.path.exists("/proc/self/smaps"):
        pytest.skip("no /proc/self/smaps on this system")
    image = sitk.GetImageFromArray(np.zeros((64, 256, 256), dtype=np.int16))
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    api.dicomize(tmp_path / "ct.nrrd", tmp_path / "series")
    series = load_series(tmp_path / "series")
    labels = np.zeros(series.geometry.shape, np.uint8)
    for value in range(1, 5):  # 4 segments on every slice: 256 frames of 8 KB
        labels[:, 40 * value:40 * value + 30, 20:230] = value
    segments = [Segment(id=f"s{n}", name=f"s{n}", color=(1.0, 0.5, 0.0)) for n in range(1, 5)]
    for number, segment in enumerate(segments, 1):
        segment.layer, segment.label_value = 0, number
    path = tmp_path / "seg.dcm"
    export_seg(series, Segmentation(series.geometry, labels[np.newaxis], segments), path, seg_type="binary")
    assert os.path.getsize(path) > 2_000_000
    expected = import_seg(path).segmentation.layers

    resident = []
    read = read_pixels.FrameDecoder._read

    def watched(self, nbytes):
        read(self, nbytes)
        resident.append(mapped_kib(path))

    monkeypatch.setattr(read_pixels.FrameDecoder, "_read", watched)
    monkeypatch.setattr(read_pixels.FrameDecoder, "RESIDENT_BYTES", 64 << 10)
    np.testing.assert_array_equal(import_seg(path).segmentation.layers, expected)
    assert resident and max(resident) < 1024  # KiB, of a 2 MB file read whole twice
