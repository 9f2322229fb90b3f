"""Reading a series' pixels from the Pixel Data offset that load_series found (core.series
native_pixel_data) gives what pydicom reads from the file, and falls back to pydicom wherever
those bytes cannot be trusted."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, RLELossless

from DicomAnnotEmbedLib.core.errors import SeriesError
from DicomAnnotEmbedLib.core.series import load_series, native_pixel_data


def pydicom_volume(series) -> np.ndarray:
    """The independent reading: pydicom's pixel_array and its Modality LUT, file by file."""
    from pydicom.pixels import apply_modality_lut

    volume = np.zeros(series.geometry.shape, np.float64)
    for index, path in enumerate(series.files):
        ds = pydicom.dcmread(path)
        frames = apply_modality_lut(ds.pixel_array, ds).reshape((-1,) + series.geometry.shape[1:])
        for frame, k in series.slices_of_file(index):
            volume[k] = frames[frame]
    return volume


@pytest.fixture
def series_copy(sample_case, tmp_path):
    return shutil.copytree(sample_case.series_dir, tmp_path / "series")


def test_native_pixel_data_is_the_files_pixel_data(series_copy):
    series = load_series(series_copy)
    for path, header in zip(series.files, series.datasets):
        assert native_pixel_data(path, header) == pydicom.dcmread(path).PixelData
    np.testing.assert_array_equal(series.read_int16_volume(), pydicom_volume(series))
    np.testing.assert_array_equal(series.read_volume(), pydicom_volume(series))
    assert_planes_are_the_volume(series, np.int16)


def assert_planes_are_the_volume(series, dtype) -> None:
    """modality_planes gives each slice once, with pydicom's values, in ``dtype``."""
    expected = pydicom_volume(series)
    seen = set()
    for k, plane in series.modality_planes():
        assert k not in seen and plane.dtype == dtype
        seen.add(k)
        np.testing.assert_array_equal(plane, expected[k])
    assert seen == set(range(series.geometry.shape[0]))


def test_planes_of_a_file_rescaled_by_a_fraction_are_float32(series_copy):
    path = sorted(series_copy.iterdir())[0]
    ds = pydicom.dcmread(path)
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -1024.25
    ds.save_as(path)
    series = load_series(series_copy)
    assert series.read_int16_volume() is None
    assert {plane.dtype for _, plane in series.modality_planes()} == {np.dtype(np.int16), np.dtype(np.float32)}
    np.testing.assert_array_equal(np.stack([p for _, p in sorted(series.modality_planes(), key=lambda kp: kp[0])]),
                                  series.read_volume())


@pytest.mark.parametrize("signed, intercept, low, high", [
    (False, -40000, 33000, 60000),  # stored above int16, the sum back within it
    (True, 30000, -32768, 2700),    # the sum near int16's top
    (True, -1024, -2000, 3000),
])
def test_whole_number_rescales_of_16_bit_values_give_pydicoms_values(series_copy, signed, intercept, low, high):
    """A slope of 1 is applied to 16-bit stored values in 16-bit arithmetic modulo 2**16, which
    equals the sum wherever the sum fits int16 (checked first): pydicom's values here too."""
    rng = np.random.default_rng(int(signed))
    for path in sorted(series_copy.iterdir())[:3]:
        ds = pydicom.dcmread(path)
        values = rng.integers(low, high, (ds.Rows, ds.Columns), endpoint=True)
        values[0, :2] = low, high
        ds.PixelRepresentation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = int(signed), 16, 16, 15
        ds.PixelData = values.astype(np.int16 if signed else np.uint16).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
        ds.save_as(path)
    series = load_series(series_copy)
    np.testing.assert_array_equal(series.read_int16_volume(), pydicom_volume(series))
    assert_planes_are_the_volume(series, np.int16)


def test_implicit_vr_files_are_read_at_their_offset_too(series_copy):
    for path in series_copy.iterdir():
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=True)
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    series = load_series(series_copy)
    assert all(native_pixel_data(p, h) is not None for p, h in zip(series.files, series.datasets))
    np.testing.assert_array_equal(series.read_int16_volume(), pydicom_volume(series))


def test_files_changed_after_loading_are_read_by_pydicom(series_copy):
    series = load_series(series_copy)
    changed = series.files[1]
    ds = pydicom.dcmread(changed)
    ds.PixelData = (ds.pixel_array + 7).astype(ds.pixel_array.dtype).tobytes()
    ds.save_as(changed)
    os.utime(changed, (1, 1))  # another modification time than when loaded
    assert native_pixel_data(changed, series.datasets[1]) is None
    np.testing.assert_array_equal(series.read_int16_volume(), pydicom_volume(series))


@pytest.mark.parametrize("syntax", [RLELossless, ExplicitVRBigEndian])
def test_compressed_and_big_endian_files_are_read_by_pydicom(series_copy, syntax):
    for path in series_copy.iterdir():
        ds = pydicom.dcmread(path)
        if syntax == RLELossless:
            ds.compress(RLELossless)
            ds.save_as(path, enforce_file_format=True)
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
            pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    series = load_series(series_copy)
    assert all(native_pixel_data(p, h) is None for p, h in zip(series.files, series.datasets))
    np.testing.assert_array_equal(series.read_int16_volume(), pydicom_volume(series))
    assert_planes_are_the_volume(series, np.int16)


def test_a_file_cut_after_loading_is_an_error_naming_it(series_copy):
    series = load_series(series_copy)
    cut = series.files[2]
    data = open(cut, "rb").read()
    with open(cut, "wb") as stream:
        stream.write(data[:len(data) - 1000])
    os.utime(cut, (series.datasets[2].timestamp,) * 2)  # even with the same modification time
    assert native_pixel_data(cut, series.datasets[2]) is None
    with pytest.raises(SeriesError, match=os.path.basename(cut)):
        series.read_int16_volume()


def test_a_transfer_syntax_of_another_vr_is_read_by_pydicom(series_copy):
    """Fuzz run M (2026-12-05): a file meta Transfer Syntax UID whose VR was changed to LO is a str,
    not a pydicom UID; the offset read now takes it as one (it was an AttributeError)."""
    from pydicom.dataelem import DataElement

    series = load_series(series_copy)
    header = series.datasets[0]
    syntax = str(header.file_meta.TransferSyntaxUID)
    header.file_meta[0x00020010] = DataElement(0x00020010, "LO", syntax)
    assert type(header.file_meta.TransferSyntaxUID) is str
    assert native_pixel_data(series.files[0], header) == pydicom.dcmread(series.files[0]).PixelData
    np.testing.assert_array_equal(series.read_volume(), pydicom_volume(series))
