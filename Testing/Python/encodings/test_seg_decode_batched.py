"""The BINARY SEG decoder's batched paths against the plain ways: raw.item_values reading alike
per-frame items all at once (dicom/raw.py, _aligned_item_values) against the element walker and
parse_sequence; FrameDecoder.packed_boxes against the boxes of pydicom's unpacked frames; a
segment's frames read a run of slices at a time (encodings/seg/decode.py, _packed_pieces) against
the labels the SEG was written from, with gaps, moving segments and overlaps."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pack_bits, unpack_bits
from pydicom.uid import ExplicitVRLittleEndian

from conftest import interop
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.model import Segment, Segmentation
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.dicom import raw
from DicomAnnotEmbedLib.encodings.seg import export_seg, import_seg
from DicomAnnotEmbedLib.encodings.seg.decode import _FRAME_VALUE_PATHS
from DicomAnnotEmbedLib.encodings.seg.read_pixels import FrameDecoder


def _walked(value: bytes, implicit: bool, monkeypatch) -> list:
    """item_values as the element walker reads them."""
    with monkeypatch.context() as patch:
        patch.setattr(raw, "_aligned_item_values", lambda *args: None)
        return raw.item_values(value, implicit, _FRAME_VALUE_PATHS)


@pytest.mark.parametrize("parts", [("highdicom", "seg_image_ct_binary_overlap.dcm"),
                                   ("highdicom", "seg_image_ct_true_fractional.dcm"),
                                   ("dcmqi", "sparse-labelmap-ppv5.dcm")], ids=lambda parts: "/".join(parts))
def test_aligned_item_values_as_the_walker_reads_them(parts, monkeypatch):
    """Per-frame items of other writers (implicit VR: highdicom's; explicit: dcmqi's) read all at
    once: the walker's values, which are parse_sequence's."""
    element = pydicom.dcmread(interop(*parts)).get_item(0x52009230)
    assert element.is_raw
    value, implicit = element.value, element.is_implicit_VR
    aligned = _aligned(value, implicit)
    assert aligned is not None  # the batched path is the one taken
    descend = {tag for path in _FRAME_VALUE_PATHS for tag in path[:-1]}
    expected = [[raw.first([item], *path) for path in _FRAME_VALUE_PATHS]
                for item in raw.parse_sequence(value, implicit, descend=descend)]
    assert aligned == expected == _walked(value, implicit, monkeypatch)


def _aligned(value: bytes, implicit: bool):
    """raw._aligned_item_values of the per-frame paths (None: it leaves the items to the walker)."""
    trie: dict = {}
    for index, path in enumerate(_FRAME_VALUE_PATHS):
        node = trie
        for tag in path[:-1]:
            node = node.setdefault(tag, {})
        node[path[-1]] = index
    return raw._aligned_item_values(memoryview(value), implicit, trie, len(_FRAME_VALUE_PATHS))


def _items(*bodies: bytes) -> bytes:
    return b"".join(raw.item(body) for body in bodies)


def _sequence(tag: int, *bodies: bytes) -> bytes:
    value = _items(*bodies)
    return raw.element_header(tag, "SQ", len(value)) + value


def _position(text: str) -> bytes:
    """An Image Position (Patient) element (DS, padded with a space)."""
    value = (text + " " * (len(text) % 2)).encode("ascii")
    return raw.element_header(0x00200032, "DS", len(value)) + value


def _frame_item(number: int, position: str, extra: bytes = b"") -> bytes:
    return (_sequence(0x00209113, _position(position))
            + extra + _sequence(0x0062000A, raw.plain_element(0x0062000B, "US", number)))


def test_items_that_differ_are_walked(monkeypatch):
    """Items with other elements, another sequence item, a value where a sequence is asked for,
    or cut short: the walker reads them, the same values or the same error."""
    alike = [_frame_item(n, f"0\\0\\{n}") for n in range(1, 4)]
    cases = {
        "alike": _items(*alike),
        "extra element": _items(alike[0], _frame_item(2, "0\\0\\2", raw.plain_element(0x00209111 - 1, "LO", "x")), alike[2]),
        "two items": _items(alike[0], _sequence(0x00209113, _position("1\\2\\3"), _position("4\\5\\6"))
                            + _sequence(0x0062000A, raw.plain_element(0x0062000B, "US", 2)), alike[2]),
        "value for a sequence": _items(alike[0], raw.plain_element(0x00209113, "LO", "ab")
                                       + _sequence(0x0062000A, raw.plain_element(0x0062000B, "US", 2)), alike[2]),
        "empty sequence": _items(alike[0], _sequence(0x00209113) + _sequence(0x0062000A, raw.plain_element(
            0x0062000B, "US", 2)), alike[2]),
    }
    for name, value in cases.items():
        expected = _walked(value, False, monkeypatch)
        assert raw.item_values(value, False, _FRAME_VALUE_PATHS) == expected, name
        assert (_aligned(value, False) is None) == (name != "alike"), name
    cut = cases["alike"][:-3]
    with pytest.raises(raw.RawParseError):
        raw.item_values(cut, False, _FRAME_VALUE_PATHS)


def _decoder(frames: np.ndarray) -> FrameDecoder:
    """A FrameDecoder of 1-bit frames (count, rows, columns), packed as pydicom packs them."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel = 1, 1, 0, 1
    ds.PixelData = pack_bits(frames.ravel())
    return FrameDecoder(ds, "test.dcm")


def test_packed_boxes_as_pydicom_unpacked_frames():
    """Boxes of frames of many shapes (rows not a multiple of 8, rows of 1 to 19 bytes, empty
    frames, single pixels in corners, random blocks) as found on pydicom's unpacked frames: the
    rows and the bytes of the columns holding a set pixel; and the pixels in them."""
    rng = np.random.default_rng(7)
    for shape in [(70, 16, 64), (40, 13, 24), (33, 64, 512), (9, 1, 8), (50, 23, 152)]:
        count, rows, columns = shape
        frames = np.zeros(shape, np.uint8)
        for index in range(count):
            kind = index % 4
            if kind == 1:
                frames[index, rng.choice([0, rows - 1]), rng.choice([0, columns - 1])] = 1
            elif kind >= 2:
                r0, c0 = rng.integers(0, rows), rng.integers(0, columns)
                r1, c1 = rng.integers(r0, rows) + 1, rng.integers(c0, columns) + 1
                frames[index, r0:r1, c0:c1] = rng.random((r1 - r0, c1 - c0)) < 0.4
        decoder = _decoder(frames)
        unpacked = unpack_bits(decoder.data.tobytes())[:frames.size].reshape(shape)
        np.testing.assert_array_equal(unpacked, frames)
        for index, frame in enumerate(unpacked):
            rows_set, columns_set = np.flatnonzero(frame.any(axis=1)), np.flatnonzero(frame.any(axis=0))
            expected = None if not rows_set.size else (
                int(rows_set[0]), int(rows_set[-1]) + 1, int(columns_set[0]) // 8 * 8, (int(columns_set[-1]) // 8 + 1) * 8)
            assert decoder.box(index) == expected, (shape, index)
            if expected:
                r0, r1, c0, c1 = expected
                np.testing.assert_array_equal(decoder.box_pixels(index, expected), frame[r0:r1, c0:c1].astype(bool))
        filled = np.flatnonzero(frames.any(axis=(1, 2)))
        np.testing.assert_array_equal(decoder.block_pixels(filled, (0, rows, 0, columns)), frames[filled].astype(bool))


@pytest.fixture(scope="module")
def moving_series(tmp_path_factory):
    import SimpleITK as sitk

    folder = tmp_path_factory.mktemp("moving")
    image = sitk.GetImageFromArray(np.zeros((24, 40, 128), dtype=np.int16))
    image.SetSpacing((0.5, 0.6, 1.5))
    sitk.WriteImage(image, str(folder / "ct.nrrd"))
    api.dicomize(folder / "ct.nrrd", folder / "series")
    return load_series(folder / "series")


@pytest.mark.parametrize("run_pixels", [None, 300])
def test_runs_of_slices_read_as_written(moving_series, tmp_path, monkeypatch, run_pixels):
    """Segments on runs of slices with gaps, one moving across the grid (its runs cut so that
    their common box stays near its frames' boxes), one overlapping another (a second layer),
    one empty: the layers written, segment by segment. With a small _RUN_PIXELS the runs are cut
    to it (it bounds the temporaries of the overlap test and the painting), with the same result."""
    from DicomAnnotEmbedLib.encodings.seg import decode

    read = []
    if run_pixels:
        monkeypatch.setattr(decode, "_RUN_PIXELS", run_pixels)
        block_pixels = FrameDecoder.block_pixels
        monkeypatch.setattr(FrameDecoder, "block_pixels",
                            lambda self, *args: read.append(block_pixels(self, *args)) or read[-1])
    shape = moving_series.geometry.shape
    layers = np.zeros((2,) + shape, np.uint8)
    layers[0, 2:6, 3:9, 10:30] = 1
    layers[0, 9:12, 3:9, 10:30] = 1  # a gap of 3 slices
    for k in range(24):  # moving diagonally, one slice in three left out
        if k % 3:
            layers[0, k, k:k + 5, 4 * k:4 * k + 9] = 2
    layers[0, 15:20, 30:38, 100:128] = 3
    layers[1, 16:18, 33:40, 90:110] = 1  # overlaps segment 3
    segments = [Segment(id=f"s{n}", name=f"s{n}", color=(1.0, 0.5, 0.0)) for n in range(5)]
    for segment, (layer, value) in zip(segments, [(0, 1), (0, 2), (0, 3), (1, 1), (0, 4)]):
        segment.layer, segment.label_value = layer, value
    path = tmp_path / "moving.dcm"
    export_seg(moving_series, Segmentation(moving_series.geometry, layers, segments), path, seg_type="binary")
    back = import_seg(path, moving_series).segmentation
    assert back.layers.shape[0] == 2
    for segment in segments[:4]:
        found = next(s for s in back.segments if s.name == segment.name)
        np.testing.assert_array_equal(back.mask(found), layers[segment.layer] == segment.label_value, segment.name)
    if run_pixels:
        assert read and all(mask.size <= run_pixels or len(mask) == 1 for mask in read)
        assert any(len(mask) > 1 for mask in read)  # runs of several slices still read together
