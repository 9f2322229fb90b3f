"""Slicer markups JSON (.mrk.json) reading and writing, LPS and RAS."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import rotation

from DicomAnnotEmbedLib.core.errors import InputError, OutputError
from DicomAnnotEmbedLib.files.markups_io import (MARKUPS_SCHEMA, markup_from_dict, markup_to_dict, read_markups,
                                           write_markups)
from DicomAnnotEmbedLib.core.model import Markup

FLIP = np.diag([-1.0, -1.0, 1.0])


def every_kind():
    tilt = rotation([1, 2, 3], 35)
    plane_axes = rotation([0.3, -1, 0.2], 50)
    return [
        Markup("point_list", "F", points_lps=[[1.5, -2.25, 3.0], [10.125, 20.0, -30.5], [0.1, 0.2, 0.3]],
               point_labels=["a", "b", "c"], color=(0.2, 0.4, 0.6), description="three points"),
        Markup("line", "L", points_lps=[[-5.3, 7.1, 12.0], [40.0, -3.3, 18.7]]),
        Markup("angle", "A", points_lps=[[0, 0, 0], [10, 0, 0], [10, 10, 5]]),
        Markup("curve", "C", points_lps=[[0, 1, 2], [3, 5, 2], [6, 4, 3], [9, 9, 9]]),
        Markup("closed_curve", "CC", points_lps=[[0, 0, 7], [20, 0, 7], [20, 10, 7], [0, 10, 7]]),
        Markup("roi", "R", points_lps=[[12.5, -40.25, 7.0]], roi_center_lps=[12.5, -40.25, 7.0],
               roi_size=[30.0, 12.5, 8.0], roi_axes_lps=tilt),
        Markup("plane", "P", points_lps=[[-3.0, 14.0, 60.5]], roi_center_lps=[-3.0, 14.0, 60.5],
               roi_size=[80.0, 45.0, 0.0], roi_axes_lps=plane_axes),
    ]


def assert_same(read, written):
    assert [m.kind for m in read] == [m.kind for m in written]
    for r, w in zip(read, written):
        assert r.name == w.name
        np.testing.assert_allclose(r.points_lps, w.points_lps, atol=1e-9, rtol=0)
        assert r.point_labels == w.point_labels
        np.testing.assert_allclose(r.color, w.color, atol=1e-12)
        assert r.description == w.description
        if w.kind in ("roi", "plane"):
            np.testing.assert_allclose(r.roi_center_lps, w.roi_center_lps, atol=1e-9, rtol=0)
            np.testing.assert_allclose(r.roi_size, w.roi_size, atol=1e-9, rtol=0)
            np.testing.assert_allclose(r.roi_axes_lps, w.roi_axes_lps, atol=1e-9, rtol=0)


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_round_trip_every_kind(tmp_path, system):
    markups = every_kind()
    path = tmp_path / "all.mrk.json"
    write_markups(path, markups, coordinate_system=system)
    assert_same(read_markups(path), markups)
    assert [p.name for p in tmp_path.iterdir()] == ["all.mrk.json"]  # no temporary left behind


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_written_file_has_slicer_layout(tmp_path, system):
    path = tmp_path / "out.mrk.json"
    markups = every_kind()
    write_markups(path, markups, coordinate_system=system)
    document = json.loads(path.read_text())
    assert document["@schema"] == MARKUPS_SCHEMA
    entries = document["markups"]
    assert [e["type"] for e in entries] == ["Fiducial", "Line", "Angle", "Curve", "ClosedCurve", "ROI", "Plane"]
    flip = FLIP if system == "RAS" else np.eye(3)
    for entry, markup in zip(entries, markups):
        assert entry["coordinateSystem"] == system and entry["coordinateUnits"] == "mm"
        for point in entry["controlPoints"]:
            assert point["positionStatus"] == "defined" and point["selected"] is True
            assert point["locked"] is False and point["visibility"] is True and len(point["orientation"]) == 9
        positions = np.array([p["position"] for p in entry["controlPoints"]])
        np.testing.assert_allclose(positions, markup.points_lps @ flip, atol=1e-12)
        assert entry["display"]["color"] == list(markup.color) == entry["display"]["selectedColor"]
    roi, plane = entries[5], entries[6]
    assert roi["roiType"] == "Box"
    np.testing.assert_allclose(roi["center"], flip @ markups[5].roi_center_lps)
    np.testing.assert_allclose(np.reshape(roi["orientation"], (3, 3)), flip @ markups[5].roi_axes_lps, atol=1e-12)
    assert plane["planeType"] == "pointNormal" and plane["sizeMode"] == "absolute"
    assert plane["planeBounds"] == [-40.0, 40.0, -22.5, 22.5]
    np.testing.assert_allclose(plane["normal"], flip @ markups[6].roi_axes_lps[:, 2], atol=1e-12)
    base_to_node = np.reshape(plane["baseToNode"], (4, 4))
    np.testing.assert_allclose(base_to_node[:3, 3], flip @ markups[6].roi_center_lps, atol=1e-12)


# A file as Slicer 5 writes it in RAS (trimmed display block): two fiducials, a line, and an
# ROI rotated by 90 degrees about S (its first axis points Anterior, its second Left).
SLICER_RAS_FILE = """{
"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
"markups": [
  {"type": "Fiducial", "coordinateSystem": "RAS", "coordinateUnits": "mm", "locked": false,
   "fixedNumberOfControlPoints": false, "labelFormat": "%N-%d", "lastUsedControlPointNumber": 2,
   "controlPoints": [
     {"id": "1", "label": "F-1", "description": "", "associatedNodeID": "", "position": [10.0, 20.0, 30.0],
      "orientation": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "selected": true, "locked": false,
      "visibility": true, "positionStatus": "defined"},
     {"id": "2", "label": "F-2", "description": "", "associatedNodeID": "", "position": [-5.5, 0.25, -12.0],
      "orientation": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "selected": true, "locked": false,
      "visibility": true, "positionStatus": "defined"}],
   "measurements": [],
   "display": {"visibility": true, "opacity": 1.0, "color": [0.4, 1.0, 1.0],
               "selectedColor": [1.0, 0.5000076295109483, 0.5000076295109483], "glyphType": "Sphere3D"}},
  {"type": "Line", "coordinateSystem": "RAS", "coordinateUnits": "mm", "locked": false,
   "controlPoints": [
     {"id": "1", "label": "L-1", "position": [1.0, 2.0, 3.0], "selected": false, "positionStatus": "defined"},
     {"id": "2", "label": "L-2", "position": [4.0, -6.0, 8.0], "selected": true, "positionStatus": "defined"}],
   "display": {"color": [0.0, 1.0, 0.0], "selectedColor": [1.0, 0.0, 0.0]}},
  {"type": "ROI", "coordinateSystem": "RAS", "coordinateUnits": "mm", "roiType": "Box",
   "center": [50.0, -20.0, 5.0], "orientation": [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
   "size": [40.0, 10.0, 6.0], "insideOut": false,
   "controlPoints": [{"id": "1", "label": "R-1", "position": [50.0, -20.0, 5.0], "positionStatus": "defined"}],
   "display": {"color": [0.4, 1.0, 1.0], "selectedColor": [1.0, 0.5, 0.5]}}
]}
"""


def test_slicer_ras_file_reads_as_lps(tmp_path):
    path = tmp_path / "Scene points.mrk.json"
    path.write_text(SLICER_RAS_FILE)
    fiducials, line, roi = read_markups(path)

    assert fiducials.kind == "point_list" and fiducials.point_labels == ["F-1", "F-2"]
    np.testing.assert_allclose(fiducials.points_lps, [[-10.0, -20.0, 30.0], [5.5, -0.25, -12.0]])
    np.testing.assert_allclose(fiducials.color, (1.0, 0.5000076295109483, 0.5000076295109483))
    # Slicer names nodes after the file when the JSON has no "name"; several get a suffix.
    assert [m.name for m in (fiducials, line, roi)] == ["Scene points_1", "Scene points_2", "Scene points_3"]

    assert line.kind == "line"
    np.testing.assert_allclose(line.points_lps, [[-1.0, -2.0, 3.0], [-4.0, 6.0, 8.0]])
    assert line.color == (0.0, 1.0, 0.0)  # not all points selected: Slicer shows "color"

    assert roi.kind == "roi"
    np.testing.assert_allclose(roi.roi_center_lps, [-50.0, 20.0, 5.0])
    np.testing.assert_allclose(roi.roi_size, [40.0, 10.0, 6.0])
    # Independent check: the ROI's first axis is RAS (0, 1, 0) = Anterior = LPS (0, -1, 0); the
    # second is RAS (-1, 0, 0) = Left = LPS (1, 0, 0).
    np.testing.assert_allclose(roi.roi_axes_lps, [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-12)
    # Corners in RAS from the file's own numbers: centre + sum of +-half size times axis (half sizes 20, 5, 3).
    axes_ras = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rows: the three axes
    corners_ras = np.array([[50.0, -20.0, 5.0] + a * 20.0 * axes_ras[0] + b * 5.0 * axes_ras[1] + c * 3.0 * axes_ras[2]
                            for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)])
    expected_lps = corners_ras * [-1, -1, 1]
    found = roi.roi_corners_lps()
    assert sorted(map(tuple, np.round(found, 9))) == sorted(map(tuple, np.round(expected_lps, 9)))


def test_slicer_lps_plane_with_object_to_base(tmp_path):
    # As Slicer writes an axial plane at RAS (10, 20, 30), 100 x 50 mm, in an LPS file: both
    # 4x4 matrices have rows 0-1 negated.
    entry = {
        "type": "Plane", "coordinateSystem": "LPS", "coordinateUnits": "mm",
        "planeType": "pointNormal", "sizeMode": "absolute", "autoScalingFactor": 1.0,
        "center": [-10.0, -20.0, 30.0], "normal": [-0.0, -0.0, 1.0],
        "objectToBase": [-1.0, -0.0, -0.0, -0.0, -0.0, -1.0, -0.0, -0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        "baseToNode": [-1.0, -0.0, -0.0, -10.0, -0.0, -1.0, -0.0, -20.0, 0.0, 0.0, 1.0, 30.0, 0.0, 0.0, 0.0, 1.0],
        "orientation": [-1.0, -0.0, 0.0, -0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
        "size": [100.0, 50.0, 0.0], "planeBounds": [-50.0, 50.0, -25.0, 25.0],
        "controlPoints": [{"id": "1", "label": "P-1", "position": [-10.0, -20.0, 30.0], "positionStatus": "defined"}],
    }
    path = tmp_path / "plane.mrk.json"
    path.write_text(json.dumps({"@schema": MARKUPS_SCHEMA, "markups": [entry]}))
    (plane,) = read_markups(path)
    assert plane.kind == "plane" and plane.name == "plane"
    np.testing.assert_allclose(plane.roi_center_lps, [-10.0, -20.0, 30.0])
    np.testing.assert_allclose(plane.roi_size, [100.0, 50.0, 0.0])
    np.testing.assert_allclose(plane.roi_axes_lps, np.diag([-1.0, -1.0, 1.0]), atol=1e-12)


def test_minimal_point_normal_plane_and_offset_bounds(tmp_path):
    # The minimal form Slicer accepts (one control point, baseToNode rotation, planeBounds);
    # asymmetric bounds move the rectangle's centre away from the control point.
    rot = rotation([1, 1, 0], 40)
    base_to_node = np.eye(4)
    base_to_node[:3, :3] = rot
    entry = {"type": "Plane", "coordinateSystem": "LPS", "planeType": "pointNormal",
             "baseToNode": base_to_node.reshape(16).tolist(), "planeBounds": [-10.0, 30.0, -5.0, 5.0],
             "controlPoints": [{"position": [60.0, -26.0, -175.0]}]}
    path = tmp_path / "p.mrk.json"
    path.write_text(json.dumps({"@schema": MARKUPS_SCHEMA, "markups": [entry]}))
    (plane,) = read_markups(path)
    np.testing.assert_allclose(plane.roi_axes_lps, rot, atol=1e-12)
    np.testing.assert_allclose(plane.roi_center_lps, np.array([60.0, -26.0, -175.0]) + 10.0 * rot[:, 0], atol=1e-9)
    np.testing.assert_allclose(plane.roi_size, [40.0, 10.0, 0.0])
    np.testing.assert_allclose(plane.points_lps, [[60.0, -26.0, -175.0]])


def test_legacy_three_point_plane(tmp_path):
    entry = {"type": "Plane", "coordinateSystem": "LPS",
             "controlPoints": [{"position": [0.0, 0.0, 0.0]}, {"position": [10.0, 0.0, 0.0]},
                               {"position": [0.0, 5.0, 0.0]}]}
    path = tmp_path / "old.mrk.json"
    path.write_text(json.dumps({"@schema": MARKUPS_SCHEMA, "markups": [entry]}))
    (plane,) = read_markups(path)
    np.testing.assert_allclose(plane.roi_axes_lps, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(plane.roi_center_lps, [0.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(plane.roi_size, [20.0, 10.0, 0.0])  # Slicer's auto size


def test_unplaced_points_are_skipped_and_names_kept(tmp_path):
    entry = {"type": "Curve", "name": "My curve", "coordinateSystem": "LPS",
             "controlPoints": [{"label": "a", "position": [1, 2, 3]},
                               {"label": "b", "position": "", "positionStatus": "undefined"},
                               {"label": "c", "position": [4, 5, 6]}]}
    path = tmp_path / "c.mrk.json"
    path.write_text(json.dumps({"@schema": MARKUPS_SCHEMA, "markups": [entry]}))
    (curve,) = read_markups(path)
    assert curve.name == "My curve" and curve.point_labels == ["a", "c"]
    np.testing.assert_allclose(curve.points_lps, [[1, 2, 3], [4, 5, 6]])


def _write(tmp_path, text, name="bad.mrk.json"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, words", [
    ("{not json", ["invalid JSON"]),
    ('{"@schema": "x", "markups": {}}', ['"markups" list']),
    ('[1, 2]', ['"markups" list']),
    ('{"markups": [{"type": "Spline", "controlPoints": []}]}', ["markup 1", "unknown markups type", "'Spline'"]),
    ('{"markups": [{"type": "Fiducial", "name": "pts", "controlPoints": [{"position": [1, 2, 3]}, '
     '{"label": "tip", "position": ["a", 2, 3]}]}]}', ["markup 1 ('pts')", "control point 2 ('tip')", "position"]),
    ('{"markups": [{"type": "Line", "controlPoints": [{"position": [1, 2]}, {"position": [1, 2, 3]}]}]}',
     ["control point 1", "3 numbers"]),
    ('{"markups": [{"type": "Line", "controlPoints": [{"position": [1, 2, true]}, {"position": [1, 2, 3]}]}]}',
     ["control point 1"]),
    ('{"markups": [{"type": "Line", "coordinateSystem": "XYZ", "controlPoints": []}]}', ["coordinateSystem"]),
    ('{"markups": [{"type": "Line", "controlPoints": [{"position": [1, 2, 3]}]}]}', ["at least 2 control points"]),
    ('{"markups": [{"type": "ROI", "center": [0, 0, 0], "controlPoints": []}]}', ['"size"']),
    ('{"markups": [{"type": "ROI", "center": [0, 0, 0], "size": [1, 1, 1], "orientation": [1, 0, 0],'
     ' "controlPoints": []}]}', ["ROI orientation", "9 numbers"]),
])
def test_bad_input_names_file_and_problem(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        read_markups(path)
    assert caught.value.path == str(path)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as caught:
        read_markups(tmp_path / "nothing.mrk.json")
    assert "nothing.mrk.json" in str(caught.value)


def test_write_failure_leaves_no_temporary(tmp_path):
    target = tmp_path / "a_directory.mrk.json"
    target.mkdir()
    with pytest.raises(OutputError):
        write_markups(target, every_kind())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_directory.mrk.json"]
    with pytest.raises(OutputError):
        write_markups(tmp_path / "no" / "such" / "folder.mrk.json", every_kind())


def test_write_replaces_existing_file(tmp_path):
    path = tmp_path / "m.mrk.json"
    write_markups(path, every_kind()[:2])
    write_markups(path, every_kind()[2:3], coordinate_system="RAS")
    (angle,) = read_markups(path)
    assert angle.kind == "angle"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_bad_coordinate_system_and_axes(tmp_path):
    with pytest.raises(InputError):
        write_markups(tmp_path / "x.mrk.json", every_kind(), coordinate_system="XYZ")
    skewed = Markup("roi", "skew", roi_center_lps=[0, 0, 0], roi_size=[1, 1, 1],
                    roi_axes_lps=[[1, 0.5, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(InputError, match="orthonormal"):
        write_markups(tmp_path / "x.mrk.json", [skewed])
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_single_entry_round_trip(system):
    # The entry form is embedded elsewhere (overlay metadata); it must survive JSON as well.
    for markup in every_kind():
        entry = json.loads(json.dumps(markup_to_dict(markup, coordinate_system=system)))
        assert entry["coordinateSystem"] == system
        assert_same([markup_from_dict(entry, "meta.dcm")], [markup])


def test_single_entry_errors_name_the_source():
    with pytest.raises(InputError) as caught:
        markup_from_dict({"type": "Line", "name": "ruler", "controlPoints": [{"position": [1, "x", 3]}]}, "IM0001.dcm")
    assert caught.value.path == "IM0001.dcm"
    assert "markup ('ruler')" in str(caught.value) and "control point 1" in str(caught.value)
    with pytest.raises(InputError):
        markup_to_dict(every_kind()[0], coordinate_system="IJK")
