"""RT Structure Set, both ways: exact masks through the contours, markups, oblique series, bad
input; every file also checked by dciodvfy (dicom3tools) and read back by pydicom directly."""
from __future__ import annotations

import logging
import subprocess

import numpy as np
import pydicom
import pytest

from conftest import rotation, tree_hashes, require_tool
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.cli import main
from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Code, Markup, Segment, Segmentation, Terminology
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
from DicomAnnotEmbedLib.encodings.rtstruct import (RtStructExportOptions, export_rtstruct, import_rtstruct)
from DicomAnnotEmbedLib.encodings.rtstruct.contours import fill_slices, trace_slices
from DicomAnnotEmbedLib.files.segio import load_segmentation

RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"


def dciodvfy_errors(path) -> list:
    tool = require_tool("dciodvfy")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def sample(sample_case):
    series = load_series(sample_case.series_dir)
    return series, api.load_annotations(series, sample_case.segmentation_path, [sample_case.markups_path])


def make_series(folder, shape=(6, 40, 48), directions=np.eye(3), spacing=(0.8, 0.7, 2.0), origin=(-20.0, -15.0, 30.0)):
    geometry = VolumeGeometry.from_origin_spacing_directions(shape, origin, spacing, directions)
    volume = (np.arange(np.prod(shape)).reshape(shape) % 200).astype(np.int16)
    dicomize_array(volume, geometry, folder, patient_name="Rt^Test")
    return load_series(folder)


def random_masks(shape, count, seed):
    """Blobby masks with holes, islands and pixels touching only at corners, some overlapping."""
    rng = np.random.default_rng(seed)
    masks = []
    for n in range(count):
        noise = rng.random(shape) < 0.5
        blob = np.zeros(shape, bool)
        k0, k1 = sorted(rng.integers(0, shape[0], 2))
        blob[k0:k1 + 1, 3 + n:shape[1] - 4, 5:shape[2] - 3 - n] = True
        masks.append(blob & noise if n % 2 else blob & ~(noise & (rng.random(shape) < 0.3)))
    return masks


# --- the contours themselves -----------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_traced_contours_fill_back_to_the_mask(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((4, 23, 31)) < rng.uniform(0.2, 0.8)
    mask[1] = False  # an empty slice
    loops = trace_slices(mask)
    assert {k for k, _ in loops} == {0, 2, 3}
    for _, points in loops:  # along pixel edges: corners at half-integers, axis-parallel sides
        assert np.all(np.mod(points, 1) == 0.5)
        sides = np.roll(points, -1, axis=0) - points
        assert np.all((sides[:, 0] == 0) != (sides[:, 1] == 0))
    filled = fill_slices(mask.shape[1:], loops)
    back = np.zeros_like(mask)
    for k, plane in filled.items():
        back[k] = plane
    np.testing.assert_array_equal(back, mask)


def test_a_hole_and_an_island_inside_it():
    mask = np.zeros((1, 9, 9), bool)
    mask[0, 1:8, 1:8] = True
    mask[0, 2:7, 2:7] = False
    mask[0, 4, 4] = True
    loops = trace_slices(mask)
    assert sorted(len(p) for _, p in loops) == [4, 4, 4]  # straight runs keep only their ends
    np.testing.assert_array_equal(fill_slices((9, 9), loops)[0], mask[0])


# --- export and import ------------------------------------------------------------------------

def test_round_trip_on_the_sample(sample, sample_case, tmp_path, caplog):
    series, annotations = sample
    before = tree_hashes(sample_case.folder)
    options = RtStructExportOptions(interpreted_types={"Tumor": "GTV"})
    with caplog.at_level(logging.WARNING):
        result = export_rtstruct(series, annotations.segmentation, tmp_path / "rt.dcm", markups=annotations.markups,
                                 options=options)
    assert tree_hashes(sample_case.folder) == before
    assert "Tumor box" in result.skipped and "roi has no contour form" in caplog.text
    assert dciodvfy_errors(result.path) == []

    ds = pydicom.dcmread(result.path)
    assert ds.SOPClassUID == RT_STRUCTURE_SET and ds.Modality == "RTSTRUCT"
    assert ds.StudyInstanceUID == series.datasets[0].StudyInstanceUID
    assert ds.FrameOfReferenceUID == series.datasets[0].FrameOfReferenceUID
    referenced = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == series.series_instance_uid
    assert len(referenced.ContourImageSequence) == series.geometry.shape[0]
    names = [roi.ROIName for roi in ds.StructureSetROISequence]
    assert names == [s.name for s in annotations.segmentation.segments] + ["Landmarks", "Tumor diameter",
                                                                          "Left lung outline"]
    types = {names[int(o.ReferencedROINumber) - 1]: o.RTROIInterpretedType for o in ds.RTROIObservationsSequence}
    assert types["Tumor"] == "GTV" and types["Liver"] == "ORGAN" and types["Landmarks"] == "MARKER"
    liver = next(o for o in ds.RTROIObservationsSequence if types and names[int(o.ReferencedROINumber) - 1] == "Liver")
    assert liver.RTROIIdentificationCodeSequence[0].CodeValue == "10200004"
    # every closed contour sits on the plane of the image it references
    positions = {ref.sop_instance_uid: k for k, ref in enumerate(series.slices)}
    geometry = series.geometry
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            if contour.ContourGeometricType != "CLOSED_PLANAR":
                continue
            k = positions[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            points = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
            assert int(contour.NumberOfContourPoints) == len(points)
            np.testing.assert_allclose(geometry.lps_to_ijk_points(points)[:, 2], k, atol=1e-3)

    imported = import_rtstruct(result.path, series)
    assert imported.skipped == []
    back = imported.segmentation
    for segment in annotations.segmentation.segments:
        other = back.segment(segment.name)
        np.testing.assert_array_equal(back.mask(other), annotations.segmentation.mask(segment), err_msg=segment.name)
        assert other.color == pytest.approx(segment.color, abs=0.5 / 255)
        assert other.terminology == segment.terminology
    assert imported.interpreted_types["Tumor"] == "GTV"
    assert back.has_overlap  # the tumour lies inside the liver: two layers
    kinds = {m.name: m for m in imported.markups}
    for markup in annotations.markups:
        if markup.kind in ("roi", "plane"):
            continue
        assert kinds[markup.name].kind == markup.kind
        np.testing.assert_allclose(kinds[markup.name].points_lps, markup.points_lps, atol=1e-3)


@pytest.mark.parametrize("oblique", [False, True], ids=["axial", "oblique"])
def test_holes_islands_overlaps_exact(tmp_path, oblique):
    directions = rotation([1, 0.4, 0.2], 35) if oblique else np.eye(3)
    series = make_series(tmp_path / "series", directions=directions)
    masks = random_masks(series.geometry.shape, 4, seed=7)
    segments = [Segment(id=f"s{n}", name=f"Structure {n}", color=(0.1 * n, 0.5, 0.9)) for n in range(4)]
    segmentation = Segmentation.from_masks(series.geometry, masks, segments)
    assert segmentation.has_overlap
    calls = []
    result = export_rtstruct(series, segmentation, tmp_path / "rt.dcm", progress=lambda *a: calls.append(a))
    assert calls[0] == (0, 4, "Tracing contours") and calls[-1] == (4, 4, "Tracing contours")
    assert dciodvfy_errors(result.path) == []
    ds = pydicom.dcmread(result.path)
    normal = series.geometry.slice_normal
    origins = {ref.sop_instance_uid: np.array(series.datasets[ref.file_index].ImagePositionPatient, float)
               for ref in series.slices}
    for roi in ds.ROIContourSequence:  # points lie in LPS on the referenced slice's plane
        for contour in roi.ContourSequence:
            points = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
            origin = origins[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            assert np.max(np.abs((points - origin) @ normal)) < 2e-3
    calls.clear()
    imported = import_rtstruct(result.path, series, progress=lambda *a: calls.append(a))
    assert calls[-1] == (4, 4, "Filling contours")
    for mask, segment in zip(masks, segments):
        np.testing.assert_array_equal(imported.segmentation.mask(segment.name), mask, err_msg=segment.name)


def test_non_ascii_names_and_markup_kinds(tmp_path):
    series = make_series(tmp_path / "series")
    mask = np.zeros(series.geometry.shape, bool)
    mask[2, 10:20, 10:30] = True
    terminology = Terminology(Code("49755003", "SCT", "Morphologically Altered Structure"),
                              Code("108369006", "SCT", "Neoplasm"))
    segmentation = Segmentation.from_masks(series.geometry, [mask], [Segment("t", "Tumör ß", terminology=terminology)])
    g = series.geometry
    on_slice = g.ijk_to_lps_points(np.array([[5, 5, 3], [20, 8, 3], [30, 25, 3]], float))
    across = g.ijk_to_lps_points(np.array([[5, 5, 1], [20, 8, 2], [30, 25, 4], [9, 30, 5]], float))
    markups = [Markup("point_list", "Points", on_slice), Markup("line", "Line", on_slice[:2]),
               Markup("angle", "Angle", on_slice), Markup("curve", "Curve", across),
               Markup("closed_curve", "Loop", np.vstack([on_slice, on_slice[:1] + [1, 1, 0]]))]
    result = export_rtstruct(series, segmentation, tmp_path / "rt.dcm", markups=markups)
    assert dciodvfy_errors(result.path) == []
    ds = pydicom.dcmread(result.path)
    assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.StructureSetROISequence[0].ROIName == "Tumör ß"
    types = [[c.ContourGeometricType for c in roi.ContourSequence] for roi in ds.ROIContourSequence]
    assert types[1:] == [["POINT"] * 3, ["OPEN_PLANAR"], ["OPEN_PLANAR"], ["OPEN_NONPLANAR"], ["CLOSED_PLANAR"]]
    imported = import_rtstruct(result.path, series)
    assert imported.segmentation.segments[0].name == "Tumör ß"
    assert imported.segmentation.segments[0].terminology == terminology
    assert [(m.kind, m.name) for m in imported.markups] == [(m.kind, m.name) for m in markups]
    for markup, back in zip(markups, imported.markups):
        np.testing.assert_allclose(back.points_lps, markup.points_lps, atol=1e-3)


# --- other writers' features and bad input ---------------------------------------------------

def _edit(path, out, change):
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(out)
    return out


def test_off_slice_and_unknown_contours_are_skipped_with_a_warning(sample, tmp_path, caplog):
    series, annotations = sample
    written = export_rtstruct(series, annotations.segmentation, tmp_path / "rt.dcm").path

    def damage(ds):
        first = ds.ROIContourSequence[0].ContourSequence
        data = np.array(first[0].ContourData, float).reshape(-1, 3)
        data[:, 2] += 0.9  # between slices (2.5 mm apart)
        first[0].ContourData = [f"{v:.3f}" for v in data.ravel()]
        first[1].ContourGeometricType = "MESH"

    damaged = _edit(written, tmp_path / "damaged.dcm", damage)
    with caplog.at_level(logging.WARNING):
        imported = import_rtstruct(damaged, series)
    assert any("Liver" in s and "not on a slice plane" in s and "MESH" in s for s in imported.skipped)
    assert ("ROI 'Liver': 1 contours not on a slice plane of the series (beyond 0.1 mm); "
            "1 contours of unknown geometric type MESH skipped") in caplog.text
    assert imported.segmentation.mask("Tumor").sum() == annotations.segmentation.mask("Tumor").sum()


def test_bad_inputs(sample, sample_case, tmp_path, capsys):
    series, annotations = sample
    with pytest.raises(InputError, match="not an RT Structure Set") as error:
        import_rtstruct(next(sample_case.series_dir.iterdir()), series)
    assert str(sample_case.series_dir) in str(error.value)
    written = export_rtstruct(series, annotations.segmentation, tmp_path / "alone" / "rt.dcm").path
    with pytest.raises(InputError, match=r"not beside the structure set.*--series DIR"):
        import_rtstruct(written, None)

    def move_all(ds):
        for roi in ds.ROIContourSequence:
            for contour in roi.ContourSequence:
                contour.ContourData = [f"{float(v) + 500:.3f}" if n % 3 == 2 else v
                                       for n, v in enumerate(contour.ContourData)]

    far = _edit(written, tmp_path / "far.dcm", move_all)
    with pytest.raises(InputError, match="no contour of the structure set lies on the series"):
        import_rtstruct(far, series)
    with pytest.raises(InputError, match="Interpreted Type 'TUMOUR'"):
        export_rtstruct(series, annotations.segmentation, tmp_path / "x.dcm",
                        options=RtStructExportOptions(interpreted_type="TUMOUR"))
    assert not (tmp_path / "x.dcm").exists()
    assert main(["rtstruct", "import", str(far), "--series", str(sample_case.series_dir),
                 "--out", str(tmp_path / "x.seg.nrrd")]) == 3
    err = capsys.readouterr().err
    assert "far.dcm" in err and "Traceback" not in err


def test_command_line(sample_case, tmp_path, capsys):
    out = tmp_path / "rt.dcm"
    assert main(["rtstruct", "export", "--series", str(sample_case.series_dir), "--segmentation",
                 str(sample_case.segmentation_path), "--markups", str(sample_case.markups_path), "--out", str(out),
                 "--type-of", "Tumor=GTV", "--label", "Case 1"]) == 0
    assert "8 ROIs" in capsys.readouterr().out
    assert main(["rtstruct", "export", "--series", str(sample_case.series_dir), "--segmentation",
                 str(sample_case.segmentation_path), "--out", str(out)]) == 4  # exists, no --force
    assert "--force" in capsys.readouterr().err
    assert main(["rtstruct", "import", str(out), "--series", str(sample_case.series_dir),
                 "--out", str(tmp_path / "back.seg.nrrd"), "--markups-out", str(tmp_path / "back.mrk.json")]) == 0
    assert "5 segments" in capsys.readouterr().out
    back = load_segmentation(tmp_path / "back.seg.nrrd")
    original = load_segmentation(sample_case.segmentation_path)
    series = load_series(sample_case.series_dir)
    original = original.resampled_to(series.geometry)
    for segment in original.segments:
        np.testing.assert_array_equal(back.mask(segment.name), original.mask(segment))
    assert (tmp_path / "back.mrk.json").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["rtstruct", "export", "--series", str(sample_case.series_dir), "--out", str(tmp_path / "y.dcm")])
    assert exit_.value.code == 2 and "--segmentation and/or --markups" in capsys.readouterr().err


def test_multi_valued_roi_number_is_one_error_naming_the_file(tmp_path, sample_case):
    """Found by the fuzzer: a ROI Number with two values was a bare TypeError."""
    import pydicom as _pydicom

    from DicomAnnotEmbedLib import api as _api
    from DicomAnnotEmbedLib.core.errors import InputError as _InputError

    _api.export_rtstruct(sample_case.series_dir, sample_case.segmentation_path, tmp_path / "rt.dcm")
    ds = _pydicom.dcmread(tmp_path / "rt.dcm")
    ds.StructureSetROISequence[0].ROINumber = [1, 2]
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(_InputError, match=r"bad\.dcm: ROINumber is not one whole number"):
        _api.import_rtstruct(tmp_path / "bad.dcm", sample_case.series_dir)
