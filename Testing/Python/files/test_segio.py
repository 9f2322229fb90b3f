"""Segmentation files: our own inflate of .seg.nrrd voxels against slicerio/pynrrd's reading."""
from __future__ import annotations

import shutil

import nrrd
import numpy as np
import pytest
import slicerio

from conftest import interop
from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.files.segio import _read_gzip_voxels, load_segmentation


def slicerio_layers(path) -> np.ndarray:
    """(L, K, J, I) as slicerio reads them: the reference for our reader."""
    voxels = np.asarray(slicerio.read_segmentation(str(path))["voxels"])
    return voxels.T[np.newaxis] if voxels.ndim == 3 else np.transpose(voxels, (0, 3, 2, 1))


def assert_reads_like_slicerio(path):
    fast = _read_gzip_voxels(path)
    assert fast is not None, "the gzip fast path was not taken"
    expected = slicerio_layers(path)
    # Values as slicerio reads them, in the machine's byte order.
    assert fast.dtype == expected.dtype.newbyteorder("=") and fast.shape == expected.shape
    assert np.array_equal(fast, expected)
    loaded = load_segmentation(path)
    assert np.array_equal(loaded.layers, expected) and loaded.layers.flags.writeable
    return loaded


def test_sample_seg_nrrd_voxels_equal_slicerio(sample_case):
    loaded = assert_reads_like_slicerio(sample_case.segmentation_path)
    assert loaded.layers.shape[0] == 2  # the sample's overlapping segment is in a second layer


@pytest.mark.parametrize("seg_file", ["Segmentation.seg.nrrd", "SegmentationOverlapping.seg.nrrd"])
def test_slicer_written_seg_nrrd_voxels_equal_slicerio(seg_file):
    assert_reads_like_slicerio(interop("slicer", seg_file))


def rewrite(source, target, dtype, **fields):
    """The sample segmentation with its voxels as ``dtype``, written by pynrrd with header ``fields``."""
    voxels, header = nrrd.read(str(source))
    nrrd.write(str(target), voxels.astype(dtype), {**header, **fields})
    return target


@pytest.mark.parametrize("dtype", ["<i2", ">i2", ">u2", "<u4", "i1"])
def test_other_integer_types_and_byte_orders(sample_case, tmp_path, dtype):
    path = rewrite(sample_case.segmentation_path, tmp_path / "typed.seg.nrrd", dtype)
    loaded = assert_reads_like_slicerio(path)
    assert loaded.layers.dtype == np.dtype(dtype).newbyteorder("=")


def test_other_encodings_go_through_slicerio(sample_case, tmp_path):
    path = rewrite(sample_case.segmentation_path, tmp_path / "raw.seg.nrrd", np.uint8, encoding="raw")
    assert _read_gzip_voxels(path) is None
    assert np.array_equal(load_segmentation(path).layers, slicerio_layers(sample_case.segmentation_path))


def test_truncated_voxel_data_names_the_file(sample_case, tmp_path):
    path = tmp_path / "truncated.seg.nrrd"
    shutil.copy(sample_case.segmentation_path, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 200])
    with pytest.raises(InputError) as error:
        load_segmentation(path)
    assert "truncated.seg.nrrd" in str(error.value)


def test_voxel_data_longer_than_the_sizes_names_the_file(sample_case, tmp_path):
    voxels, header = nrrd.read(str(sample_case.segmentation_path))
    path = tmp_path / "long.seg.nrrd"
    nrrd.write(str(path), voxels, header)
    head, _, _ = path.read_bytes().partition(b"\n\n")
    larger = np.concatenate([voxels.ravel(order="F"), np.zeros(1000, voxels.dtype)])
    import gzip

    path.write_bytes(head + b"\n\n" + gzip.compress(larger.tobytes()))
    with pytest.raises(InputError, match="more than") as error:
        load_segmentation(path)
    assert "long.seg.nrrd" in str(error.value)


@pytest.mark.parametrize("field", [b"line skip", b"lineskip"])
def test_skip_fields_in_either_spelling_go_through_slicerio(sample_case, tmp_path, field):
    head, _, body = sample_case.segmentation_path.read_bytes().partition(b"\n\n")
    path = tmp_path / "skip.seg.nrrd"
    path.write_bytes(head + b"\n" + field + b": 1\n\n" + b"a line before the data\n" + body)
    assert _read_gzip_voxels(path) is None
    assert np.array_equal(load_segmentation(path).layers, slicerio_layers(sample_case.segmentation_path))
