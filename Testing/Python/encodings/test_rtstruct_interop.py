"""RT Structure Sets across tools: plastimatch, rt-utils and dicompyler-core read ours, and ours
reads theirs. Where a tool's raster rule differs from ours, the test pins how and by how much."""
from __future__ import annotations

import importlib
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from conftest import IN_CI, require_tool
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Segment, Segmentation
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
from DicomAnnotEmbedLib.encodings.rtstruct import export_rtstruct, import_rtstruct


def require_module(name: str):
    """A Python package the test reads with; skipped on a developer machine without it, a failure in CI."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"{name} cannot be imported ({exc}); pyproject's test extra installs it")
        pytest.skip(f"{name} not installed")


@pytest.fixture(scope="module")
def sample(sample_case):
    series = load_series(sample_case.series_dir)
    return series, api.load_annotations(series, sample_case.segmentation_path).segmentation


@pytest.fixture(scope="module")
def holes(tmp_path_factory):
    """An axial series and three segments with holes, islands, corner-touching pixels and overlap
    Square pixels on square slices: rt-utils 1.2.7 swaps rows and columns (mask size, pixel
    spacing) and misplaces everything on other images (see test_rt_utils_swaps_rows_and_columns)."""
    folder = tmp_path_factory.mktemp("holes")
    shape = (5, 40, 40)
    geometry = VolumeGeometry.from_origin_spacing_directions(shape, (-20.0, -15.0, 30.0), (0.7, 0.7, 2.0), np.eye(3))
    dicomize_array((np.arange(np.prod(shape)).reshape(shape) % 100).astype(np.int16), geometry, folder / "series")
    rng = np.random.default_rng(3)
    masks = []
    for n in range(3):
        box = np.zeros(shape, bool)
        box[n:n + 3, 4:30, 6 + n:38] = True
        masks.append(ndimage.binary_opening(box & (rng.random(shape) < 0.75), np.ones((1, 2, 2))) | (
            box & (rng.random(shape) < 0.1)))
    segments = [Segment(id=f"s{n}", name=f"Blob{n}", color=(0.2, 0.3 * n, 0.8)) for n in range(3)]
    series = load_series(folder / "series")
    return series, Segmentation.from_masks(series.geometry, masks, segments), folder


def _plastimatch_masks(rtstruct, series_dir, out_dir) -> dict:
    tool = require_tool("plastimatch")
    run = subprocess.run([tool, "convert", "--input", str(rtstruct), "--referenced-ct", str(series_dir),
                          "--output-prefix", str(out_dir), "--prefix-format", "nrrd"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    masks = {}
    for path in out_dir.glob("*.nrrd"):
        image = sitk.ReadImage(str(path))
        masks[path.stem] = (VolumeGeometry.from_sitk(image), sitk.GetArrayFromImage(image).astype(bool))
    return masks


@pytest.mark.parametrize("case", ["sample", "holes"])
def test_plastimatch_rasterises_ours_exactly(case, sample, sample_case, holes, tmp_path):
    series, segmentation = sample if case == "sample" else holes[:2]
    series_dir = sample_case.series_dir if case == "sample" else holes[2] / "series"
    written = export_rtstruct(series, segmentation, tmp_path / "rt.dcm").path
    masks = _plastimatch_masks(written, series_dir, tmp_path / "plastimatch")
    for segment in segmentation.segments:
        geometry, mask = masks[segment.name]
        assert geometry.same_as(series.geometry)
        np.testing.assert_array_equal(mask, segmentation.mask(segment), err_msg=segment.name)


@pytest.mark.parametrize("case", ["sample", "holes"])
def test_plastimatch_written_structure_set_imports_exactly(case, sample, sample_case, holes, tmp_path):
    tool = require_tool("plastimatch")
    series, segmentation = sample if case == "sample" else holes[:2]
    series_dir = sample_case.series_dir if case == "sample" else holes[2] / "series"
    (tmp_path / "masks").mkdir()
    for segment in segmentation.segments:
        image = series.geometry.to_sitk_image(segmentation.mask(segment).astype(np.uint8))
        sitk.WriteImage(image, str(tmp_path / "masks" / f"{segment.name.replace(' ', '_')}.nrrd"))
    run = subprocess.run([tool, "convert", "--input-prefix", str(tmp_path / "masks"), "--referenced-ct",
                          str(series_dir), "--output-dicom", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    rtstruct = next(p for p in (tmp_path / "out").glob("*.dcm")
                    if pydicom.dcmread(p, stop_before_pixels=True).Modality == "RTSTRUCT")
    imported = import_rtstruct(rtstruct, series)
    assert imported.skipped == []
    for segment in segmentation.segments:
        back = imported.segmentation.segment(segment.name.replace(" ", "_"))
        np.testing.assert_array_equal(imported.segmentation.mask(back), segmentation.mask(segment),
                                      err_msg=segment.name)


def test_rt_utils_reads_ours_one_pixel_wider(sample, sample_case, tmp_path):
    """rt-utils rounds our pixel-edge corners to whole pixels and fills with the outline included:
    its masks hold ours plus voxels just outside it (Liver: 15,740 voxels + 1,005)."""
    rt_utils = require_module("rt_utils")
    series, segmentation = sample
    written = export_rtstruct(series, segmentation, tmp_path / "rt.dcm").path
    structure = rt_utils.RTStructBuilder.create_from(str(sample_case.series_dir), str(written))
    assert structure.get_roi_names() == [s.name for s in segmentation.segments]
    extra = {}
    for segment in segmentation.segments:
        theirs = np.transpose(structure.get_roi_mask_by_name(segment.name), (2, 0, 1))
        ours = segmentation.mask(segment)
        assert not (ours & ~theirs).any(), segment.name
        ring = ndimage.binary_dilation(ours, np.ones((1, 3, 3), bool)) & ~ours
        assert not (theirs & ~ours & ~ring).any(), segment.name  # only voxels touching ours in-plane
        extra[segment.name] = int((theirs & ~ours).sum())
    assert extra == {"Liver": 1005, "Tumor": 137, "Right lung": 1643, "Left lung": 1515, "Vertebral column": 1056}


@pytest.mark.parametrize("case", ["sample", "holes"])
def test_rt_utils_written_structure_set_imports_exactly(case, sample, sample_case, holes, tmp_path):
    """rt-utils traces the centres of the boundary pixels: the import counts the pixels its contours
    pass through (boundary_pixels='auto'); without them the outline's right and lower pixels go."""
    rt_utils = require_module("rt_utils")
    series, segmentation = sample if case == "sample" else holes[:2]
    series_dir = sample_case.series_dir if case == "sample" else holes[2] / "series"
    builder = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(series_dir))
    for segment in segmentation.segments:
        builder.add_roi(mask=np.transpose(segmentation.mask(segment), (1, 2, 0)), name=segment.name,
                        color=list(segment.color_rgb8))
    builder.save(str(tmp_path / "rt-utils.dcm"))
    imported = import_rtstruct(tmp_path / "rt-utils.dcm", series)
    strict = import_rtstruct(tmp_path / "rt-utils.dcm", series, boundary_pixels="exclude")
    for segment in segmentation.segments:
        ours = segmentation.mask(segment)
        back = imported.segmentation.segment(segment.name)
        assert back.color_rgb8 == segment.color_rgb8
        np.testing.assert_array_equal(imported.segmentation.mask(back), ours, err_msg=segment.name)
        missing = ours & ~strict.segmentation.mask(segment.name)
        eroded = ndimage.binary_erosion(ours, np.ones((1, 3, 3), bool))
        assert missing.any() and not (missing & eroded).any()  # only outline voxels are lost


def test_dicompyler_reads_ours_exactly(sample, tmp_path, monkeypatch):
    """dicompyler-core reads names, types, colours and contours; its DVH rasteriser (matplotlib's
    point-in-path on each pixel centre, contours of a plane combined by XOR) gives our masks.
    dicompyler-core 0.5.6 still imports pydicom 2's ``read_file``, which pydicom 3 names ``dcmread``:
    the old name is given back before the import (the same function, not a stand-in)."""
    import pydicom.dicomio

    monkeypatch.setattr(pydicom.dicomio, "read_file", pydicom.dcmread, raising=False)
    dicomparser = require_module("dicompylercore.dicomparser")
    dvhcalc = require_module("dicompylercore.dvhcalc")
    series, segmentation = sample
    written = export_rtstruct(series, segmentation, tmp_path / "rt.dcm",
                              options=api.rtstruct.RtStructExportOptions(interpreted_types={"Tumor": "GTV"})).path
    parser = dicomparser.DicomParser(str(written))
    structures = parser.GetStructures()
    assert [s["name"] for s in structures.values()] == [s.name for s in segmentation.segments]
    assert [s["type"] for s in structures.values()] == ["ORGAN", "GTV", "ORGAN", "ORGAN", "ORGAN"]
    assert [tuple(int(c) for c in s["color"]) for s in structures.values()] == \
        [s.color_rgb8 for s in segmentation.segments]
    g = series.geometry  # axial: x along columns, y along rows
    xs = g.origin[0] + np.arange(g.shape[2]) * g.spacing[0]
    ys = g.origin[1] + np.arange(g.shape[1]) * g.spacing[1]
    grid = {"lut": [xs, ys], "x_lut_index": 0}
    centres = np.column_stack([c.ravel() for c in np.meshgrid(xs, ys)])
    zs = g.origin[2] + np.arange(g.shape[0]) * g.spacing[2]
    for number, structure in structures.items():
        mask = np.zeros(g.shape, bool)
        for z, plane in parser.GetStructureCoordinates(number).items():
            k = int(np.argmin(np.abs(zs - float(z))))
            for contour in plane:
                inside = dvhcalc.get_contour_mask(grid, number, centres, np.array(contour["data"])[:, :2])
                mask[k] = np.logical_xor(mask[k], inside)
        np.testing.assert_array_equal(mask, segmentation.mask(structure["name"]), err_msg=structure["name"])


def test_rt_utils_swaps_rows_and_columns(tmp_path):
    """Why the rt-utils tests use square pixels and slices: on a 0.8 x 0.7 mm grid it writes a
    one-pixel mask's contour at the wrong place (column scaled by 0.7 / 0.8), which ours reports."""
    rt_utils = require_module("rt_utils")
    shape = (2, 32, 32)
    geometry = VolumeGeometry.from_origin_spacing_directions(shape, (0.0, 0.0, 0.0), (0.8, 0.7, 2.0), np.eye(3))
    dicomize_array(np.zeros(shape, np.int16), geometry, tmp_path / "series")
    mask = np.zeros(shape, bool)
    mask[0, 10:14, 24:28] = True
    builder = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(tmp_path / "series"))
    builder.add_roi(mask=np.transpose(mask, (1, 2, 0)), name="Square")
    builder.save(str(tmp_path / "rt.dcm"))
    contour = pydicom.dcmread(tmp_path / "rt.dcm").ROIContourSequence[0].ContourSequence[0]
    columns = geometry.lps_to_ijk_points(np.array(contour.ContourData, float).reshape(-1, 3))[:, 0]
    np.testing.assert_allclose(sorted(set(np.round(columns, 3))), [24 * 0.7 / 0.8, 27 * 0.7 / 0.8])


def test_plastimatch_contours_at_the_image_border(tmp_path):
    """Structures that meet the image border: plastimatch's contours there stop at the outermost
    pixel centres; the import reads its file voxel for voxel as plastimatch itself does (which is
    not quite the mask plastimatch was given). In the benchmark's case C, where plastimatch's own
    reading of its file differs from the labels in 24,162 voxels, ours gives the labels exactly."""
    tool = require_tool("plastimatch")
    shape = (3, 40, 40)
    geometry = VolumeGeometry.from_origin_spacing_directions(shape, (-20.0, -15.0, 30.0), (0.7, 0.7, 2.0), np.eye(3))
    dicomize_array(np.zeros(shape, np.int16), geometry, tmp_path / "series")
    series = load_series(tmp_path / "series")
    _, j, i = np.indices(shape)
    mask = ((j - 39) ** 2 + (i - 39) ** 2 < 15 ** 2) | (j ** 2 + (i - 10) ** 2 < 8 ** 2) | ((i > 20) & (j > 2) & (j < 9))
    mask[0] = False
    (tmp_path / "masks").mkdir()
    sitk.WriteImage(geometry.to_sitk_image(mask.astype(np.uint8)), str(tmp_path / "masks" / "Edge.nrrd"))
    run = subprocess.run([tool, "convert", "--input-prefix", str(tmp_path / "masks"), "--referenced-ct",
                          str(tmp_path / "series"), "--output-dicom", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    rtstruct = next(p for p in (tmp_path / "out").glob("*.dcm")
                    if pydicom.dcmread(p, stop_before_pixels=True).Modality == "RTSTRUCT")
    theirs = _plastimatch_masks(rtstruct, tmp_path / "series", tmp_path / "back")["Edge"][1]
    ours = import_rtstruct(rtstruct, series).segmentation.mask("Edge")
    np.testing.assert_array_equal(ours, theirs)
    assert (mask & ~theirs).any()  # plastimatch's own export and reading lose border voxels here
