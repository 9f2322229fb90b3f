"""LABELMAP import: pixel values without a segment description are dropped (with a warning), and
only those. The check reads the frames' maxima when the described values are 1..top and counts
the values otherwise (encodings/seg/decode.py); both against pydicom's pixel array."""
import copy
import logging

import numpy as np
import pydicom
import pytest

from conftest import interop
from DicomAnnotEmbedLib.encodings.seg import import_seg


def _labelmap_seg(tmp_path, described, values=(1, 2, 3)):
    """dcmqi's sparse LABELMAP SEG with pixels of each of ``values`` and descriptions of the
    segment numbers ``described`` (0, the background, always): (path, pixel array)."""
    ds = pydicom.dcmread(interop("dcmqi", "sparse-labelmap-ppv5.dcm"))
    pixels = ds.pixel_array.copy()
    flat = pixels.reshape(-1)
    ones = np.flatnonzero(flat)
    for n, value in enumerate(values):
        flat[ones[n::len(values)]] = value
    ds.PixelData = pixels.tobytes()
    template = next(item for item in ds.SegmentSequence if item.SegmentNumber == 1)
    items = [item for item in ds.SegmentSequence if item.SegmentNumber == 0]
    for number in described:
        item = copy.deepcopy(template)
        item.SegmentNumber = number
        item.SegmentLabel = f"label {number}"
        items.append(item)
    ds.SegmentSequence = items
    path = tmp_path / "labelmap.dcm"
    ds.save_as(path)
    return path, pixels


@pytest.mark.parametrize("described", [(1, 2, 3), (1, 2), (1, 3), (2, 3), (3,), (1, 2, 3, 4), (2, 3, 7)])
def test_undescribed_values_are_dropped_and_only_they(tmp_path, caplog, described):
    path, pixels = _labelmap_seg(tmp_path, described)
    with caplog.at_level(logging.WARNING):
        imported = import_seg(path)
    labels = imported.segmentation.layers[0]
    stray = sorted(set(np.unique(pixels).tolist()) - set(described) - {0})
    assert ("have no segment description" in caplog.text) == bool(stray)
    for value in (1, 2, 3):
        expected = int(np.count_nonzero(pixels == value)) if value in described else 0
        assert int(np.count_nonzero(labels == value)) == expected, value
    assert int(np.count_nonzero(labels)) == int(np.isin(pixels, described).sum())
    assert sorted(s.label_value for s in imported.segmentation.segments) == sorted(described)


def test_plane_orientation_and_measures_in_the_per_frame_groups(tmp_path):
    """The shared functional groups are looked at first and the per-frame items only when the
    shared ones lack the plane orientation or pixel measures: the same grid either way."""
    source = interop("dcmqi", "sparse-labelmap-ppv5.dcm")
    ds = pydicom.dcmread(source)
    shared = ds.SharedFunctionalGroupsSequence[0]
    for item in ds.PerFrameFunctionalGroupsSequence:
        item.PlaneOrientationSequence = copy.deepcopy(shared.PlaneOrientationSequence)
        item.PixelMeasuresSequence = copy.deepcopy(shared.PixelMeasuresSequence)
    del shared.PlaneOrientationSequence, shared.PixelMeasuresSequence
    ds.save_as(tmp_path / "per_frame.dcm")
    expected, moved = import_seg(source), import_seg(tmp_path / "per_frame.dcm")
    assert moved.segmentation.geometry.shape == expected.segmentation.geometry.shape
    np.testing.assert_allclose(moved.segmentation.geometry.ijk_to_lps, expected.segmentation.geometry.ijk_to_lps)
    np.testing.assert_array_equal(moved.segmentation.layers, expected.segmentation.layers)
