"""The LABELMAP export's speed-ups (issue 14) against what they replace.

Each hand-written piece is compared with the library result it stands for:

* ``core.arrays.slice_label_presence`` / ``present_values`` against the per-slice bincounts
  (``slice_label_counts``) and ``model.present_labels``, on arrays built to hit run and slab edges;
* the JPEG-LS frames encoded through pyjpegls directly against pydicom's encoder (the one highdicom
  calls), 8 and 16 bits, and one encoding of an empty frame reused for every empty frame against a
  file in which highdicom encoded every frame;
* the header's large sequences as bytes (``headers.encode_items``, ``_raw_references``) against
  pydicom writing the same datasets, and the whole LABELMAP against highdicom's element for element
  (the documented difference aside: highdicom lists itself in the Contributing Equipment Sequence).
"""
from __future__ import annotations

import copy
import dataclasses
import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from DicomAnnotEmbedLib.core.arrays import present_values, slice_label_counts, slice_label_presence
from DicomAnnotEmbedLib.core.model import Code, Segment, Segmentation, Terminology, present_labels
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.encodings.seg import encode, export_seg, headers
from test_conformance_matrix import Case, _build_series
from test_seg_template import _assert_same, _both, _fixed_tracking


def _label_arrays():
    """Label volumes that stress the run-start logic: a value only on a slice's first voxel, runs
    across slice and slab boundaries, values at and above a small ``bins``, empty slices."""
    rng = np.random.default_rng(14)
    blocky = np.repeat(rng.integers(0, 9, size=(7, 6, 5)), 3, axis=2)  # runs of 3 along rows
    edge = np.zeros((5, 4, 6), np.uint8)
    edge[1, 0, 0] = 7          # only the first voxel of slice 1, after a slice ending in 0
    edge[2, -1, -1] = 9        # last voxel of slice 2 ...
    edge[3, 0, 0] = 9          # ... and the first of slice 3: one run across the boundary
    edge[4, :, :] = 3          # a whole slice of one value
    wide = rng.integers(0, 600, size=(6, 8, 9)).astype(np.uint16)
    wide[2] = 0
    return {"blocky uint8": blocky.astype(np.uint8), "edges": edge, "uint16 up to 599": wide,
            "all zero": np.zeros((3, 4, 4), np.uint8), "one slice": blocky[:1].astype(np.uint8),
            "int16 (fallback)": blocky.astype(np.int16), "bool (fallback)": blocky.astype(bool)}


@pytest.mark.parametrize("name", list(_label_arrays()))
@pytest.mark.parametrize("bins", [1, 4, 10, 700])
@pytest.mark.parametrize("slab", [1, 3, 4])
def test_slice_label_presence_equals_counts(name, bins, slab):
    layer = _label_arrays()[name]
    np.testing.assert_array_equal(slice_label_presence(layer, bins, slab=slab), slice_label_counts(layer, bins) > 0)


def test_slice_label_presence_of_nothing():
    assert slice_label_presence(np.zeros((0, 4, 4), np.uint8), 3).shape == (0, 3)
    assert slice_label_presence(np.ones((2, 4, 4), np.uint8), 0).shape == (2, 0)


@pytest.mark.parametrize("name", list(_label_arrays()))
@pytest.mark.parametrize("slab", [1, 4])
def test_present_values_equals_numpys_unique(name, slab):
    labels = _label_arrays()[name]
    expected = np.unique(labels)
    assert present_values(labels, slab=slab).tolist() == expected[expected != 0].tolist()
    assert present_labels(labels).tolist() == expected[expected != 0].tolist()  # (model's name for it)


def test_present_values_other_arrays():
    for labels in (np.array([[0.0, 2.0], [2.0, 5.0]]), np.array([3, 0, 3, 1])):
        expected = np.unique(labels)
        assert present_values(labels).tolist() == expected[expected != 0].tolist()
    assert present_values(np.zeros((2, 0, 3), np.uint8)).size == 0


def test_slice_presence_of_a_segmentation_equals_its_counts():
    """Two layers, a segment claiming label 300 that no voxel holds (the > 256 sizing), an empty one."""
    rng = np.random.default_rng(5)
    shape = (6, 10, 12)
    layers = np.zeros((2,) + shape, np.uint16)
    layers[0] = rng.integers(0, 4, size=shape)
    layers[1, 2:4, 3:6, 3:9] = 2
    from DicomAnnotEmbedLib.core.geometry import VolumeGeometry

    segments = [Segment(f"s{v}", f"S{v}") for v in range(1, 4)] + [Segment("t", "T"), Segment("claim", "Claim"),
                                                                   Segment("gone", "Gone")]
    for segment, (layer, value) in zip(segments, [(0, 1), (0, 2), (0, 3), (1, 2), (0, 300), (1, 1)]):
        segment.layer, segment.label_value = layer, value
    segmentation = Segmentation(VolumeGeometry(shape, np.eye(4)), layers, segments)
    counts = segmentation.slice_voxel_counts()
    presence = segmentation.slice_presence()
    assert set(presence) == set(counts)
    for key, values in counts.items():
        np.testing.assert_array_equal(presence[key], values > 0, err_msg=key)


# --- JPEG-LS frames --------------------------------------------------------------------------------

def _pixel_writer(bits: int) -> "encode._PixelWriter":
    header = Dataset()
    header.BitsAllocated = header.BitsStored = bits
    header.PhotometricInterpretation = "MONOCHROME2"
    header.Rows, header.Columns = 33, 47
    return encode._PixelWriter(header, "jpegls", "OB")


@pytest.mark.parametrize("bits,top", [(8, 255), (8, 3), (16, 65535), (16, 300)])
def test_jpegls_frames_equal_pydicoms_encoder(bits, top):
    """pyjpegls called directly gives the bytes of pydicom's encoder, which highdicom uses; they decode back."""
    from pydicom.pixels.encoders.base import get_encoder
    from pydicom.uid import JPEGLSLossless
    import jpeg_ls

    rng = np.random.default_rng(bits + top)
    dtype = np.uint16 if bits == 16 else np.uint8
    frame = np.repeat(rng.integers(0, top + 1, size=(33, 12)), 4, axis=1)[:, :47].astype(dtype)
    ours = _pixel_writer(bits)._encoder()(frame)
    theirs = get_encoder(JPEGLSLossless).encode(
        frame, rows=33, columns=47, samples_per_pixel=1, number_of_frames=1, bits_allocated=bits,
        bits_stored=bits, photometric_interpretation="MONOCHROME2", pixel_representation=0,
        planar_configuration=None)
    assert ours == bytes(theirs)
    np.testing.assert_array_equal(jpeg_ls.decode(np.frombuffer(ours, np.uint8)), frame)


@pytest.fixture(scope="module")
def labelmap_case(tmp_path_factory):
    """A 12-slice series and 60 labels on slices 2..8 only (empty slices at both ends and one
    inside), with codes, modifiers, an anatomic region and an algorithm on some segments."""
    folder = _build_series(Case("labelmap fast", (12, 40, 48), (0.8, 0.8, 1.5)), tmp_path_factory.mktemp("lm"))
    series = load_series(folder)
    rng = np.random.default_rng(60)
    labels = np.zeros(series.geometry.shape, np.uint8)
    labels[2:9] = np.repeat(rng.integers(0, 61, size=(7, 40, 12)), 4, axis=2)
    labels[5] = 0
    labels[labels == 17] = 0  # one label without voxels: an empty segment
    segments = []
    region = Code("64033007", "SCT", "Kidney")
    for value in range(1, 61):
        terminology = None
        attributes = {}
        if value % 3 == 0:
            terminology = Terminology(category=Code("49755003", "SCT", "Morphologically Altered Structure"),
                                      type=Code("4147007", "SCT", "Mass"),
                                      type_modifier=Code("24028007", "SCT", "Right") if value % 2 else None,
                                      anatomic_region=region if value % 4 else None,
                                      anatomic_region_modifier=Code("7771000", "SCT", "Left") if value % 4 else None)
        if value % 5 == 0:
            attributes = {"SegmentAlgorithmType": "AUTOMATIC", "SegmentAlgorithmName": f"net{value}"}
        segment = Segment(f"v{value}", f"Segment {value}", terminology=terminology, attributes=attributes,
                          description="described" if value % 7 == 0 else "")
        segment.layer, segment.label_value = 0, value
        segments.append(segment)
    segmentation = Segmentation(series.geometry, labels[np.newaxis], segments)
    return series, _fixed_tracking(segmentation)


def test_labelmap_equals_highdicoms_with_many_segments_and_empty_slices(labelmap_case, tmp_path):
    """The whole file against highdicom's (engine="highdicom" builds every frame and the header):
    every element, and every JPEG-LS frame byte for byte, the reused empty-frame encoding included."""
    series, segmentation = labelmap_case
    fast, reference = _both(series, segmentation, tmp_path, seg_type="labelmap", compression="jpegls")
    _assert_same(fast, reference)
    from pydicom.encaps import generate_frames

    ours = list(generate_frames(fast.PixelData, number_of_frames=int(fast.NumberOfFrames)))
    theirs = list(generate_frames(reference.PixelData, number_of_frames=int(reference.NumberOfFrames)))
    assert ours == theirs
    empty = [index for index, frame in enumerate(fast.pixel_array) if not frame.any()]
    assert len(empty) == 6 and len({ours[i] for i in empty}) == 1


@pytest.mark.parametrize("compression", ["rle", "jpeg2000"])
def test_reused_empty_frames_with_other_codecs(labelmap_case, tmp_path, compression):
    series, segmentation = labelmap_case
    fast, reference = _both(series, segmentation, tmp_path, seg_type="labelmap", compression=compression)
    np.testing.assert_array_equal(fast.pixel_array, reference.pixel_array)
    assert sum(not frame.any() for frame in fast.pixel_array) == 6


# --- the header's sequences as bytes -------------------------------------------------------------------

def _header_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("seg_type,first_label", [("labelmap", "Segment 1"), ("binary", "Segment 1"),
                                                  ("labelmap", "Tumör 1")])
def test_pre_encoded_header_equals_pydicoms(labelmap_case, tmp_path, monkeypatch, seg_type, first_label):
    """The header written with its large sequences pre-encoded is byte for byte the header pydicom
    writes for the same dataset (a non-ASCII label: the Segment Sequence is left to pydicom)."""
    series, segmentation = labelmap_case
    segments = [dataclasses.replace(segmentation.segments[0], name=first_label), *segmentation.segments[1:]]
    segmentation = Segmentation(segmentation.geometry, segmentation.layers, segments)
    real = encode.pre_encode_bulk_sequences
    written = []

    def both_ways(header):
        plain = copy.deepcopy(header)
        real(header)
        written.append((_header_bytes(header), _header_bytes(plain)))
        raw_tags = [tag for tag in headers.BULK_SEQUENCES if getattr(header.get_item(tag), "is_raw", False)]
        written.append(raw_tags)

    monkeypatch.setattr(encode, "pre_encode_bulk_sequences", both_ways)
    export_seg(series, segmentation, tmp_path / "seg.dcm", seg_type=seg_type)
    (ours, pydicoms), raw_tags = written
    assert ours == pydicoms
    expected = list(headers.BULK_SEQUENCES) if first_label.isascii() else list(headers.BULK_SEQUENCES[:2])
    assert raw_tags == expected


def test_raw_references_equal_datasets(monkeypatch):
    """Source Image and Referenced Series Sequences as bytes against the datasets pydicom encodes,
    for sources of two series with UIDs of odd and even lengths."""
    sources = []
    for index, series in enumerate(["1.2.3", "1.2.34", "1.2.3"]):
        source = Dataset()
        source.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        source.SOPInstanceUID = f"1.2.826.0.1.{index}" + "7" * index
        source.SeriesInstanceUID = series
        sources.append(source)
    raw = Dataset()
    headers._reference_all_sources(raw, sources)
    monkeypatch.setattr(headers, "_raw_references", lambda ds, sources: False)
    built = Dataset()
    headers._reference_all_sources(built, sources)
    assert all(raw.get_item(tag).is_raw for tag in (0x00081115, 0x00082112))
    assert _header_bytes(_with_meta(raw)) == _header_bytes(_with_meta(built))
    assert [item.ReferencedInstanceSequence[1].ReferencedSOPInstanceUID for item in raw.ReferencedSeriesSequence
            if len(item.ReferencedInstanceSequence) > 1] == ["1.2.826.0.1.277"]


def _with_meta(ds: Dataset) -> Dataset:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.66.7", "1.2.3.4"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    return ds


def test_encode_items_leaves_other_values_to_pydicom():
    """Non-ASCII text, a DS value, an item with its own character set: None (pydicom writes them)."""
    from DicomAnnotEmbedLib.dicom import raw

    def item(**values) -> Dataset:
        ds = Dataset()
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        return ds

    assert headers.encode_items([item(SegmentLabel="Tumör")]) is None
    assert headers.encode_items([item(SliceThickness="1.5")]) is None
    assert headers.encode_items([item(SpecificCharacterSet="ISO_IR 100", SegmentLabel="A")]) is None
    plain = [item(SegmentNumber=3, SegmentLabel="odd", SegmentAlgorithmType="MANUAL", TrackingUID="1.2.3",
                  RecommendedDisplayCIELabValue=[1, 2, 3], SegmentDescription="",
                  SegmentedPropertyCategoryCodeSequence=[item(CodeValue="1", CodingSchemeDesignator="SCT",
                                                              CodeMeaning="x")])]
    element = pydicom.DataElement(0x00620002, "SQ", plain)
    assert raw.element_header(0x00620002, "SQ", len(headers.encode_items(plain))) + \
        headers.encode_items(plain) == raw.encode_element(element)
