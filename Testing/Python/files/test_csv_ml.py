"""Annotation tables in (csv import), machine-learning formats out (export-ml): every shape type
through CSV -> DICOM (overlay, SEG, SR) -> NIfTI/NRRD/PNG/CSV against independent rasterisations,
both polygon conventions, the image locators, bad rows with row numbers and exit codes, the
progress bar, other tools' SEG/SR/overlays, and the way back to DICOM. Real files throughout."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO, interop, rotation, run_on_terminal, tree_hashes
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.files.csv_table import read_annotation_table
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.rasterize import ellipse_mask, polygon_mask
from DicomAnnotEmbedLib.files.sample import sample_volume_and_segments
from DicomAnnotEmbedLib.encodings.seg import import_seg
from DicomAnnotEmbedLib.core.series import load_series

EXAMPLE = REPO / "Resources" / "Examples" / "annotations_example.csv"
#: Stated tolerance for the pixel count of a rasterised circle / ellipse against pi r^2 (pi a b):
#: the lattice-point count of a disc of radius r >= 10 px differs from its area by less than 2 %.
AREA_TOLERANCE = 0.02

HEADER = ["finding", "label", "shape", "sop_instance_uid", "series_instance_uid", "slice_position", "image_z",
          "slice_index", "space", "coordinates", "boundary", "inclusion", "malignancy", "attribute:Comment"]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def write_table(path: Path, rows, header=HEADER, preamble: str = "") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(column, "") for column in header] if isinstance(row, dict) else row)
    path.write_text(preamble + buffer.getvalue(), encoding="utf-8")
    return path


def pixels(*points) -> str:
    return "; ".join(f"{x:g} {y:g}" for x, y in points)


def disc(shape, center, radius):
    rows, cols = np.indices(shape)
    return (cols - center[0]) ** 2 + (rows - center[1]) ** 2 <= radius ** 2 + 1e-9


def diamond(shape, center, radius):
    rows, cols = np.indices(shape)
    return np.abs(cols - center[0]) + np.abs(rows - center[1]) <= radius


@pytest.fixture(scope="module")
def series(sample_case):
    return load_series(sample_case.series_dir)


def every_shape_rows(series):
    """One finding per shape (and per image locator), each on its own slices, with what it must give:
    {finding: {slice k: expected (J, I) mask}} computed here, independently of the package."""
    shape2d = series.geometry.shape[1:]
    to_lps = series.geometry.ijk_to_lps_points
    uid = series.slices[5].sop_instance_uid
    position = float(to_lps([[0, 0, 8]])[0] @ series.geometry.slice_normal)
    z10 = float(to_lps([[0, 0, 10]])[0, 2])
    rect = np.zeros(shape2d, bool)
    rect[20:35, 10:30] = True   # corners (10, 20) and (29, 34): 20 x 15 = 300 pixels
    rect_lps = to_lps([[10, 20, 6], [29, 34, 6]])
    rows = [
        # rectangle: by SOP Instance UID, and in patient (LPS) coordinates on the next slice
        dict(finding="R", label="Box", shape="rectangle", sop_instance_uid=uid,
             series_instance_uid=series.series_instance_uid, coordinates="10 20 29 34", malignancy="4"),
        dict(finding="R", label="Box", shape="rect", space="patient",
             coordinates=" ".join(f"{v:.6f}" for v in rect_lps.ravel())),
        # circle: centre and a point on it, by slice position along the normal
        dict(finding="C", label="Circle", shape="circle", slice_position=f"{position:.4f}",
             coordinates=pixels((64, 64), (74, 64)), **{"attribute:Comment": "round, well defined"}),
        # oval: bounding box corners, by Image Position z
        dict(finding="E", label="Oval", shape="oval", image_z=f"{z10:.4f}", coordinates=pixels((40, 50), (80, 70))),
        # ellipse: ends of its two axes, rotated 45 degrees
        dict(finding="E45", label="Tilted ellipse", shape="ellipse", slice_index="12",
             coordinates=pixels((49.8578644, 49.8578644), (78.1421356, 78.1421356), (71.0710678, 56.9289322),
                                (56.9289322, 71.0710678))),
        # polygons, both conventions: a square and a diamond
        dict(finding="SQ_IN", label="Square inside", shape="polygon", slice_index="14",
             coordinates=pixels((10, 10), (19, 10), (19, 19), (10, 19)), boundary="inside"),
        dict(finding="SQ_OUT", label="Square outside", shape="polygon", slice_index="15",
             coordinates=pixels((10, 10), (19, 10), (19, 19), (10, 19)), boundary="outside"),
        dict(finding="DI_IN", label="Diamond inside", shape="contour", slice_index="14",
             coordinates=pixels((90, 82), (98, 90), (90, 98), (82, 90))),
        dict(finding="DI_OUT", label="Diamond outside", shape="polygon", slice_index="15",
             coordinates=pixels((90, 82), (98, 90), (90, 98), (82, 90)), boundary="outside"),
        # freehand / pencil: 64 vertices on a circle of radius 12
        dict(finding="F", label="Freehand", shape="pencil", slice_index="18",
             coordinates=pixels(*[(40 + 12 * np.cos(t), 100 + 12 * np.sin(t))
                                  for t in np.linspace(0, 2 * np.pi, 64, endpoint=False)])),
        # an exclusion: a rectangle with a square hole
        dict(finding="H", label="Holed", shape="rectangle", slice_index="22", coordinates="60 10 99 39"),
        dict(finding="H", label="Holed", shape="rectangle", slice_index="22", coordinates="70 20 79 29",
             inclusion="false"),
        # point and polyline: markups
        dict(finding="P", label="Landmark", shape="point", slice_index="20", coordinates="30 40"),
        dict(finding="L", label="Diameter", shape="polyline", slice_index="20", coordinates=pixels((10, 10), (40, 50))),
    ]
    square_in = np.zeros(shape2d, bool)
    square_in[10:20, 10:20] = True
    square_out = np.zeros(shape2d, bool)
    square_out[11:19, 11:19] = True
    holed = np.zeros(shape2d, bool)
    holed[10:40, 60:100] = True
    holed[20:30, 70:80] = False
    expected = {
        "R": {5: rect, 6: rect},
        "C": {8: disc(shape2d, (64, 64), 10)},
        "E": {10: ((np.indices(shape2d)[1] - 60) / 20.0) ** 2 + ((np.indices(shape2d)[0] - 60) / 10.0) ** 2 <= 1 + 1e-9},
        "SQ_IN": {14: square_in},
        "SQ_OUT": {15: square_out},
        "DI_IN": {14: diamond(shape2d, (90, 90), 8)},
        "DI_OUT": {15: diamond(shape2d, (90, 90), 7)},
        "H": {22: holed},
    }
    return rows, expected


@pytest.fixture(scope="module")
def converted(series, tmp_path_factory):
    """The every-shape table through csv import (overlay, SEG, SR) and export-ml."""
    folder = tmp_path_factory.mktemp("csv")
    rows, expected = every_shape_rows(series)
    table = write_table(folder / "table.csv", rows)
    result = api.import_csv(table, series, folder / "dicom")
    ml = api.export_ml([folder / "dicom", Path(series.folder)], folder / "ml", png=True)
    return folder, series, result, ml, expected


def label_masks(case_folder: Path):
    """{segment name: (K, J, I) bool} read back from a case's label maps, by its sidecar."""
    sidecar = json.loads((case_folder / "labels.json").read_text())
    maps = {}
    masks = {}
    for segment in sidecar["segments"]:
        name = segment["label_map"]
        if name not in maps:
            maps[name] = sitk.GetArrayFromImage(sitk.ReadImage(str(case_folder / name)))
            nrrd = sitk.GetArrayFromImage(sitk.ReadImage(str(case_folder / name.replace(".nii.gz", ".nrrd"))))
            np.testing.assert_array_equal(nrrd, maps[name])
        masks[segment["name"]] = maps[name] == segment["label_value"]
    return sidecar, masks


# --- every shape, CSV -> DICOM -> ML formats -------------------------------------------------------------

def test_every_shape_round_trips_to_ml_formats(converted):
    folder, series, result, ml, expected = converted
    conversion = result.conversion
    assert conversion.bad_rows == [] and conversion.warnings == []
    assert conversion.converted_rows == conversion.rows == 14
    assert sorted(p.name for p in (folder / "dicom").iterdir()) == [
        "evaluations.csv", "markups.mrk.json", "overlay", "seg.dcm", "segmentation.seg.nrrd", "sr.dcm",
        "sr_markups.dcm"]
    names = {f.id: f.label for f in conversion.findings}
    cases = {case.kind: case for case in ml.cases}
    assert set(cases) == {"overlay", "seg"}
    for kind in ("seg", "overlay"):  # the SEG and the overlay series give the same masks
        case_folder = folder / "ml" / cases[kind].name
        sidecar, masks = label_masks(case_folder)
        assert sidecar["overlapping"] is False and len(sidecar["label_maps"]) == 1
        for finding, slices in expected.items():
            mask = masks[names[finding]]
            assert sorted(np.flatnonzero(mask.any(axis=(1, 2)))) == sorted(slices), (kind, finding)
            for k, plane in slices.items():
                np.testing.assert_array_equal(mask[k], plane, err_msg=f"{kind} {finding} slice {k}")
        # areas of what was checked by its formula only
        assert masks["Box"][5].sum() == 300  # the rectangle's exact pixel count
        assert abs(masks["Circle"][8].sum() - np.pi * 10 ** 2) <= AREA_TOLERANCE * np.pi * 10 ** 2
        assert abs(masks["Oval"][10].sum() - np.pi * 20 * 10) <= AREA_TOLERANCE * np.pi * 20 * 10
        tilted = masks["Tilted ellipse"][12]
        assert abs(tilted.sum() - np.pi * 20 * 10) <= AREA_TOLERANCE * np.pi * 20 * 10
        assert tilted[64, 64] and tilted[76, 76] and not tilted[52, 76]  # along the long axis, not across it
        freehand = masks["Freehand"][18]
        assert (freehand >= disc(freehand.shape, (40, 100), 11.5)).all()
        # the outline pixels (inside convention) lie within half a pixel diagonal of the circle
        assert not (freehand & ~disc(freehand.shape, (40, 100), 12 + np.sqrt(0.5))).any()
        # inside convention: the outline pixels belong to it, so about the area of the disc of radius 12.5
        assert np.pi * 11.5 ** 2 <= freehand.sum() <= np.pi * 12.5 ** 2 * (1 + AREA_TOLERANCE)
        assert masks["Square inside"][14].sum() == 100 and masks["Square outside"][15].sum() == 64
        assert masks["Diamond inside"][14].sum() == 2 * 8 ** 2 + 2 * 8 + 1
        assert masks["Diamond outside"][15].sum() == 2 * 7 ** 2 + 2 * 7 + 1
        # the image and the label maps share the series grid
        labels = sitk.ReadImage(str(case_folder / "labels.nii.gz"))
        image = sitk.ReadImage(str(case_folder / "image.nii.gz"))
        geometry = series.geometry
        np.testing.assert_allclose(labels.GetOrigin(), geometry.origin, atol=1e-4)
        np.testing.assert_allclose(labels.GetSpacing(), geometry.spacing, atol=1e-5)
        assert image.GetSize() == labels.GetSize() and image.GetOrigin() == labels.GetOrigin()
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), series.read_volume())
        # PNG masks: one per slice, equal to the label map
        from PIL import Image

        pngs = sorted((case_folder / "png" / "labels").glob("slice_*.png"))
        assert len(pngs) == geometry.shape[0]
        label_array = sitk.GetArrayFromImage(labels)
        np.testing.assert_array_equal(np.asarray(Image.open(pngs[14])), label_array[14])
    # markups (LPS): the point and the polyline, placed through the series geometry
    to_lps = series.geometry.ijk_to_lps_points
    sidecar = json.loads((folder / "ml" / cases["seg"].name / "labels.json").read_text())
    markups = {m["name"]: m for m in sidecar["markups"]}
    np.testing.assert_allclose(markups["Landmark"]["points_lps"], to_lps([[30, 40, 20]]), atol=1e-3)
    np.testing.assert_allclose(markups["Landmark"]["points_ijk"], [[30, 40, 20]], atol=1e-6)
    np.testing.assert_allclose(markups["Diameter"]["points_lps"], to_lps([[10, 10, 20], [40, 50, 20]]), atol=1e-3)


def test_measurements_table_one_row_per_finding(converted):
    folder, series, result, ml, _ = converted
    with open(folder / "ml" / "measurements.csv", encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    seg_rows = {r["finding"]: r for r in rows if r["kind"] == "seg"}
    # every finding once in the SEG case (the findings' ids came back as Tracking Identifiers)
    assert set(seg_rows) == {"R", "C", "E", "E45", "SQ_IN", "SQ_OUT", "DI_IN", "DI_OUT", "F", "H",
                             "Landmark", "Diameter"}
    box = seg_rows["R"]
    voxel = series.geometry.voxel_volume_mm3
    assert int(box["voxels"]) == 600 and float(box["volume_mm3"]) == pytest.approx(600 * voxel)
    assert float(box["Volume [mm3]"]) == pytest.approx(600 * voxel)
    assert box["Malignancy"] == "4" and "904" in box["Malignancy code"]
    assert seg_rows["C"]["Comment"] == "round, well defined"
    assert float(seg_rows["Diameter"]["Length [mm]"]) == pytest.approx(np.hypot(30, 40) * 0.9, abs=1e-3)
    volume = series.read_volume()
    mask = import_seg(result.seg.paths[0], series).segmentation.mask("Box")
    assert float(box["Attenuation Coefficient (Mean) [[hnsf'U]]"]) == pytest.approx(float(volume[mask].mean()))
    with open(folder / "ml" / "cases.csv", encoding="utf-8", newline="") as stream:
        cases = list(csv.DictReader(stream))
    assert {c["kind"] for c in cases} == {"seg", "overlay"}
    assert all((folder / "ml" / c["label_maps"]).exists() for c in cases)


def test_locators_name_the_same_slices(series, tmp_path):
    """SOP Instance UID, slice position, image z, slice index and patient coordinates agree."""
    to_lps = series.geometry.ijk_to_lps_points
    rows = []
    for k in (0, 7, 31):
        ref = series.slices[k]
        z = float(to_lps([[0, 0, k]])[0, 2])
        position = float(to_lps([[0, 0, k]])[0] @ series.geometry.slice_normal)
        lps = to_lps([[10, 10, k], [20, 10, k], [20, 20, k]])
        rows += [dict(finding=f"uid{k}", shape="polygon", sop_instance_uid=ref.sop_instance_uid, coordinates="10 10 20 10 20 20"),
                 dict(finding=f"pos{k}", shape="polygon", slice_position=f"{position:.3f}", coordinates="10 10 20 10 20 20"),
                 dict(finding=f"z{k}", shape="polygon", image_z=f"{z:.3f}", coordinates="10 10 20 10 20 20"),
                 dict(finding=f"k{k}", shape="polygon", slice_index=str(k), coordinates="10 10 20 10 20 20"),
                 dict(finding=f"lps{k}", shape="polygon", space="lps", coordinates=" ".join(map(str, lps.ravel()))),
                 dict(finding=f"ras{k}", shape="polygon", space="ras",
                      coordinates=" ".join(map(str, (lps * [-1, -1, 1]).ravel())))]
    conversion = read_annotation_table(write_table(tmp_path / "t.csv", rows), series)
    assert conversion.bad_rows == []
    segmentation = conversion.segmentation
    for k in (0, 7, 31):
        masks = [segmentation.mask(f"{kind}{k}") for kind in ("uid", "pos", "z", "k", "lps", "ras")]
        for mask in masks:
            assert np.flatnonzero(mask.any(axis=(1, 2))).tolist() == [k]
            np.testing.assert_array_equal(mask, masks[0])
    assert len(segmentation.segments) == 18 and segmentation.layers.shape[0] == 6  # overlaps: 6 per slice


def test_patient_coordinates_on_an_oblique_series(tmp_path):
    volume, _, _ = sample_volume_and_segments()
    geometry = VolumeGeometry.from_origin_spacing_directions(volume.shape, (-40.0, 25.0, -10.0), (0.9, 0.9, 2.5),
                                                             rotation([1, 2, 0.5], 25))
    dicomize_array(volume, geometry, tmp_path / "series")
    oblique = load_series(tmp_path / "series")
    to_lps = oblique.geometry.ijk_to_lps_points
    corners = [(30.0, 40.0), (70.0, 45.0), (60.0, 90.0), (25.0, 80.0)]
    lps = to_lps([[c, r, 11] for c, r in corners])
    position = float(to_lps([[0, 0, 11]])[0] @ oblique.geometry.slice_normal)
    rows = [dict(finding="pixel", shape="polygon", slice_position=f"{position:.4f}", coordinates=pixels(*corners)),
            dict(finding="patient", shape="polygon", space="patient", coordinates=" ".join(map(str, lps.ravel()))),
            dict(finding="image z", shape="polygon", image_z=f"{to_lps([[0, 0, 11]])[0, 2]:.4f}",
                 coordinates=pixels(*corners)),
            dict(finding="between", shape="polygon", image_z=f"{to_lps([[0, 0, 11.5]])[0, 2]:.4f}",
                 coordinates=pixels(*corners))]
    conversion = read_annotation_table(write_table(tmp_path / "t.csv", rows), oblique)
    expected = polygon_mask(oblique.geometry.shape[1:], np.array(corners))
    for name in ("pixel", "patient", "image z"):
        mask = conversion.segmentation.mask(name)
        assert np.flatnonzero(mask.any(axis=(1, 2))).tolist() == [11]
        np.testing.assert_array_equal(mask[11], expected)
    # half way between two slices' z (tilted: z changes less than the spacing per slice): a bad row
    assert [(p.row, "no slice at image z" in p.problem) for p in conversion.bad_rows] == [(5, True)]


def test_windowed_rasterisation_equals_the_whole_image(series, tmp_path):
    """Shapes anywhere (edges included): what the table gives equals rasterize on the whole image."""
    rng = np.random.default_rng(5)
    shape2d = series.geometry.shape[1:]
    rows, expected = [], {}
    for n in range(24):
        k = n
        center = rng.uniform(-0.4, 127.4, 2)
        if n % 2:
            angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
            radii = rng.uniform(2, 30, 7)
            points = np.clip(center + np.column_stack([radii * np.cos(angles), radii * np.sin(angles)]), -0.5, 127.5)
            boundary = "outside" if n % 4 == 1 else "inside"
            rows.append(dict(finding=f"f{n}", shape="polygon", slice_index=str(k), boundary=boundary,
                             coordinates=pixels(*points)))
            expected[f"f{n}"] = (k, polygon_mask(shape2d, points, boundary=boundary))
        else:
            corner = np.clip(center + rng.uniform(-25, 25, 2), -0.5, 127.5)
            points = np.array([center, corner])
            rows.append(dict(finding=f"f{n}", shape="oval", slice_index=str(k), coordinates=pixels(*points)))
            expected[f"f{n}"] = (k, ellipse_mask(shape2d, points.mean(axis=0), np.abs(points[1] - points[0]) / 2))
    conversion = read_annotation_table(write_table(tmp_path / "t.csv", rows), series)
    assert conversion.bad_rows == []
    for finding, (k, plane) in expected.items():
        if not plane.any():
            continue
        np.testing.assert_array_equal(conversion.segmentation.mask(finding)[k], plane, err_msg=finding)


def test_default_boundary_and_lines_in_segments(series, tmp_path):
    rows = [dict(finding="sq", shape="polygon", slice_index="3", coordinates=pixels((10, 10), (19, 10), (19, 19), (10, 19))),
            dict(finding="sq2", shape="polygon", slice_index="4", boundary="inside",
                 coordinates=pixels((10, 10), (19, 10), (19, 19), (10, 19))),
            dict(finding="pts", shape="point", slice_index="5", coordinates="3 4; 100 90"),
            dict(finding="line", shape="polyline", slice_index="5", coordinates="10 50 40 50")]
    table = write_table(tmp_path / "t.csv", rows)
    conversion = read_annotation_table(table, series, boundary="outside")
    assert conversion.segmentation.mask("sq").sum() == 64 and conversion.segmentation.mask("sq2").sum() == 100
    assert {s.id for s in conversion.segmentation.segments} == {"sq", "sq2"}
    assert [m.kind for m in conversion.markups] == ["point_list", "line"]
    drawn = read_annotation_table(table, series, lines_in_segments=True).segmentation
    assert drawn.mask("pts").sum() == 2 and drawn.mask("pts")[5, 4, 3] and drawn.mask("pts")[5, 90, 100]
    assert drawn.mask("line").sum() == 31 and drawn.mask("line")[5, 50, 10:41].all()


# --- bad rows ----------------------------------------------------------------------------------------------

def bad_table(path: Path, series) -> Path:
    """Rows 5 and 6 good, 17 of another series; every other data row bad, one reason each (row =
    spreadsheet row: 3 preamble rows, the header on row 4)."""
    to_lps = series.geometry.ijk_to_lps_points
    off_plane = to_lps([[10, 10, 3], [20, 10, 3.6], [20, 20, 3]])
    rows = [
        dict(finding="ok1", label="Good", shape="rectangle", slice_index="3", coordinates="10 10 20 20", malignancy="3"),
        dict(finding="ok1", label="Good", shape="circle", slice_index="4", coordinates="30 30 5"),
        dict(finding="b1", shape="polygon", sop_instance_uid="1.2.3.4.5", coordinates="1 1 5 1 5 5"),
        dict(finding="b2", shape="polygon", slice_index="99", coordinates="1 1 5 1 5 5"),
        dict(finding="b3", shape="polygon", slice_index="2", coordinates="1 1 5 abc 5 5"),
        dict(finding="b4", shape="polygon", slice_index="2", coordinates="1 1 5 1 5"),
        dict(finding="b5", shape="hexagon", slice_index="2", coordinates="1 1 5 1 5 5"),
        dict(finding="b6", shape="polygon", slice_index="2", coordinates="1 1 200 1 5 5"),
        dict(finding="ok1", label="Good", shape="rectangle", slice_index="5", coordinates="10 10 20 20", malignancy="9"),
        dict(finding="ok1", label="Other label", shape="rectangle", slice_index="5", coordinates="10 10 20 20"),
        dict(finding="b7", shape="polygon", space="patient", coordinates=" ".join(map(str, off_plane.ravel()))),
        dict(finding="b8", shape="polygon", slice_position="-1000", coordinates="1 1 5 1 5 5"),
        dict(finding="other", shape="polygon", series_instance_uid="1.2.3", slice_index="2", coordinates="1 1 5 1 5 5"),
    ]
    preamble = "# an annotation database export\n\n# rows below\n"
    return write_table(path, rows, preamble=preamble)


BAD_ROWS = {7: "image 1.2.3.4.5 is not in the series", 8: "slice_index 99 is not in the series",
            9: "coordinate 'abc' is not a number", 10: "pixel coordinates are (column, row) pairs",
            11: "unknown shape 'hexagon'", 12: "lies outside the 128x128 image", 13: "'9' is not a score of",
            14: "has label 'Good' on row 5", 15: "from the plane of slice 3", 16: "no slice at slice position -1000"}


def test_bad_rows_are_reported_with_their_row_numbers(series, tmp_path):
    conversion = read_annotation_table(bad_table(tmp_path / "bad.csv", series), series)
    assert {p.row: p.problem for p in conversion.bad_rows}.keys() == BAD_ROWS.keys()
    for problem in conversion.bad_rows:
        assert BAD_ROWS[problem.row] in problem.problem, problem
    assert conversion.rows == 13 and conversion.converted_rows == 2 and conversion.other_series_rows == 1
    assert [s.id for s in conversion.segmentation.segments] == ["ok1"]
    assert conversion.segmentation.mask("ok1").sum() == 121 + int(disc((128, 128), (30, 30), 5).sum())
    assert [(e.segment, e.score) for e in conversion.evaluations] == [("ok1", 3)]


def test_bad_rows_exit_codes_on_the_command_line(series, tmp_path):
    table = bad_table(tmp_path / "bad.csv", series)
    before = tree_hashes(Path(series.folder))
    result = run("csv", "import", table, "--series", series.folder, "--out", tmp_path / "a", "--formats", "seg,overlay")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "10 of 13 rows could not be converted" in errors[0] and "--skip-bad-rows" in errors[0]
    for row, words in BAD_ROWS.items():
        assert f"bad: row {row}: " in result.stderr and words in result.stderr
    assert (tmp_path / "a" / "seg.dcm").exists() and len(list((tmp_path / "a" / "overlay").iterdir())) == 32
    with open(tmp_path / "a" / "bad_rows.csv", encoding="utf-8", newline="") as stream:
        assert [int(r["row"]) for r in csv.DictReader(stream)] == sorted(BAD_ROWS)
    result = run("csv", "import", table, "--series", series.folder, "--out", tmp_path / "b", "--formats", "seg",
                 "--skip-bad-rows")
    assert result.returncode == 0, result.stderr
    assert "skipped: row 7: image 1.2.3.4.5 is not in the series" in result.stderr and "error:" not in result.stderr
    assert "1 rows of other series ignored" in result.stdout
    # nothing convertible, a header without the required columns, a wrong --formats: errors
    write_table(tmp_path / "all_bad.csv", [dict(finding="x", shape="blob", slice_index="1", coordinates="1 1")])
    result = run("csv", "import", tmp_path / "all_bad.csv", "--series", series.folder, "--out", tmp_path / "c")
    assert result.returncode == 3 and "nothing to convert: 1 bad rows: row 2: unknown shape 'blob'" in result.stderr
    write_table(tmp_path / "no_shape.csv", [["a", "1"]], header=["finding", "coordinates"])
    result = run("csv", "import", tmp_path / "no_shape.csv", "--series", series.folder, "--out", tmp_path / "d")
    assert result.returncode == 3 and "the header has no shape column" in result.stderr
    assert run("csv", "import", table, "--series", series.folder, "--out", tmp_path / "e",
               "--formats", "png").returncode == 2
    assert tree_hashes(Path(series.folder)) == before


def test_too_many_findings_for_overlays_then_split(series, tmp_path):
    rows = [dict(finding=f"f{n}", shape="rectangle", slice_index=str(n), coordinates="10 10 20 20") for n in range(18)]
    table = write_table(tmp_path / "many.csv", rows)
    with pytest.raises(InputError, match="18 segments and 0 markups need 18 overlay planes"):
        api.import_csv(table, series, tmp_path / "a", formats=["overlay"])
    assert not (tmp_path / "a").exists()  # refused before anything was written (the output is staged)
    result = api.import_csv(table, series, tmp_path / "b", formats=["overlay"], split=True)
    assert len(result.overlay.series) == 2


# --- the example file and the progress bar ----------------------------------------------------------------

def test_the_example_table_works_on_the_sample(sample_case, tmp_path):
    result = run("csv", "import", EXAMPLE, "--series", sample_case.series_dir, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "17 of 17 rows converted: 8 findings, 5 segments (2 layers), 3 markups, 5 evaluations" in result.stdout
    assert "WARNING" not in result.stderr and "bad" not in result.stderr
    result = run("export-ml", tmp_path / "out" / "seg.dcm", tmp_path / "out" / "sr.dcm", sample_case.series_dir,
                 "--out", tmp_path / "ml")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(next((tmp_path / "ml").glob("*/labels.json")).read_text())
    assert sidecar["overlapping"] is True and "its own label map" in sidecar["note"]
    assert [m["nifti"] for m in sidecar["label_maps"]] == ["labels.nii.gz", "labels_layer2.nii.gz"]
    nodule = next(s for s in sidecar["segments"] if s["name"] == "Nodule")
    assert nodule["terminology"]["type"]["meaning"] == "Nodule" and nodule["tracking_id"] == "N2"


def big_table(path: Path, findings: int, per_finding: int) -> Path:
    rows = []
    for f in range(findings):
        for n in range(per_finding):
            k = n % 32
            x, y = 8 + 11 * (f % 10), 8 + 11 * (f // 10) + (n // 32) % 3
            rows.append(dict(finding=f"F{f}", shape=("polygon", "oval", "rectangle", "freehand")[n % 4],
                             slice_index=str(k), coordinates=pixels((x, y), (x + 8, y + 1), (x + 4, y + 7), (x + 1, y + 5))
                             if n % 4 in (0, 3) else pixels((x, y), (x + 8, y + 7))))
    return write_table(path, rows)


def test_progress_callback(series, tmp_path):
    table = big_table(tmp_path / "t.csv", 10, 100)
    calls = []
    conversion = read_annotation_table(table, series, progress=lambda done, total, message: calls.append(
        (done, total, message)))
    assert conversion.bad_rows == [] and len(conversion.segmentation.segments) == 10
    reading = [c for c in calls if c[2] == "Reading annotation table"]
    assert reading[0] == (0, 1000, "Reading annotation table") and reading[-1] == (1000, 1000, "Reading annotation table")
    assert len(reading) <= 1000 // 250 + 2  # throttled: a terminal redraw per row would cost more than the row
    assert [c for c in calls if c[2] == "Rasterising findings"][-1][:2] == (10, 10)


def test_progress_bar_on_a_terminal(series, tmp_path):
    table = big_table(tmp_path / "t.csv", 10, 100)
    code, text = run_on_terminal("csv", "import", table, "--series", series.folder, "--out", tmp_path / "o",
                                 "--formats", "seg")
    assert code == 0
    assert "Reading annotation table" in text and "1000/1000" in text


def test_help(tmp_path):
    for args in (["csv", "--help"], ["csv", "import", "--help"], ["export-ml", "--help"]):
        result = run(*args)
        assert result.returncode == 0 and "usage: dicomannotembed" in result.stdout and "exit codes" in result.stdout


# --- export-ml on other inputs ------------------------------------------------------------------------------

def test_export_ml_of_the_sample_overlay_with_overlapping_segments(sample_case, series, tmp_path):
    api.export_overlay(series, sample_case.segmentation_path, [sample_case.markups_path], tmp_path / "overlay")
    original = api.load_annotations(series, sample_case.segmentation_path).segmentation
    result = api.export_ml(tmp_path / "overlay", tmp_path / "ml")
    (case,) = result.cases
    sidecar, masks = label_masks(tmp_path / "ml" / case.name)
    assert sidecar["overlapping"] is True and len(sidecar["label_maps"]) == 2
    for segment in original.segments:
        np.testing.assert_array_equal(masks[segment.name], original.mask(segment))
    liver = next(s for s in sidecar["segments"] if s["name"] == "Liver")
    assert liver["terminology"]["type"] == {"value": "10200004", "scheme": "SCT", "meaning": "Liver"}
    assert liver["color_hex"] == "#de8266"
    assert {m["name"] for m in sidecar["markups"]} == {"Landmarks", "Tumor diameter", "Left lung outline", "Tumor box"}


def test_export_ml_of_other_tools_objects(tmp_path):
    inputs = tmp_path / "in"
    shutil.copytree(interop("dcmqi", "ct-3slice"), inputs / "ct")
    shutil.copy(interop("dcmqi", "liver.dcm"), inputs / "liver.dcm")
    shutil.copytree(interop("dcmqi", "sr-example"), inputs / "sr-example")
    shutil.copy(interop("highdicom", "seg_image_ct_binary_overlap.dcm"), inputs / "overlap.dcm")
    (inputs / "mr").mkdir()
    shutil.copy(interop("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm"), inputs / "mr")
    (inputs / "notes.txt").write_text("not DICOM")
    result = run("export-ml", inputs, "--out", tmp_path / "ml")
    assert result.returncode == 0, result.stderr
    cases = {c["case"]: c for c in csv.DictReader(open(tmp_path / "ml" / "cases.csv", encoding="utf-8"))}
    assert set(cases) == {"liver", "sr-example_seg", "overlap", "mr"}
    # dcmqi's liver SEG on its CT: the label map is the SEG read onto the series, the image is the CT
    series = load_series(inputs / "ct")
    _, masks = label_masks(tmp_path / "ml" / "liver")
    np.testing.assert_array_equal(masks["Liver"], import_seg(inputs / "liver.dcm", series).segmentation.mask("Liver"))
    assert cases["liver"]["image"] == "liver/image.nii.gz"
    assert cases["overlap"]["overlapping"] == "true"
    assert cases["mr"]["kind"] == "overlay" and cases["mr"]["segments"] == "1"
    rows = list(csv.DictReader(open(tmp_path / "ml" / "measurements.csv", encoding="utf-8")))
    tumour = next(r for r in rows if r["case"] == "sr-example_seg")
    assert tumour["segment"] == "Neoplasm, Primary" and float(tumour["Volume [ml]"]) > 0
    assert "SUVbw (Mean) [{SUVbw}g/ml]" in tumour


def test_export_ml_errors(tmp_path, sample_case):
    result = run("export-ml", tmp_path / "missing", "--out", tmp_path / "ml")
    assert result.returncode == 3 and "does not exist" in result.stderr
    result = run("export-ml", sample_case.series_dir, "--out", tmp_path / "ml2")
    assert result.returncode == 3 and "nothing to export" in result.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = run("export-ml", EXAMPLE, "--out", tmp_path / "full")
    assert result.returncode == 4 and "not empty" in result.stderr


def test_back_from_the_training_folder_to_dicom(converted, tmp_path):
    """labels.nii.gz + labels.dcmqi.json -> SEG with the names, codes and colours of the sidecar;
    segmentation.seg.nrrd -> overlays."""
    folder, series, _, ml, _ = converted
    case = folder / "ml" / next(c for c in ml.cases if c.kind == "seg").name
    seg = api.export_seg(series, case / "labels.nii.gz", tmp_path / "back.dcm", metadata=case / "labels.dcmqi.json")
    back = import_seg(seg.paths[0], series).segmentation
    sidecar, masks = label_masks(case)
    assert sorted(s.name for s in back.segments) == sorted(s["name"] for s in sidecar["segments"])
    for segment in back.segments:
        np.testing.assert_array_equal(back.mask(segment), masks[segment.name])
    result = api.export_overlay(series, case / "segmentation.seg.nrrd", [case / "markups.mrk.json"], tmp_path / "ov")
    assert len(result.series[0].files) == series.geometry.shape[0]


# --- rasterize: the vectorised edges equal the per-edge drawing they replaced -------------------------------

def _reference_polyline(shape, points, closed=False):
    """Per-segment Bresenham with the Liang-Barsky clip, one segment at a time (the former code)."""
    mask = np.zeros(shape, bool)
    points = np.asarray(points, float).reshape(-1, 2)

    def put(cols, rows):
        c, r = np.floor(np.asarray(cols) + 0.5).astype(int), np.floor(np.asarray(rows) + 0.5).astype(int)
        keep = (c >= 0) & (c < shape[1]) & (r >= 0) & (r < shape[0])
        mask[r[keep], c[keep]] = True

    if len(points) == 1:
        put(points[:, 0], points[:, 1])
        return mask
    ends = np.roll(points, -1, axis=0) if closed and len(points) > 2 else points[1:]
    for start, end in zip(points, ends):
        lo, hi, d = np.array([-1.0, -1.0]), np.array([shape[1], shape[0]], float), end - start
        t0, t1, inside = 0.0, 1.0, True
        for axis in range(2):
            if abs(d[axis]) < 1e-15:
                inside &= lo[axis] <= start[axis] <= hi[axis]
                continue
            ta, tb = (lo[axis] - start[axis]) / d[axis], (hi[axis] - start[axis]) / d[axis]
            t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        if not inside or t0 > t1:
            continue
        a, b = np.floor(start + t0 * d + 0.5).astype(np.int64), np.floor(start + t1 * d + 0.5).astype(np.int64)
        steps = int(np.max(np.abs(b - a)))
        samples = a + (np.arange(steps + 1)[:, None] / max(steps, 1)) * (b - a)
        put(samples[:, 0], samples[:, 1])
    return mask


def _reference_fill(shape, points):
    """Even-odd rule, pixel centres tested one by one against every edge (half-open in y)."""
    rows, cols = np.indices(shape)
    inside = np.zeros(shape, bool)
    for (x0, y0), (x1, y1) in zip(points, np.roll(points, -1, axis=0)):
        if y0 == y1:
            continue
        crosses = (np.minimum(y0, y1) <= rows) & (rows < np.maximum(y0, y1))
        with np.errstate(divide="ignore", invalid="ignore"):
            x = x0 + (rows - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (cols < x)
    return inside


def test_vectorised_rasterize_equals_per_edge_drawing():
    from DicomAnnotEmbedLib.core.rasterize import polyline_mask

    rng = np.random.default_rng(11)
    for trial in range(400):
        shape = (int(rng.integers(1, 50)), int(rng.integers(1, 50)))
        points = rng.uniform(-[5, 60, 300][trial % 3], [5, 60, 300][trial % 3], (int(rng.integers(1, 10)), 2)) + 25
        if trial % 4 == 0:
            points = np.round(points)
        for closed in (False, True):
            np.testing.assert_array_equal(polyline_mask(shape, points, closed), _reference_polyline(shape, points, closed))
        if len(points) >= 3:
            line = _reference_polyline(shape, points, True)
            fill = _reference_fill(shape, points)
            np.testing.assert_array_equal(polygon_mask(shape, points, "inside"), fill | line)
            np.testing.assert_array_equal(polygon_mask(shape, points, "outside"), fill & ~line)


def test_format_list_constant_is_the_pipeline_formats():
    """cli/_common keeps the CSV formats as a constant (argument parsing imports nothing heavy):
    the same as the pipeline's."""
    from DicomAnnotEmbedLib.api.csv_pipeline import FORMATS
    from DicomAnnotEmbedLib.cli._common import CSV_FORMATS

    assert CSV_FORMATS == FORMATS


@pytest.mark.parametrize("boundary", ["outside", "inside"])
def test_exclusion_outline_is_cut_out_too(series, tmp_path, boundary):
    """LIDC: a contour's pixels are never part of the nodule, an exclusion's included. A 20 x 20
    square with a square hole whose vertices are (30, 30)-(37, 37): the hole's outline pixels are
    removed as well as its inside, under both conventions (hand-computed masks)."""
    square = pixels((20, 20), (47, 20), (47, 47), (20, 47))
    hole = pixels((30, 30), (37, 30), (37, 37), (30, 37))
    rows = [dict(finding="N", shape="polygon", slice_index="7", coordinates=square, boundary=boundary),
            dict(finding="N", shape="polygon", slice_index="7", coordinates=hole, boundary=boundary, inclusion="false")]
    conversion = read_annotation_table(write_table(tmp_path / "t.csv", rows), series)
    assert conversion.bad_rows == []
    expected = np.zeros(series.geometry.shape[1:], bool)
    if boundary == "outside":
        expected[21:47, 21:47] = True  # the outer contour's pixels are outside the nodule
    else:
        expected[20:48, 20:48] = True
    expected[30:38, 30:38] = False  # the hole: rows and columns 30..37, outline included
    mask = conversion.segmentation.mask("N")
    np.testing.assert_array_equal(mask[7], expected)
    assert mask.sum() == expected.sum() == (26 * 26 if boundary == "outside" else 28 * 28) - 64
