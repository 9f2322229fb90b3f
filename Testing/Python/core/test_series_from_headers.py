"""A series built from headers that were already read (``read_headers`` + ``series_from_headers``,
as ``export-ml`` does after sorting its inputs) is the series ``load_series`` reads from the folder:
the same files, order, slices, geometry and passed-over files; and export-ml no longer reads the
headers a second time."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.series import load_series, read_headers, series_from_headers
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array


@pytest.fixture()
def folder(sample_case, tmp_path):
    """The sample series, a second series in a subfolder, a SEG, and a file that is not DICOM."""
    root = tmp_path / "inputs"
    shutil.copytree(sample_case.series_dir, root / "series")
    series = load_series(root / "series")
    api.export_seg(series, sample_case.segmentation_path, root / "series" / "derived" / "seg.dcm")
    (root / "series" / "notes.txt").write_text("not dicom")
    geometry = VolumeGeometry.from_origin_spacing_directions((4, 16, 20), (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), np.eye(3))
    dicomize_array(np.zeros((4, 16, 20), np.int16), geometry, root / "series" / "other", patient_name="Other^S")
    return root


def headers_of(root):
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    return {os.path.abspath(p): ds for p, ds in read_headers(paths)}


def test_same_series_as_load_series(folder):
    headers = headers_of(folder)
    assert isinstance(headers[os.path.abspath(folder / "series" / "notes.txt")], Exception)
    for uid in {str(ds.SeriesInstanceUID) for ds in headers.values()
                if not isinstance(ds, Exception) and ds.Modality != "SEG"}:
        loaded = load_series(folder / "series", uid)
        built = series_from_headers(folder / "series", uid, headers)
        assert built is not None
        assert built.files == loaded.files and built.slices == loaded.slices
        assert built.skipped == loaded.skipped and len(built.skipped) >= 2
        assert built.geometry.shape == loaded.geometry.shape
        assert np.array_equal(built.geometry.ijk_to_lps, loaded.geometry.ijk_to_lps)
        assert (built.folder, built.modality, built.description) == (loaded.folder, loaded.modality, loaded.description)
        assert [ds.SOPInstanceUID for ds in built.datasets] == [ds.SOPInstanceUID for ds in loaded.datasets]
        assert np.array_equal(built.read_volume(), loaded.read_volume())


def test_none_when_a_file_was_not_read(folder):
    headers = headers_of(folder)
    uid = str(load_series(folder / "series" / "other").series_instance_uid)
    del headers[os.path.abspath(folder / "series" / "notes.txt")]
    assert series_from_headers(folder / "series", uid, headers) is None
    assert series_from_headers(folder / "missing", uid, headers) is None


def test_export_ml_reads_each_header_once(folder, tmp_path, monkeypatch):
    import DicomAnnotEmbedLib.files.ml_export as ml_export

    with monkeypatch.context() as patch:  # as before: every series read again by load_series
        patch.setattr(ml_export, "series_from_headers", lambda *a, **k: None)
        expected = api.export_ml([folder / "series"], tmp_path / "before")
    monkeypatch.setattr(ml_export, "load_series", lambda *a, **k: pytest.fail("the series was read again"))
    result = api.export_ml([folder / "series"], tmp_path / "now")
    assert [c.kind for c in result.cases] == ["seg"]
    assert [c.series.files for c in result.cases] == [c.series.files for c in expected.cases]
    assert result.skipped == expected.skipped
    case = result.cases[0].name
    for name in ("labels.nii.gz", "image.nii.gz", "labels.json"):
        assert (tmp_path / "now" / case / name).read_bytes() == (tmp_path / "before" / case / name).read_bytes()


def _rescaled_copy(source, target, slope, intercept, unsigned=False, offset=0):
    """The series with another rescale (and stored values made unsigned, shifted by ``offset``)."""
    import pydicom

    shutil.copytree(source, target)
    for path in sorted(target.iterdir()):
        ds = pydicom.dcmread(path)
        if unsigned:
            values = ds.pixel_array.astype(np.int32) + offset
            ds.PixelRepresentation = 0
            ds.PixelData = values.astype(np.uint16).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.save_as(path)
    return load_series(target)


@pytest.mark.parametrize("slope, intercept, unsigned, offset, whole", [
    (1, 0, False, 0, True),              # the sample as it is: signed, no rescale
    (1, -1024, True, 1024, True),        # the usual CT: unsigned stored values, intercept -1024
    (2, -7, False, 0, True),             # whole slope
    (1, 32500, False, 0, False),         # beyond int16
    (0.5, 0, False, 0, False),           # not whole numbers
    (1, 0.25, False, 0, False),
])
def test_int16_volume_equals_the_float_volume_cast(sample_case, tmp_path, slope, intercept, unsigned, offset, whole):
    series = _rescaled_copy(sample_case.series_dir, tmp_path / "s", slope, intercept, unsigned, offset)
    volume = series.read_volume()
    fast = series.read_int16_volume()
    with np.errstate(invalid="ignore"):
        cast = volume.astype(np.int16)
    if whole:  # export-ml's test before: every value a whole number within int16
        assert np.array_equal(cast, volume)
        assert fast is not None and fast.dtype == np.int16 and np.array_equal(fast, volume)
    else:
        assert fast is None
