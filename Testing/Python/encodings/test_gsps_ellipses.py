"""Ellipses (issue 16): closed curves marked as ellipses <-> GSPS ELLIPSE graphics, CSV ovals and
circles -> ELLIPSE, and the other encodings (overlay, RTSTRUCT, SR) drawing the ellipse itself,
not the rhombus of its 4 axis ends.

Independent readers: dciodvfy (dicom3tools) and dcmpschk (DCMTK) on every presentation state;
highdicom's GraphicObject accessors; pydicom + numpy for the placement of every graphic through the
referenced image's own Image Position/Orientation and Pixel Spacing, for RTSTRUCT Contour Data and
for overlay bits (pydicom's overlay_array); highdicom's SR reader and PixelMed's DicomSRValidator
for the SCOORD3D ELLIPSE."""
from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import require_tool
from test_gsps import SERIES, _as, _axial, _image_headers, _others_gsps, _plane_of
from DicomAnnotEmbedLib import api
from DicomAnnotEmbedLib.core.model import Markup, Segment, Segmentation
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.files.markups_io import read_markups, write_markups


def _check_presentation_state(path: Path) -> None:
    out = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
    assert errors == [], errors
    checked = subprocess.run([require_tool("dcmpschk"), str(path)], capture_output=True, text=True)
    text = checked.stdout + checked.stderr
    assert checked.returncode == 0 and "E:" not in text and "Test passed" in text, text  # it exits 0 on failure too


def _in_plane_ellipse(geometry, ij_centre, k, a_px, b_px, degrees):
    """4 axis ends (LPS, major first) of an ellipse in the plane of slice k, its axes perpendicular
    in mm (``a_px``, ``b_px``: semi-axes in column-spacing units), rotated from the rows' direction."""
    centre = geometry.ijk_to_lps_points(np.array([[*ij_centre, k]], dtype=float))[0]
    u, v = geometry.directions[:, 0], geometry.directions[:, 1]
    t = np.radians(degrees)
    first = a_px * geometry.spacing[0] * (np.cos(t) * u + np.sin(t) * v)
    second = b_px * geometry.spacing[0] * (-np.sin(t) * u + np.cos(t) * v)
    return np.array([centre + first, centre - first, centre + second, centre - second])


def _ellipses(geometry):
    depth, rows, cols = geometry.shape
    sx, sy = cols / 80.0, rows / 64.0  # the same picture on any image size

    def at(*ijk):
        return geometry.ijk_to_lps_points(np.array(ijk, dtype=float).reshape(-1, 3) * [sx, sy, 1.0])

    d = depth - 1
    return [
        # axis-aligned on slice 1, 0.2 slice off its centre: an ELLIPSE on every grid
        Markup("closed_curve", "Axis ellipse", at([20, 30, 1.2], [50, 30, 1.2], [35, 20, 1.2], [35, 40, 1.2]),
               color=(1.0, 0.2, 0.2), filled=True, shape="ellipse"),
        # rotated by 30 degrees, axes perpendicular in mm: an ELLIPSE where pixels are square
        Markup("closed_curve", "Rotated ellipse", _in_plane_ellipse(geometry, (55 * sx, 45 * sy), 1, 12 * sx, 6 * sx, 30),
               color=(0.2, 1.0, 0.2), shape="ellipse"),
        # tilted through every slice: drawn as its samples on each slice it crosses
        Markup("closed_curve", "Tilted ellipse", at([10, 50, 0], [30, 50, d], [20, 45, d / 2], [20, 55, d / 2]),
               color=(0.2, 0.2, 1.0), shape="ellipse"),
        # marked, but its axes are not perpendicular: a closed polyline through its points
        Markup("closed_curve", "Not an ellipse", at([60, 5, 1], [75, 5, 1], [66, 2, 1], [70, 12, 1]),
               color=(1.0, 1.0, 0.0), shape="ellipse"),
    ]


@pytest.fixture(scope="module", params=list(SERIES))
def exported(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"ellipses-{request.param}")
    series = load_series(SERIES[request.param](folder / "series"))
    markups = _ellipses(series.geometry)
    write_markups(folder / "in.mrk.json", markups, coordinate_system="RAS")
    assert [m.shape for m in read_markups(folder / "in.mrk.json")] == ["ellipse"] * 4  # the mark is in the file
    result = api.export_gsps(series.folder, markups, folder / "pr.dcm")  # objects: .mrk.json has no "filled"
    return request.param, series, markups, folder / "pr.dcm", result


def _graphics(path):
    """[(layer, graphic type, (N, 2) data, filled, referenced image uid, frame)] of a presentation state."""
    ds = pydicom.dcmread(path)
    return [(str(item.GraphicLayer), str(g.GraphicType), np.array(g.GraphicData, dtype=float).reshape(-1, 2),
             g.get("GraphicFilled") == "Y", str(item.ReferencedImageSequence[0].ReferencedSOPInstanceUID),
             int(item.ReferencedImageSequence[0].get("ReferencedFrameNumber", 1)))
            for item in ds.GraphicAnnotationSequence for g in item.GraphicObjectSequence]


def _square_pixels(series) -> bool:
    return bool(np.isclose(series.geometry.spacing[0], series.geometry.spacing[1]))


def test_ellipses_are_ellipse_graphics_that_the_checkers_and_highdicom_read(exported):
    import highdicom as hd

    kind, series, markups, path, result = exported
    _check_presentation_state(path)
    ds = pydicom.dcmread(path)
    layers = {str(layer.GraphicLayer): str(layer.GraphicLayerDescription) for layer in ds.GraphicLayerSequence}
    ellipses = [_as(hd.pr.GraphicObject, g) for item in ds.GraphicAnnotationSequence for g in item.GraphicObjectSequence
                if g.GraphicType == "ELLIPSE"]
    named = [layers[str(item.GraphicLayer)] for item in ds.GraphicAnnotationSequence
             for g in item.GraphicObjectSequence if g.GraphicType == "ELLIPSE"]
    expected = ["Axis ellipse", "Rotated ellipse"] if _square_pixels(series) else ["Axis ellipse"]
    assert named == expected, kind
    for graphic in ellipses:
        assert graphic.graphic_type == hd.pr.GraphicTypeValues.ELLIPSE
        assert graphic.units == hd.pr.AnnotationUnitsValues.PIXEL
        data = graphic.graphic_data
        assert data.shape == (4, 2)
        major, minor = data[1] - data[0], data[3] - data[2]
        assert np.linalg.norm(major) >= np.linalg.norm(minor)  # the major axis first
        assert abs(major @ minor) <= 1e-4 * np.linalg.norm(major) * np.linalg.norm(minor)  # perpendicular
        np.testing.assert_allclose((data[0] + data[1]) / 2, (data[2] + data[3]) / 2, atol=1e-4)
    assert ellipses[0].GraphicFilled == "Y"  # the markup asks for it (highdicom has no accessor for it)
    # why the others are not ELLIPSEs is said
    assert any("'Tilted ellipse'" in line and "polyline" in line for line in result.skipped)
    assert any("'Not an ellipse'" in line and "not the ends of two perpendicular axes" in line for line in result.skipped)
    texts = [t.UnformattedTextValue for item in ds.GraphicAnnotationSequence for t in item.get("TextObjectSequence", [])]
    a, b = (np.linalg.norm(markups[0].points_lps[1] - markups[0].points_lps[0]) / 2,
            np.linalg.norm(markups[0].points_lps[3] - markups[0].points_lps[2]) / 2)
    assert "Axis ellipse: perimeter" in texts[0] and f"area {np.pi * a * b:.1f} mm2" in texts[0]  # pi a b, not 2 a b


def _on_ellipse(points_lps, ends, normal):
    """Radius of each point in the ellipse's own axes (1 on the ellipse), the points moved along
    ``normal`` (the slice's) onto the ellipse's plane."""
    centre = (ends[0] + ends[1]) / 2
    first, second = ends[0] - centre, ends[2] - centre
    plane_normal = np.cross(first, second)
    along = ((points_lps - centre) @ plane_normal) / (normal @ plane_normal)
    moved = points_lps - along[:, None] * normal - centre
    u = moved @ first / (first @ first)
    v = moved @ second / (second @ second)
    return np.hypot(u, v)


def test_graphics_land_on_the_ellipses_through_the_images_own_geometry(exported):
    kind, series, markups, path, _ = exported
    headers = _image_headers(series)
    ds = pydicom.dcmread(path)
    by_layer = {str(layer.GraphicLayer): m for layer, m in zip(ds.GraphicLayerSequence, markups)}
    half_gap = float(series.geometry.spacing[2]) / 2 + 1e-3
    seen = set()
    for layer, graphic_type, cr, _, uid, frame in _graphics(path):
        markup = by_layer[layer]
        origin, column_step, row_step = _plane_of(headers[uid], frame)
        normal = np.cross(column_step, row_step)
        normal /= np.linalg.norm(normal)
        # PIXEL units: (0, 0) is the top-left corner of the first pixel, whose centre is (0.5, 0.5)
        lps = origin + (cr[:, :1] - 0.5) * column_step + (cr[:, 1:] - 0.5) * row_step
        if graphic_type == "ELLIPSE":  # its 4 points: the markup's axis ends on this image, in order
            offsets = lps - markup.points_lps
            along = offsets @ normal
            np.testing.assert_allclose(offsets - along[:, None] * normal, 0, atol=1e-3)
            assert np.abs(along).max() <= half_gap
        elif markup.name == "Not an ellipse":  # the closed polyline through its control points
            np.testing.assert_allclose(lps[:-1], markup.points_lps - ((markup.points_lps - lps[:-1]) @ normal)[:, None]
                                       * normal, atol=1e-3)
        else:  # samples of the ellipse, each on it (within 0.01 mm), the piece within its slab
            radius = _on_ellipse(lps, markup.points_lps, normal)
            semi_minor = np.linalg.norm(markup.points_lps[3] - markup.points_lps[2]) / 2
            assert radius.max() <= 1 + 1e-6 and radius.min() >= 1 - 0.011 / semi_minor, markup.name
        seen.add((markup.name, graphic_type))
    ellipse_or_not = "ELLIPSE" if _square_pixels(series) else "POLYLINE"
    assert seen == {("Axis ellipse", "ELLIPSE"), ("Rotated ellipse", ellipse_or_not), ("Tilted ellipse", "POLYLINE"),
                    ("Not an ellipse", "POLYLINE")}, kind


def test_round_trip_gives_the_same_ellipses_exactly(exported, tmp_path):
    kind, series, markups, path, _ = exported
    back = api.import_gsps(path, series, markups_out=tmp_path / "back.mrk.json")
    assert back.report == []
    by_name = {m.name: m for m in read_markups(tmp_path / "back.mrk.json")}  # the mark goes through the file too
    geometry = series.geometry
    for markup in markups[:2 if _square_pixels(series) else 1]:
        got = by_name[markup.name]
        assert (got.kind, got.shape) == ("closed_curve", "ellipse")
        ijk = geometry.lps_to_ijk_points(markup.points_lps)
        ijk[:, 2] = np.floor(ijk[:, 2] + 0.5)  # each axis end on its slice
        np.testing.assert_allclose(got.points_lps, geometry.ijk_to_lps_points(ijk), atol=1e-3)
    assert by_name["Not an ellipse"].shape is None and len(by_name["Not an ellipse"].points_lps) == 4
    # markups -> GSPS -> markups -> GSPS: the same ELLIPSE graphics, value for value
    api.export_gsps(series, list(by_name.values()), tmp_path / "again.dcm")
    first = [(t, d.tolist()) for _, t, d, *_ in _graphics(path) if t == "ELLIPSE"]
    again = [(t, d.tolist()) for _, t, d, *_ in _graphics(tmp_path / "again.dcm") if t == "ELLIPSE"]
    assert again == first and first


def test_other_writers_ellipse_and_circle_come_back_as_the_same_ellipse(tmp_path):
    series = load_series(_axial(tmp_path / "series"))
    _others_gsps(series, tmp_path / "other.dcm")  # highdicom alone: a CIRCLE and an ELLIPSE on slice 3
    back = api.import_gsps(tmp_path / "other.dcm", series, markups_out=tmp_path / "other.mrk.json")
    ellipses = [m for m in read_markups(tmp_path / "other.mrk.json") if m.shape == "ellipse"]
    assert sorted(m.name for m in ellipses) == ["Nodule A", "Reader 1 2"]
    api.export_gsps(series, ellipses, tmp_path / "ours.dcm", text=False)
    _check_presentation_state(tmp_path / "ours.dcm")
    written = {layer: data.tolist() for layer, kind, data, *_ in _graphics(tmp_path / "ours.dcm")}
    assert list(written.values()) == [[[15.5, 20.5], [25.5, 20.5], [20.5, 15.5], [20.5, 25.5]],  # the circle's axes
                                      [[40.0, 30.0], [60.0, 30.0], [50.0, 25.0], [50.0, 35.0]]]  # the ELLIPSE as written
    assert {kind for _, kind, *_ in _graphics(tmp_path / "ours.dcm")} == {"ELLIPSE"}
    assert len(back.markups) == 6


def test_an_ellipse_off_the_image_is_cut_as_its_outline(tmp_path):
    series = load_series(_axial(tmp_path / "series"))
    geometry = series.geometry
    ends = geometry.ijk_to_lps_points(np.array([[-10, 30, 2], [30, 30, 2], [10, 20, 2], [10, 40, 2.0]]))
    result = api.export_gsps(series, [Markup("closed_curve", "Edge", ends, shape="ellipse")], tmp_path / "pr.dcm")
    assert any("cut away" in line for line in result.skipped)
    [(_, kind, data, *_)] = _graphics(tmp_path / "pr.dcm")
    assert kind == "POLYLINE" and data.min() >= 0 and np.allclose(data[0], data[-1])
    inside = data[(data[:, 0] > 0.01)]  # off the cut at the border: on the ellipse (centre 10.5, 30.5 px)
    np.testing.assert_allclose(np.hypot((inside[:, 0] - 10.5) / 20, (inside[:, 1] - 30.5) / 10), 1, atol=1e-3)
    _check_presentation_state(tmp_path / "pr.dcm")


# --- CSV ovals and circles --------------------------------------------------------------------------

def test_csv_ovals_and_circles_become_ellipse_graphics(tmp_path):
    series = load_series(_axial(tmp_path / "series"))
    rows = [
        dict(finding="O", label="Oval", shape="oval", slice_index="2", coordinates="10 20 30 30"),  # bounding box
        dict(finding="O", label="Oval", shape="oval", slice_index="3", coordinates="12 20 28 30"),
        dict(finding="T", label="Tilted", shape="ellipse", slice_index="4",  # axis ends, 45 degrees
             coordinates="40 20 60 40 53 27 47 33"),
        dict(finding="C", label="Round", shape="circle", slice_index="5", coordinates="60 40 5"),
        # with an exclusion: the finding is drawn as its outline, not as ellipses
        dict(finding="H", label="Holed", shape="oval", slice_index="6", coordinates="20 30 50 50"),
        dict(finding="H", label="Holed", shape="circle", slice_index="6", coordinates="35 40 3", inclusion="false"),
        dict(finding="P", label="Spot", shape="point", slice_index="1", coordinates="5 5"),
    ]
    with open(tmp_path / "table.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["finding", "label", "shape", "slice_index", "coordinates",
                                                    "inclusion"])
        writer.writeheader()
        writer.writerows(rows)
    result = api.import_csv(tmp_path / "table.csv", series.folder, tmp_path / "out", formats=["gsps"])
    path = tmp_path / "out" / "annotations.pr.dcm"
    _check_presentation_state(path)
    ds = pydicom.dcmread(path)
    names = {str(layer.GraphicLayer): str(layer.GraphicLayerDescription) for layer in ds.GraphicLayerSequence}
    uid_k = {s.sop_instance_uid: k for k, s in enumerate(series.slices)}
    got = {(names[layer], uid_k[uid]): (kind, data) for layer, kind, data, _, uid, _ in _graphics(path)
           if kind == "ELLIPSE"}
    # CSV pixel coordinates have pixel centres at integers, a presentation state's at +0.5
    expected = {("Oval 1", 2): [[10, 25], [30, 25], [20, 20], [20, 30]],
                ("Oval 2", 3): [[12, 25], [28, 25], [20, 20], [20, 30]],
                ("Tilted", 4): [[40, 20], [60, 40], [53, 27], [47, 33]],
                ("Round", 5): [[55, 40], [65, 40], [60, 35], [60, 45]]}
    assert set(got) == set(expected)
    for key, points in expected.items():
        np.testing.assert_allclose(got[key][1], np.array(points, dtype=float) + 0.5, atol=1e-4, err_msg=str(key))
    # a layer each (the drawn ellipses), the finding with a hole outlined
    assert sorted(names.values()) == ["Holed", "Oval 1", "Oval 2", "Round", "Spot", "Tilted"]
    assert [name for layer, name in names.items() if layer.startswith("OUTLINE")] == ["Holed"]
    assert len(result.conversion.ellipses) == 4 and all(m.shape == "ellipse" for m in result.conversion.ellipses)
    assert [m.name for m in result.conversion.markups] == ["Spot"]  # markups.mrk.json keeps points and polylines


# --- the other encodings draw the ellipse ---------------------------------------------------------

@pytest.fixture(scope="module")
def oval(tmp_path_factory):
    folder = tmp_path_factory.mktemp("other-encodings")
    series = load_series(_axial(folder / "series"))
    ends = series.geometry.ijk_to_lps_points(np.array([[20, 30, 3], [50, 30, 3], [35, 22, 3], [35, 38, 3.0]]))
    return folder, series, Markup("closed_curve", "Oval", ends, filled=True, shape="ellipse", color=(1.0, 0.0, 0.0))


def test_overlay_fills_the_ellipse_not_the_rhombus(oval):
    folder, series, markup = oval
    api.export_overlay(series, None, [markup], folder / "overlay")
    files = sorted((folder / "overlay").rglob("*.dcm"))
    bits = {}
    for file in files:  # copies with new UIDs: each image's slice by its position
        ds = pydicom.dcmread(file)
        groups = [0x6000 + 2 * n for n in range(16) if (0x6000 + 2 * n, 0x3000) in ds]
        if groups:
            k = series.geometry.lps_to_ijk_points(np.array([ds.ImagePositionPatient], dtype=float))[0, 2]
            bits[int(round(k))] = ds.overlay_array(groups[0]).astype(bool)
    assert list(bits) == [3]
    rows, columns = np.indices(bits[3].shape)
    inside = ((columns - 35) / 15.0) ** 2 + ((rows - 30) / 8.0) ** 2 <= 1  # pixel centres in the ellipse
    near = ((columns - 35) / 16.0) ** 2 + ((rows - 30) / 9.0) ** 2 <= 1  # within a pixel of it
    assert (bits[3] >= inside).all() and not (bits[3] & ~near).any()
    assert bits[3].sum() > 0.95 * np.pi * 15 * 8  # a rhombus would hold 2 a b = 240
    [back] = api.import_overlay(folder / "overlay").markups  # the overlay's own copy of the markup: marked
    assert (back.kind, back.shape) == ("closed_curve", "ellipse")
    np.testing.assert_allclose(back.points_lps, markup.points_lps, atol=1e-6)


def test_rtstruct_contour_is_the_ellipse(oval):
    folder, series, markup = oval
    api.export_rtstruct(series, None, folder / "rt.dcm", markups=[markup])
    ds = pydicom.dcmread(folder / "rt.dcm")
    [roi] = ds.ROIContourSequence
    [contour] = roi.ContourSequence
    assert contour.ContourGeometricType == "CLOSED_PLANAR"
    points = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
    assert len(points) >= 32 and len(points) % 4 == 0
    radius = _on_ellipse(points, markup.points_lps, series.geometry.slice_normal)
    # sampled every 0.01 mm (inside), written as DS (rounded to 1e-3 mm or better)
    assert radius.max() <= 1 + 0.001 / (0.7 * 8) and radius.min() >= 1 - 0.011 / (0.7 * 8)
    for end in markup.points_lps:  # the axis ends are vertices
        assert np.linalg.norm(points - end, axis=1).min() < 1e-3
    assert str(ds.StructureSetROISequence[0].ROIGenerationDescription).endswith("closed_curve ellipse")
    [back] = api.import_rtstruct(folder / "rt.dcm", series).annotations.markups  # its axis ends, marked
    assert (back.kind, back.shape) == ("closed_curve", "ellipse")
    np.testing.assert_allclose(back.points_lps, markup.points_lps, atol=1e-3)  # Contour Data has 3 decimals


def test_sr_writes_an_ellipse_region_that_comes_back_marked(oval):
    import highdicom as hd

    folder, series, markup = oval
    mask = np.zeros(series.geometry.shape, bool)
    mask[3, 10:20, 10:20] = True
    segmentation = Segmentation.from_masks(series.geometry, [mask], [Segment("s", "Square")])
    seg = api.export_seg(series, segmentation, folder / "seg.dcm", seg_type="binary")
    result = api.export_sr(series, seg.paths[0], folder / "sr.dcm", segmentation=segmentation, markups=[markup])
    found = []
    for path in getattr(result, "paths", [result.path]):
        report = hd.sr.srread(path)  # highdicom's own reader

        def walk(items):
            for item in items:
                if item.ValueType == "SCOORD3D":
                    found.append((str(item.GraphicType), np.array(item.GraphicData, dtype=float).reshape(-1, 3)))
                walk(item.get("ContentSequence", []))

        walk(report.ContentSequence)
        mixed = len(report.content.get_volumetric_roi_measurement_groups()) > 0
        if not any(graphic == "ELLIPSE" for graphic, _ in found) or mixed or \
                not Path("/usr/share/java/pixelmed.jar").exists():
            continue  # PixelMed checks every group of a report that has a segment's against TID 1411 (README, SR)
        # PixelMed's TID 1500 validator accepts an ELLIPSE image region (TID 1410)
        done = subprocess.run([require_tool("java"), "-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathExprGrpLimit=0",
                               "-Djdk.xml.xpathTotalOpLimit=0", "-cp", "/usr/share/java/pixelmed.jar",
                               "com.pixelmed.validate.DicomSRValidator", str(path)], capture_output=True, text=True)
        assert "IOD validation complete" in done.stdout + done.stderr, done.stderr[-300:]
        assert not [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
    ellipses = [data for graphic, data in found if graphic == "ELLIPSE"]
    assert len(ellipses) == 1
    np.testing.assert_allclose(ellipses[0], markup.points_lps, atol=1e-4)
    back = api.import_sr(result.path, series)
    [got] = [m for m in back.markups if m.name == "Oval"]
    assert (got.kind, got.shape) == ("closed_curve", "ellipse")
    np.testing.assert_allclose(got.points_lps, markup.points_lps, atol=1e-4)
    areas = [r.value for r in result.records if r.markup == "Oval" and "Area" in r.concept.meaning]
    assert areas == [pytest.approx(np.pi * 15 * 0.7 * 8 * 0.7, rel=1e-9)]
