"""dicomize: a non-DICOM volume written as a DICOM series, read back with pydicom."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from DicomAnnotEmbedLib.dicom.dicomize import choose_pixel_encoding, dicomize_array, dicomize_file
from DicomAnnotEmbedLib.core.errors import GeometryError, InputError, OutputError
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry

CT_CHEST = Path(__file__).resolve().parents[4] / "shared" / "interop" / "slicer" / "CTChest4.nrrd"
GEOMETRY_TOLERANCE_MM = 1e-4


# --- helpers ----------------------------------------------------------------------

def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A proper rotation (determinant +1): columns are the i, j, k directions."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique_geometry(shape=(6, 30, 40)) -> VolumeGeometry:
    return VolumeGeometry.from_origin_spacing_directions(
        shape, (-120.25, 33.125, -415.5), (0.7, 0.85, 2.5), rotation(0.3, -0.2, 0.5))


def read_series(paths, order: str = "normal"):
    """Geometry and real-world values of a written series, rebuilt from the files alone.

    ``order``: "normal" sorts the slices along the slice normal (what readers do),
    "instance" by InstanceNumber.
    """
    datasets = [pydicom.dcmread(p) for p in paths]
    row_dir = np.array(datasets[0].ImageOrientationPatient[:3], dtype=float)
    col_dir = np.array(datasets[0].ImageOrientationPatient[3:], dtype=float)
    normal = np.cross(row_dir, col_dir)
    if order == "normal":
        datasets.sort(key=lambda ds: float(np.dot(normal, np.array(ds.ImagePositionPatient, float))))
    else:
        datasets.sort(key=lambda ds: int(ds.InstanceNumber))
    positions = np.array([ds.ImagePositionPatient for ds in datasets], dtype=float)
    steps = np.diff(positions, axis=0)
    if len(datasets) > 1:
        assert np.allclose(steps, steps[0], atol=GEOMETRY_TOLERANCE_MM), "slices not evenly spaced"
        k_step = steps[0]
    else:
        k_step = normal * float(datasets[0].SpacingBetweenSlices)
    row_spacing, col_spacing = (float(v) for v in datasets[0].PixelSpacing)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing  # i: along a row, one column further
    affine[:3, 1] = col_dir * row_spacing  # j: down a column, one row further
    affine[:3, 2] = k_step
    affine[:3, 3] = positions[0]
    values = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                       if "RescaleSlope" in ds else ds.pixel_array.astype(float)
                       for ds in datasets])
    shape = (len(datasets), int(datasets[0].Rows), int(datasets[0].Columns))
    return VolumeGeometry(shape, affine), values, datasets


def assert_same_geometry(actual: VolumeGeometry, expected: VolumeGeometry) -> None:
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.ijk_to_lps, expected.ijk_to_lps, atol=GEOMETRY_TOLERANCE_MM)


def dciodvfy_lines(path) -> list:
    """dciodvfy's report (stdout and stderr) on ``path``; skipped locally without the tool,
    a failure in CI."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dciodvfy (Debian package dicom3tools) is required in CI")
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    return (result.stdout + result.stderr).splitlines()


@pytest.fixture
def int_volume() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(-1024, 3000, size=(6, 30, 40)).astype(np.int16)


# --- geometry and pixels ----------------------------------------------------------

def test_oblique_int16_round_trip(tmp_path, int_volume):
    geometry = oblique_geometry()
    calls = []
    paths = dicomize_array(int_volume, geometry, tmp_path / "series", patient_name="Test^Oblique",
                           patient_id="P1", series_description="oblique",
                           progress=lambda done, total, message: calls.append((done, total)))

    assert len(paths) == 6 and all(Path(p).is_file() for p in paths)
    assert sorted(os.listdir(tmp_path / "series")) == sorted(Path(p).name for p in paths)
    assert calls[-1] == (6, 6)
    rebuilt, values, datasets = read_series(paths)
    assert_same_geometry(rebuilt, geometry)
    np.testing.assert_array_equal(values, int_volume)

    first = datasets[0]
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert list(first.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert first.Manufacturer == "DicomAnnotEmbed"
    assert first.PixelRepresentation == 1 and first.BitsAllocated == 16
    assert float(first.RescaleSlope) == 1.0 and float(first.RescaleIntercept) == 0.0
    assert float(first.SliceThickness) == pytest.approx(2.5)
    assert float(first.WindowWidth) >= 1.0
    assert [int(ds.InstanceNumber) for ds in datasets] == [1, 2, 3, 4, 5, 6]
    for attribute in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert len({str(ds.get(attribute)) for ds in datasets}) == 1, attribute
    assert len({ds.SOPInstanceUID for ds in datasets}) == 6


def test_left_handed_grid_keeps_slice_order(tmp_path, int_volume):
    directions = rotation(0.1, 0.2, 0.3)
    directions[:, 2] *= -1  # k runs against the row x column normal
    geometry = VolumeGeometry.from_origin_spacing_directions(int_volume.shape, (1, 2, 3),
                                                             (1.0, 1.5, 3.0), directions)
    paths = dicomize_array(int_volume, geometry, tmp_path / "series")
    rebuilt, values, datasets = read_series(paths, order="instance")
    assert_same_geometry(rebuilt, geometry)
    np.testing.assert_array_equal(values, int_volume)
    assert float(datasets[0].SpacingBetweenSlices) == pytest.approx(3.0)


@pytest.mark.parametrize("dtype, low, high", [
    (np.uint8, 0, 255), (np.uint16, 0, 65535), (np.int32, -40000, 20000),
    (np.int32, 100000, 160000), (np.float64, -1000, 2000)])
def test_integer_values_are_exact(tmp_path, dtype, low, high):
    rng = np.random.default_rng(1)
    volume = rng.integers(low, high, size=(3, 8, 9), endpoint=True).astype(dtype)
    volume.flat[0], volume.flat[1] = low, high
    paths = dicomize_array(volume, oblique_geometry(volume.shape), tmp_path / "series")
    _, values, _ = read_series(paths)
    np.testing.assert_array_equal(values, volume.astype(np.float64))
    assert choose_pixel_encoding(volume).exact


def test_float_volume_within_stated_precision(tmp_path):
    rng = np.random.default_rng(3)
    volume = rng.uniform(-3.7, 12.2, size=(4, 16, 20)).astype(np.float32)
    encoding = choose_pixel_encoding(volume)
    value_range = float(volume.max()) - float(volume.min())
    assert not encoding.exact
    assert encoding.max_error <= value_range / 131064 * (1 + 1e-6)

    paths = dicomize_array(volume, oblique_geometry(volume.shape), tmp_path / "series", modality="MR")
    _, values, datasets = read_series(paths)
    assert np.max(np.abs(values - volume)) <= encoding.max_error
    assert datasets[0].SOPClassUID == pydicom.uid.MRImageStorage
    assert "max error" in datasets[0].DerivationDescription


def test_wide_integer_range_is_quantised(tmp_path):
    volume = np.array([0, 10_000_000, 1234567, 7], dtype=np.int64).reshape(1, 2, 2)
    encoding = choose_pixel_encoding(volume)
    assert not encoding.exact
    paths = dicomize_array(volume, oblique_geometry(volume.shape), tmp_path / "series")
    _, values, _ = read_series(paths)
    assert np.max(np.abs(values - volume)) <= encoding.max_error


# --- DICOM conformance ------------------------------------------------------------

@pytest.mark.parametrize("modality, dtype", [("CT", np.int16), ("MR", np.float32), ("OT", np.uint8)])
def test_dciodvfy_reports_no_error(tmp_path, int_volume, modality, dtype):
    volumes = {np.int16: int_volume,  # exact int16
               np.float32: int_volume.astype(np.float32) / 3,  # quantised, with rescale
               np.uint8: (int_volume % 256).astype(np.uint8)}  # 8-bit secondary capture
    paths = dicomize_array(volumes[dtype], oblique_geometry(), tmp_path / "series",
                           modality=modality, patient_name="Test^Valid")
    lines = dciodvfy_lines(paths[0])
    errors = [line for line in lines if "Error" in line]
    assert not errors, "\n".join(lines)


# --- a real NRRD --------------------------------------------------------------------

def test_ct_chest_nrrd(tmp_path):
    if not CT_CHEST.is_file():
        pytest.skip(f"{CT_CHEST} is not available")
    image = sitk.ReadImage(str(CT_CHEST))
    expected = VolumeGeometry.from_sitk(image)
    paths = dicomize_file(CT_CHEST, tmp_path / "ct")

    assert len(paths) == 34
    rebuilt, values, datasets = read_series(paths)
    assert_same_geometry(rebuilt, expected)
    np.testing.assert_array_equal(values, sitk.GetArrayFromImage(image))
    assert datasets[0].SeriesDescription == "CTChest4"
    assert not [line for line in dciodvfy_lines(paths[0]) if "Error" in line]


# --- bad input and output -----------------------------------------------------------

def test_non_image_file_is_input_error(tmp_path):
    text = tmp_path / "notes.nrrd"
    text.write_text("this is not an image\n")
    with pytest.raises(InputError) as caught:
        dicomize_file(text, tmp_path / "out")
    assert str(text) in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        dicomize_file(tmp_path / "absent.nii.gz", tmp_path / "out")


def test_vector_image_is_input_error(tmp_path):
    path = tmp_path / "rgb.nrrd"
    sitk.WriteImage(sitk.Image([5, 4, 3], sitk.sitkVectorUInt8, 3), str(path))
    with pytest.raises(InputError) as caught:
        dicomize_file(path, tmp_path / "out")
    assert str(path) in str(caught.value) and "3 values per voxel" in str(caught.value)


def test_4d_image_is_input_error(tmp_path):
    path = tmp_path / "time.nii.gz"
    sitk.WriteImage(sitk.Image([5, 4, 3, 2], sitk.sitkInt16), str(path))
    with pytest.raises(InputError) as caught:
        dicomize_file(path, tmp_path / "out")
    assert str(path) in str(caught.value) and "4D" in str(caught.value)


def test_nifti_file_round_trip(tmp_path, int_volume):
    geometry = oblique_geometry()
    path = tmp_path / "volume.nii.gz"
    sitk.WriteImage(geometry.to_sitk_image(int_volume), str(path))
    paths = dicomize_file(path, tmp_path / "out", modality="MR", series_number=7)
    rebuilt, values, datasets = read_series(paths)
    assert_same_geometry(rebuilt, VolumeGeometry.from_sitk(sitk.ReadImage(str(path))))
    np.testing.assert_array_equal(values, int_volume)
    assert datasets[0].SeriesDescription == "volume" and int(datasets[0].SeriesNumber) == 7


def test_non_empty_out_dir_needs_force(tmp_path, int_volume):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    with pytest.raises(OutputError, match="not empty"):
        dicomize_array(int_volume, oblique_geometry(), out)
    assert os.listdir(out) == ["keep.txt"]

    paths = dicomize_array(int_volume, oblique_geometry(), out, force=True)
    assert len(paths) == 6 and (out / "keep.txt").read_text() == "user file"
    assert not [name for name in os.listdir(out) if name.startswith(".")], "temporary files left"


def test_unwritable_out_dir_is_output_error(tmp_path, int_volume):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OutputError) as caught:
        dicomize_array(int_volume, oblique_geometry(), blocker / "series")
    assert str(blocker / "series") in str(caught.value)
    with pytest.raises(OutputError, match="not a folder"):
        dicomize_array(int_volume, oblique_geometry(), blocker)


def test_geometry_must_match_and_be_describable(tmp_path, int_volume):
    with pytest.raises(GeometryError, match="differs"):
        dicomize_array(int_volume, oblique_geometry((5, 30, 40)), tmp_path / "a")
    sheared = np.eye(4)
    sheared[:3, 1] = [0.5, 1.0, 0.0]  # columns not perpendicular to rows
    with pytest.raises(GeometryError, match="orthogonal"):
        dicomize_array(int_volume, VolumeGeometry(int_volume.shape, sheared), tmp_path / "b")
    with pytest.raises(InputError, match="NaN"):
        dicomize_array(np.full((6, 30, 40), np.nan), oblique_geometry(), tmp_path / "c")
    with pytest.raises(InputError, match="modality"):
        dicomize_array(int_volume, oblique_geometry(), tmp_path / "d", modality="US")
