"""Reading an annotation table draws its shapes many at a time (issue 14): ``rasterize``'s batch
functions (``polygon_masks``, ``ellipse_masks``, ``rectangle_masks``) and ``csv_shapes._draw``
give the pixels that the one-shape functions and the table's former per-shape rasteriser gave,
bit for bit, and the label layers built from the findings' planes are those of the former
layer-by-layer volumes.

The references below are the former code, kept verbatim: ``reference_rasterize`` is
``csv_shapes._rasterize`` and ``reference_layers`` the layering of ``csv_table._build`` with
``csv_shapes._free_layer`` (at commit 69b4d0b). They run on the pieces that the table reader
keeps for each row, on series of odd and oblique geometry, with the shapes of the benchmark
(``Testing/benchmarks/bench_csv.py``): freehand contours, LIDC polygons with "outside" vertices,
rotated ellipses, circles, rectangles, exclusions, overlapping findings, points and polylines,
and shapes at the image's edges, on half-pixel vertices, too small to select a pixel, or bad.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import pytest

from conftest import rotation
from DicomAnnotEmbedLib.core import rasterize
from DicomAnnotEmbedLib.core.errors import InputError
from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.rasterize import (ellipse_mask, ellipse_masks, polygon_mask, polygon_masks,
                                               polyline_mask, rectangle_mask, rectangle_masks)
from DicomAnnotEmbedLib.core.series import load_series
from DicomAnnotEmbedLib.dicom.dicomize import dicomize_array
from DicomAnnotEmbedLib.files.csv_shapes import _ellipse, _merged_planes
from DicomAnnotEmbedLib.files.csv_table import _read_findings, read_annotation_table

HEADER = ["finding", "label", "shape", "slice_index", "space", "coordinates", "boundary", "inclusion"]


# --- the former code (69b4d0b), the reference -----------------------------------------------------

def reference_rasterize(kind: str, points: np.ndarray, shape2d: Tuple[int, int], boundary: str,
                        radius: Optional[float]) -> Tuple[int, int, np.ndarray]:
    """``csv_shapes._rasterize`` as it was: one shape drawn on a window of the image around it."""
    if kind == "circle":
        center = points[0]
        radius = float(np.hypot(*(points[1] - points[0]))) if radius is None else radius
        lo, hi = center - radius, center + radius
    elif kind == "ellipse":
        center, radii, angle = _ellipse(points)
        reach = max(radii)
        lo, hi = center - reach, center + reach
    else:
        lo, hi = points.min(axis=0), points.max(axis=0)
    rows, columns = shape2d
    c0, r0 = max(int(np.floor(lo[0])) - 2, 0), max(int(np.floor(lo[1])) - 2, 0)
    c1, r1 = min(int(np.ceil(hi[0])) + 2, columns - 1), min(int(np.ceil(hi[1])) + 2, rows - 1)
    window = (max(r1 - r0 + 1, 1), max(c1 - c0 + 1, 1))
    offset = np.array([c0, r0], dtype=float)
    local = points - offset
    if kind == "circle":
        mask = ellipse_mask(window, center - offset, (radius, radius))
    elif kind == "ellipse":
        mask = ellipse_mask(window, center - offset, radii, angle)
    elif kind == "rectangle" and len(points) == 2 and boundary == "inside":
        mask = rectangle_mask(window, local[0], local[1])
    elif kind == "rectangle" and len(points) == 2:
        (x0, y0), (x1, y1) = local
        mask = polygon_mask(window, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), boundary=boundary)
    elif kind in ("rectangle", "polygon", "freehand"):
        mask = polygon_mask(window, local, boundary=boundary)
    elif kind == "polyline":
        mask = polyline_mask(window, local)
    else:  # point
        mask = np.zeros(window, dtype=bool)
        for point in local:
            mask |= polyline_mask(window, point[None])
    return r0, c0, mask


def reference_layers(findings, shape):
    """The layers of ``csv_table._build`` as they were: a uint8 volume per layer, a finding in the
    first layer it does not overlap (``_free_layer``), uint16 past 255, stacked at the end.
    Returns the stack (None without planes) and each finding's (layer, value) or None."""
    layers, next_value, placed = [], [], []
    for finding in findings:
        planes = _merged_planes(finding.pieces)
        if not planes:
            placed.append(None)
            continue
        layer = None
        for index, volume in enumerate(layers):
            if next_value[index] > 65535:
                continue
            if not any(volume[k, r0:r0 + m.shape[0], c0:c0 + m.shape[1]][m].any() for k, (r0, c0, m) in planes.items()):
                layer = index
                break
        if layer is None:
            layers.append(np.zeros(shape, dtype=np.uint8))
            next_value.append(1)
            layer = len(layers) - 1
        value = next_value[layer]
        next_value[layer] += 1
        if value > 255 and layers[layer].dtype == np.uint8:
            layers[layer] = layers[layer].astype(np.uint16)
        for k, (r0, c0, mask) in planes.items():
            layers[layer][k, r0:r0 + mask.shape[0], c0:c0 + mask.shape[1]][mask] = value
        placed.append((layer, value))
    if not layers:
        return None, placed
    dtype = np.uint16 if any(layer.dtype == np.uint16 for layer in layers) else np.uint8
    return np.stack([layer.astype(dtype) for layer in layers]), placed


# --- the batch functions against the one-shape functions ----------------------------------------

def _random_images(rng, count):
    shapes = [(int(rng.integers(0, 50)), int(rng.integers(0, 50))) for _ in range(count)]
    shapes[:3] = [(0, 0), (1, 1), (0, 7)]  # empty and tiny images
    return shapes


def test_polygon_masks_equal_polygon_mask():
    """Polygons of 0 to 60 vertices, on their images and far outside them (clipped), on half and
    whole pixels (crossings on pixel centres, horizontal edges), repeated vertices; both
    boundaries; more pixels than one pass (``BATCH_PIXELS``) draws."""
    rng = np.random.default_rng(21)
    shapes = _random_images(rng, 1500)
    polygons, boundaries = [], []
    for n, (rows, cols) in enumerate(shapes):
        count = int(rng.integers(0, 6)) if n % 7 == 0 else int(rng.integers(3, 61))
        points = rng.uniform(-3, [cols + 3, rows + 3], (count, 2))
        if n % 5 == 0:
            points = np.round(points * 2) / 2
        if n % 11 == 0 and count:
            points[0] = [-400.0, rows / 2]  # far away: the Liang-Barsky clip cuts the edges
        if n % 13 == 0 and count > 2:
            points[2] = points[1]
        polygons.append(points)
        boundaries.append("outside" if n % 2 else "inside")
    assert sum(r * c for r, c in shapes) > rasterize.BATCH_PIXELS
    batch = polygon_masks(shapes, polygons, boundaries)
    assert len(batch) == len(shapes)
    for shape, points, boundary, mask in zip(shapes, polygons, boundaries, batch):
        expected = polygon_mask(shape, points, boundary)
        assert mask.shape == expected.shape and mask.dtype == bool
        assert np.array_equal(mask, expected), (shape, points.tolist(), boundary)


def test_ellipse_masks_equal_ellipse_mask():
    """Rotated ellipses, circles, zero axes (a segment, a point), centres outside the image, axes
    far larger than it, pixel-centred and half-pixel centres."""
    rng = np.random.default_rng(22)
    shapes = _random_images(rng, 2000)
    centers = rng.uniform(-10, 60, (len(shapes), 2))
    centers[::4] = np.round(centers[::4] * 2) / 2
    radii = rng.uniform(0, 25, (len(shapes), 2))
    radii[::9, 1] = 0.0
    radii[::17] = 0.0
    radii[::23] = [1e4, 3.0]
    radii[1::6, 1] = radii[1::6, 0]  # circles
    angles = rng.uniform(-360, 360, len(shapes))
    angles[::3] = 0.0
    angles[1::10] = 90.0
    batch = ellipse_masks(shapes, centers, radii, angles)
    for shape, center, radius, angle, mask in zip(shapes, centers, radii, angles, batch):
        assert np.array_equal(mask, ellipse_mask(shape, center, radius, angle)), (shape, center, radius, angle)


def test_rectangle_masks_equal_rectangle_mask():
    rng = np.random.default_rng(23)
    shapes = _random_images(rng, 2000)
    first = rng.uniform(-10, 60, (len(shapes), 2))
    second = rng.uniform(-10, 60, (len(shapes), 2))
    first[::3] = np.round(first[::3])
    second[::4] = np.round(second[::4] * 2) / 2 + 1e-10  # within the tolerance of a pixel centre
    first[::50] = 1e30
    second[::70] = -1e30
    batch = rectangle_masks(shapes, first, second)
    for shape, a, b, mask in zip(shapes, first, second, batch):
        assert np.array_equal(mask, rectangle_mask(shape, a, b)), (shape, a, b)


def test_batch_functions_refuse_what_the_one_shape_functions_refuse():
    with pytest.raises(InputError):
        polygon_masks([(5, 5)], [np.array([[0.0, 0.0], [np.nan, 1.0], [2.0, 2.0]])], ["inside"])
    with pytest.raises(InputError):
        ellipse_masks([(5, 5)], [(np.inf, 1.0)], [(1.0, 1.0)], [0.0])
    with pytest.raises(ValueError):
        polygon_masks([(5, 5)], [np.zeros((3, 2))], ["around"])
    assert polygon_masks([], [], []) == [] and ellipse_masks([], [], [], []) == [] and rectangle_masks([], [], []) == []


# --- a table's shapes against the former per-shape rasteriser ----------------------------------------

def _ring(center, radius, count, wobble, rng):
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    radii = radius * (1 + wobble * rng.uniform(-1, 1, count))
    return np.column_stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)])


def _text(points) -> str:
    return " ".join(f"{v:.3f}" for v in np.asarray(points, dtype=float).ravel())


def _table(path: Path, geometry, rng) -> Path:
    """The benchmark's shapes on every slice (3 findings, two of them overlapping) and odd ones."""
    depth, rows_n, cols_n = geometry.shape
    rows = []
    for k in range(depth):
        for finding, center in (("A", (0.35, 0.4)), ("B", (0.45, 0.45)), ("C", (0.7, 0.65))):
            c = np.array([center[0] * cols_n, center[1] * rows_n]) + rng.uniform(-2, 2, 2)
            radius = 0.12 * min(rows_n, cols_n) * (1 + 0.3 * np.sin(k))
            base = dict(finding=finding, label=f"Lesion {finding}", slice_index=k)
            rows.append(dict(base, shape="freehand", coordinates=_text(_ring(c, radius, 60, 0.08, rng))))
            polygon = _ring(c + [3, -2], radius * 0.6, 8, 0.15, rng)
            if k % 3 == 0:  # patient coordinates: the points come through the oblique geometry
                lps = geometry.ijk_to_lps_points(np.column_stack([polygon, np.full(len(polygon), k)]))
                rows.append(dict(base, slice_index="", shape="polygon", space="patient", coordinates=_text(lps),
                                 boundary="outside"))
            else:
                rows.append(dict(base, shape="polygon", coordinates=_text(polygon), boundary="outside"))
            a, b, t = radius * 0.7, radius * 0.4, rng.uniform(0, np.pi)
            axis_a, axis_b = a * np.array([np.cos(t), np.sin(t)]), b * np.array([-np.sin(t), np.cos(t)])
            rows.append(dict(base, shape="ellipse", coordinates=_text([c - axis_a, c + axis_a, c - axis_b, c + axis_b])))
            rows.append(dict(base, shape="oval", coordinates=_text([c - [4, 3], c + [5, 2.5]])))
            rows.append(dict(base, shape="circle", coordinates=_text([c[0] - 3, c[1] + 2, radius * 0.35])))
            rows.append(dict(base, shape="circle", coordinates=_text([c, c + [2.5, 1.5]])))
            size = 3 if k % 2 else 6
            rows.append(dict(base, shape="rectangle", inclusion="false" if k % 2 else "",
                             coordinates=_text([c - size, c + size])))
            rows.append(dict(base, shape="rectangle", boundary="outside", coordinates=_text([c - 7.5, c + [6, 7.5]])))
            corners = c + np.array([[-6, 0], [0, -4], [6, 0], [0, 4]])
            rows.append(dict(base, shape="rectangle", coordinates=_text(corners), inclusion="false" if k % 4 == 1
                             else ""))
        # at the image's edges and corners, on half pixels, too small to select a pixel centre
        edge = [(-0.5, -0.5), (cols_n - 0.5, -0.5), (cols_n - 0.5, 3.5), (-0.5, 3.5)]
        rows.append(dict(finding="E", shape="polygon", slice_index=k, coordinates=_text(edge), boundary="outside"))
        rows.append(dict(finding="E", shape="circle", slice_index=k, coordinates=_text([0, rows_n - 1, 4])))
        rows.append(dict(finding="E", shape="ellipse", slice_index=k,
                         coordinates=_text([[cols_n - 6, rows_n - 1], [cols_n - 0.5, rows_n - 0.5]])))
        rows.append(dict(finding="E", shape="polygon", slice_index=k,
                         coordinates=_text([[10.2, 10.2], [10.4, 10.2], [10.3, 10.4]])))  # no pixel centre
        rows.append(dict(finding="E", shape="rectangle", slice_index=k, coordinates="20.5 20.5 22.5 22.5"))
        rows.append(dict(finding="E", shape="freehand", slice_index=k,
                         coordinates=_text([[5, 12], [25, 12], [25, 12], [15, 12], [15, 16]])))  # flat, repeated
        rows.append(dict(finding="P", label="Landmarks", shape="point", slice_index=k,
                         coordinates=_text([[3.5, 7.5], [cols_n - 1, rows_n - 1]])))
        rows.append(dict(finding=f"D{k}", shape="polyline", slice_index=k,
                         coordinates=_text([[2, 2], [cols_n / 2, rows_n / 3], [cols_n - 0.5, 4.5]])))
    rows.append(dict(finding="bad", shape="polygon", slice_index=0, coordinates="1 1 2 2 nan 3"))
    rows.append(dict(finding="bad", shape="polygon", slice_index=0, coordinates=f"1 1 {cols_n + 3} 2 3 3"))
    rows.append(dict(finding="bad", shape="circle", slice_index=0, coordinates="5 5 0"))
    return _write_rows(path, rows)


GEOMETRIES = {
    # the benchmark's kind: axial, square pixels
    "axial": ((6, 96, 96), (-30.0, -30.0, -10.0), (0.7, 0.7, 1.25), np.eye(3)),
    # oblique, anisotropic pixels, odd and unequal rows and columns
    "oblique": ((5, 61, 47), (-40.0, 25.0, -10.0), (0.9, 0.6, 2.5), rotation([1, 2, 0.5], 25)),
    # rotated by 90 degrees in plane and flipped along the slices
    "rotated": ((4, 33, 70), (12.0, -8.0, 30.0), (1.1, 0.45, 3.0), rotation([0, 0, 1], 90) @ np.diag([1, 1, -1])),
}


@pytest.fixture(scope="module", params=sorted(GEOMETRIES))
def case(request, tmp_path_factory):
    shape, origin, spacing, directions = GEOMETRIES[request.param]
    folder = tmp_path_factory.mktemp(f"batch_{request.param}")
    geometry = VolumeGeometry.from_origin_spacing_directions(shape, origin, spacing, directions)
    dicomize_array(np.zeros(shape, dtype=np.int16), geometry, folder / "series")
    series = load_series(folder / "series")
    return series, _table(folder / "table.csv", series.geometry, np.random.default_rng(len(request.param)))


@pytest.mark.parametrize("lines_in_segments", [False, True])
def test_a_tables_shapes_are_drawn_as_the_per_shape_rasteriser_drew_them(case, lines_in_segments):
    series, table = case
    _, result, findings = _read_findings(table, series, "inside", "lidc", lines_in_segments, None, None)
    pieces = [piece for finding in findings.values() for piece in finding.pieces]
    kinds = {(piece.kind, len(piece.points), piece.boundary, piece.include) for piece in pieces}
    assert {("freehand", 60, "inside", True), ("polygon", 8, "outside", True), ("ellipse", 4, "inside", True),
            ("ellipse", 2, "inside", True), ("circle", 1, "inside", True), ("circle", 2, "inside", True),
            ("rectangle", 2, "inside", False), ("rectangle", 2, "outside", True),
            ("rectangle", 4, "inside", True), ("rectangle", 4, "inside", False)} <= kinds
    assert (("point", 2, "inside", True) in kinds) == lines_in_segments
    shape2d = series.geometry.shape[1:]
    for piece in pieces:
        radius = piece.radius if piece.kind == "circle" and len(piece.points) == 1 else None
        r0, c0, mask = reference_rasterize(piece.kind, piece.points, shape2d, piece.boundary, radius)
        assert (piece.r0, piece.c0) == (r0, c0), piece.row
        assert piece.mask.shape == mask.shape and np.array_equal(piece.mask, mask), piece.row
    empty = sorted(piece.row for piece in pieces if not piece.mask.any())
    assert empty and [w.row for w in result.warnings] == empty  # the shapes that select no pixel centre
    assert [p.problem.split(" ")[0] for p in result.bad_rows] == ["coordinate", "point", "circle"]


def assert_layered_as_before(table: Path, series) -> np.ndarray:
    """The table's layers and each segment's layer and label value equal those of the former
    layer volumes (``reference_layers``) built from the same pieces; returns the layers."""
    conversion = read_annotation_table(table, series)
    _, _, findings = _read_findings(table, series, "inside", "lidc", False, None, None)
    expected, placed = reference_layers(list(findings.values()), series.geometry.shape)
    layers = conversion.segmentation.layers
    assert layers.dtype == expected.dtype and np.array_equal(layers, expected)
    segments = {s.id: (s.layer, s.label_value) for s in conversion.segmentation.segments}
    assert {f: p for f, p in zip(findings, placed) if p is not None} == segments
    return layers


def _series_of_zeros(folder: Path, shape):
    geometry = VolumeGeometry.from_origin_spacing_directions(shape, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), np.eye(3))
    dicomize_array(np.zeros(shape, dtype=np.int16), geometry, folder / "series")
    return load_series(folder / "series")


def _write_rows(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, HEADER, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_tables_layers_are_those_of_the_former_layer_volumes(case):
    """Overlapping findings in further layers, exclusions cut, the same label values."""
    series, table = case
    assert assert_layered_as_before(table, series).shape[0] >= 2


def test_label_values_past_255_make_a_uint16_stack(tmp_path):
    """300 findings that do not overlap share a layer: values 1..300, uint16, as before."""
    series = _series_of_zeros(tmp_path, (2, 40, 40))
    rows = [dict(finding=f"F{n}", shape="rectangle", slice_index=n // 200, coordinates=_text([n % 200 // 20 * 4,
            n % 20 * 2, n % 200 // 20 * 4 + 1, n % 20 * 2])) for n in range(300)]
    rows.append(dict(finding="over", shape="rectangle", slice_index=0, coordinates="0 0 3 3"))
    layers = assert_layered_as_before(_write_rows(tmp_path / "t.csv", rows), series)
    assert layers.dtype == np.uint16 and layers.shape[0] == 2 and int(layers.max()) == 300


def test_many_small_findings_on_a_slice_are_layered_as_before(tmp_path):
    """2,000 small circles and boxes on two slices, some overlapping across the tiles by which the
    layers find a plane's neighbours: the layers and label values of the former layer volumes."""
    series = _series_of_zeros(tmp_path, (2, 150, 170))
    rng = np.random.default_rng(31)
    rows = []
    for n in range(2000):
        c, r = rng.uniform(3, [166, 146])
        if n % 3:
            rows.append(dict(finding=f"N{n}", shape="circle", slice_index=n % 2, coordinates=_text([c, r, 2.2])))
        else:  # boxes straddling the 32-pixel tiles' edges
            c, r = 32 * rng.integers(1, 5) - rng.uniform(0, 3), 32 * rng.integers(1, 4) - rng.uniform(0, 3)
            rows.append(dict(finding=f"N{n}", shape="rectangle", slice_index=n % 2, coordinates=_text([c, r, c + 3, r + 3])))
    assert assert_layered_as_before(_write_rows(tmp_path / "t.csv", rows), series).shape[0] >= 3
