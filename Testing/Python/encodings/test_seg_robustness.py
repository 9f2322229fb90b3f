"""SEG import on damaged geometry: one InputError naming the file, never gigabytes of empty slices
(the long fuzz run: Image Orientation values made a grid of 4,294,967,296 slices, a MemoryError)."""
from __future__ import annotations

import pydicom
import pytest

from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.encodings.seg.decode import MAX_OWN_GRID_VOXELS


@pytest.fixture(scope="module")
def seg_file(sample_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg-robust") / "seg.dcm"
    api.export_seg(sample_case.series_dir, sample_case.segmentation_path, out)
    return out


def _shared_orientation(ds):
    return ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]


@pytest.mark.parametrize("orientation", [[4294967295, 0, 0, 0, 1, 0], [2, 0, 0, 0, 0.5, 0], [1, 0, 0, 0.6, 0.8, 0],
                                         [1, 0, 0, 1, 0, 0]])
def test_orientation_that_is_not_two_orthogonal_unit_vectors(seg_file, tmp_path, orientation):
    ds = pydicom.dcmread(seg_file)
    _shared_orientation(ds).ImageOrientationPatient = orientation
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    with pytest.raises(InputError, match=r"broken\.dcm: Image Orientation \(Patient\) .* is not two orthogonal unit"):
        api.import_seg(broken)


def test_positions_a_thousandth_apart_do_not_make_a_huge_grid(seg_file, tmp_path):
    """One frame 0.001 mm off its slice: the grid's step would be 0.001 mm (every slice a
    multiple of it), tens of thousands of empty slices."""
    ds = pydicom.dcmread(seg_file)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):  # else the step is taken from them
        if keyword in measures:
            delattr(measures, keyword)
    frames = ds.PerFrameFunctionalGroupsSequence
    rows, columns = ds.Rows, ds.Columns
    position = frames[0].PlanePositionSequence[0]
    position.ImagePositionPatient = [position.ImagePositionPatient[0], position.ImagePositionPatient[1],
                                     float(position.ImagePositionPatient[2]) + 0.001]
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    z = sorted({round(float(f.PlanePositionSequence[0].ImagePositionPatient[2]), 3) for f in frames})
    assert (z[-1] - z[0]) / 0.001 * rows * columns > MAX_OWN_GRID_VOXELS  # what the grid would have been
    with pytest.raises(InputError, match=r"broken\.dcm: the SEG's \d+ frame positions, 0\.001 mm apart"):
        api.import_seg(broken)
    api.import_seg(seg_file)  # the undamaged file still reads
