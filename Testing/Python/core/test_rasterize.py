"""Rasterisation of 2D primitives and of markups on volume slices, checked against
independent computations."""
from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import rotation
from scipy import ndimage

from DicomAnnotEmbedLib.core.geometry import VolumeGeometry
from DicomAnnotEmbedLib.core.model import Markup
from DicomAnnotEmbedLib.core.rasterize import (cross_mask, ellipse_mask, markup_slice_masks, outline, polygon_mask,
                                          polyline_mask, rectangle_mask)

EIGHT = np.ones((3, 3), dtype=int)


def components(mask):
    return ndimage.label(mask, structure=EIGHT)[1]


def brute_force_even_odd(shape, vertices):
    """Reference point-in-polygon by ray casting, one pixel at a time (pure Python)."""
    out = np.zeros(shape, dtype=bool)
    n = len(vertices)
    for r in range(shape[0]):
        for c in range(shape[1]):
            inside = False
            for v in range(n):
                (x0, y0), (x1, y1) = vertices[v], vertices[(v + 1) % n]
                if (y0 > r) != (y1 > r):
                    x = x0 + (r - y0) * (x1 - x0) / (y1 - y0)
                    if c < x:
                        inside = not inside
            out[r, c] = inside
    return out


# --- 2D primitives ----------------------------------------------------------------------------

def test_rectangle_pixel_count_exact():
    mask = rectangle_mask((50, 60), (10, 20), (29, 34))
    assert mask.sum() == 20 * 15
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 34, 10, 29)
    # Non-integer corners keep the pixels whose centres are inside; clipping at the border.
    assert rectangle_mask((50, 60), (9.6, 19.5), (12.4, 21.49)).sum() == 3 * 2
    assert rectangle_mask((10, 10), (-5, -5), (2, 100)).sum() == 3 * 10


def test_circle_area_within_three_percent():
    r = 20
    mask = ellipse_mask((64, 64), (32, 32), (r, r))
    assert abs(mask.sum() - np.pi * r * r) / (np.pi * r * r) < 0.03
    rows, cols = np.nonzero(mask)
    assert rows.min() == 12 and rows.max() == 52 and cols.min() == 12 and cols.max() == 52


def test_rotated_ellipse_matches_formula():
    shape, center, (a, b), angle = (80, 90), (44.3, 39.7), (30.0, 12.0), 30.0
    mask = ellipse_mask(shape, center, (a, b), angle)
    # Independent: inverse-rotate every pixel centre and test the canonical ellipse equation.
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
    t = np.deg2rad(angle)
    u = (cc - center[0]) * np.cos(t) + (rr - center[1]) * np.sin(t)
    v = -(cc - center[0]) * np.sin(t) + (rr - center[1]) * np.cos(t)
    assert np.array_equal(mask, (u / a) ** 2 + (v / b) ** 2 <= 1)
    assert abs(mask.sum() - np.pi * a * b) / (np.pi * a * b) < 0.03
    # The long axis goes down-right at 30 degrees: a point 25 px along it is inside.
    assert mask[int(round(center[1] + 25 * np.sin(t))), int(round(center[0] + 25 * np.cos(t)))]


def test_polygon_fill_matches_brute_force_even_odd():
    star = [(20 + 15 * np.cos(a) * (1 if n % 2 == 0 else 0.4), 18 + 15 * np.sin(a) * (1 if n % 2 == 0 else 0.4))
            for n, a in enumerate(np.linspace(0, 2 * np.pi, 10, endpoint=False) + 0.1)]
    shape = (40, 45)
    fill = polygon_mask(shape, star, boundary="inside") & ~polyline_mask(shape, star, closed=True)
    expected = brute_force_even_odd(shape, star) & ~polyline_mask(shape, star, closed=True)
    assert np.array_equal(fill, expected)
    # A self-intersecting bow tie: even-odd leaves the centre crossing empty but both lobes set.
    bow = [(2, 2), (30, 20), (30, 2), (2, 20)]
    assert np.array_equal(polygon_mask((25, 35), bow, "outside"),
                          brute_force_even_odd((25, 35), bow) & ~polyline_mask((25, 35), bow, closed=True))


def test_polygon_inside_and_outside_differ_by_the_outline():
    square = [(10, 10), (20, 10), (20, 20), (10, 20)]
    inside = polygon_mask((32, 32), square, boundary="inside")
    outside = polygon_mask((32, 32), square, boundary="outside")
    contour = polyline_mask((32, 32), square, closed=True)
    assert inside.sum() == 11 * 11 and outside.sum() == 9 * 9  # LIDC: contour pixels excluded
    assert np.array_equal(inside & ~outside, contour)
    assert not (outside & contour).any()
    triangle = [(3.2, 4.1), (40.7, 9.9), (12.5, 33.3)]
    inside, outside = polygon_mask((40, 48), triangle), polygon_mask((40, 48), triangle, "outside")
    contour = polyline_mask((40, 48), triangle, closed=True)
    assert np.array_equal(inside ^ outside, contour)
    area = 0.5 * abs((40.7 - 3.2) * (33.3 - 4.1) - (12.5 - 3.2) * (9.9 - 4.1))
    assert outside.sum() < area < inside.sum()
    with pytest.raises(ValueError):
        polygon_mask((5, 5), triangle, boundary="on")


@pytest.mark.parametrize("start, end", [((3.2, 5.7), (90.4, 40.1)), ((50, 2), (47.5, 60.2)),
                                        ((0, 0), (63, 63)), ((80.9, 10.1), (2.3, 11.2))])
def test_line_is_connected_and_has_its_endpoints(start, end):
    mask = polyline_mask((64, 96), [start, end])
    assert components(mask) == 1
    for x, y in (start, end):
        assert mask[int(np.floor(y + 0.5)), int(np.floor(x + 0.5))]
    # One pixel wide: no more pixels than the longer extent plus one (+1 for rounding at ties).
    extent = max(abs(end[0] - start[0]), abs(end[1] - start[1]))
    assert mask.sum() <= np.ceil(extent) + 2


def test_polyline_closed_and_clipped():
    points = [(5, 5), (40, 8), (30, 30), (-20, 25)]  # last vertex off the image
    mask = polyline_mask((36, 50), points, closed=True)
    assert components(mask) == 1  # the off-image part is clipped, the rest stays connected
    assert mask[5, 5] and mask[8, 40] and mask[30, 30]
    assert not polyline_mask((10, 10), [(-50, -50), (-40, 200)]).any()
    # Far-away coordinates are clipped before sampling (no huge sample arrays).
    assert polyline_mask((10, 10), [(-1e9, 5), (1e9, 5)]).sum() == 10


def test_cross_and_outline():
    cross = cross_mask((20, 20), (10.4, 6.6), arm=3)
    assert cross.sum() == 13 and cross[7, 10] and cross[7, 7] and cross[7, 13] and cross[4, 10] and cross[10, 10]
    assert cross_mask((20, 20), (0, 0)).sum() == 7  # clipped arms
    box = rectangle_mask((30, 30), (5, 6), (14, 20))
    edge = outline(box)
    assert edge.sum() == 2 * (10 + 15) - 4
    assert np.array_equal(edge, box & ~ndimage.binary_erosion(box))
    # Outside the image counts as background: a region touching the border is closed there.
    assert outline(np.ones((4, 5), bool)).sum() == 2 * (4 + 5) - 4


# --- markups on volumes -----------------------------------------------------------------------

def axial_geometry(shape=(20, 40, 50), spacing=(1.0, 1.0, 2.5), origin=(0.0, 0.0, 0.0)):
    return VolumeGeometry.from_origin_spacing_directions(shape, origin, spacing, np.eye(3))


def test_axis_aligned_roi_outlines_expected_slices():
    geometry = axial_geometry()
    # Pixel centres x = i, y = j, z = 2.5 k: the box covers i 10..19, j 5..14, k 4..7.
    roi = Markup("roi", "box", roi_center_lps=[14.5, 9.5, 13.75], roi_size=[9.8, 9.8, 9.5])
    masks = markup_slice_masks(roi, geometry)
    assert sorted(masks) == [4, 5, 6, 7]
    expected = outline(rectangle_mask((40, 50), (10, 5), (19, 14)))
    for mask in masks.values():
        assert mask.shape == (40, 50)
        assert np.array_equal(mask, expected) and mask.sum() == 36
    filled = markup_slice_masks(roi, geometry, filled=True)
    assert all(m.sum() == 100 for m in filled.values()) and sorted(filled) == [4, 5, 6, 7]


def test_rotated_roi_volume_and_membership():
    geometry = axial_geometry((40, 64, 64), spacing=(1.0, 1.0, 1.0))
    axes = rotation([1, 2, 0.5], 33)
    roi = Markup("roi", "tilted", roi_center_lps=[31.2, 30.7, 19.6], roi_size=[30.0, 20.0, 12.0],
                 roi_axes_lps=axes, filled=True)
    masks = markup_slice_masks(roi, geometry)
    volume = np.zeros(geometry.shape, bool)
    for k, m in masks.items():
        volume[k] = m
    # Independent: every voxel centre tested against the box in LPS.
    kk, jj, ii = np.mgrid[0:40, 0:64, 0:64]
    centres = np.stack([ii, jj, kk], axis=-1).reshape(-1, 3).astype(float)
    local = (centres - roi.roi_center_lps) @ axes
    expected = np.all(np.abs(local) <= roi.roi_size / 2, axis=1).reshape(geometry.shape)
    assert np.array_equal(volume, expected)
    assert abs(volume.sum() - 30 * 20 * 12) / (30 * 20 * 12) < 0.03


def test_point_cross_on_oblique_geometry():
    directions = rotation([0.4, -0.3, 1.0], 27)
    geometry = VolumeGeometry.from_origin_spacing_directions((12, 48, 40), (-50.0, 20.0, 10.0), (0.8, 0.9, 2.0),
                                                             directions)
    # Build the LPS point by hand from (i, j, k) = (17.2, 22.9, 5.3) and the geometry's parameters.
    i, j, k = 17.2, 22.9, 5.3
    point = np.array([-50.0, 20.0, 10.0]) + directions @ (np.array([0.8, 0.9, 2.0]) * [i, j, k])
    other = np.array([-50.0, 20.0, 10.0]) + directions @ (np.array([0.8, 0.9, 2.0]) * [3.0, 4.0, 9.6])
    markup = Markup("point_list", "pts", points_lps=[point, other])
    masks = markup_slice_masks(markup, geometry)
    assert sorted(masks) == [5, 10]  # 5.3 rounds to slice 5; 9.6 to slice 10
    assert np.array_equal(masks[5], cross_mask((48, 40), (17, 23), arm=3))
    assert masks[5][23, 17] and masks[5][23, 20] and masks[5][26, 17] and masks[5].sum() == 13
    assert masks[10][4, 3]


def test_line_crossing_slices_is_split_per_slab():
    geometry = axial_geometry((10, 30, 40), spacing=(1.0, 1.0, 1.0))
    line = Markup("line", "l", points_lps=[[5.0, 5.0, 0.0], [25.0, 15.0, 4.0]])
    masks = markup_slice_masks(line, geometry)
    assert sorted(masks) == [0, 1, 2, 3, 4]
    union = np.any(np.stack(list(masks.values())), axis=0)
    assert components(union) == 1 and union[5, 5] and union[15, 25]
    for k, mask in masks.items():
        cols = np.nonzero(mask)[1]
        # x runs 5 mm per slice; the part in slab k spans x in [5 + 5(k - 0.5), 5 + 5(k + 0.5)].
        assert cols.min() >= 5 + 5 * (k - 0.5) - 1 and cols.max() <= 5 + 5 * (k + 0.5) + 1
    # A segment within one slab goes on that slice only; off-grid markups give nothing.
    flat = Markup("curve", "c", points_lps=[[2, 2, 3.2], [20, 2, 3.4], [20, 20, 2.6]])
    assert sorted(markup_slice_masks(flat, geometry)) == [3]
    away = Markup("line", "far", points_lps=[[5, 5, 50], [6, 6, 60]])
    assert markup_slice_masks(away, geometry) == {}
    angle = Markup("angle", "a", points_lps=[[2, 20, 6], [10, 10, 6], [25, 20, 6]])
    (mask,) = markup_slice_masks(angle, geometry).values()
    assert components(mask) == 1 and mask[20, 2] and mask[10, 10] and mask[20, 25]


def test_closed_curve_filled_only_within_one_slab():
    geometry = axial_geometry((10, 30, 40), spacing=(1.0, 1.0, 1.0))
    square = [[10, 10, 4.1], [20, 10, 4.0], [20, 20, 3.9], [10, 20, 4.2]]
    curve = Markup("closed_curve", "cc", points_lps=square, filled=True)
    masks = markup_slice_masks(curve, geometry)
    assert sorted(masks) == [4] and masks[4].sum() == 11 * 11
    outline_only = markup_slice_masks(curve, geometry, filled=False)
    assert outline_only[4].sum() == 40
    tilted = Markup("closed_curve", "t", points_lps=[[10, 10, 3], [20, 10, 5], [20, 20, 5], [10, 20, 3]],
                    filled=True)
    masks = markup_slice_masks(tilted, geometry)
    assert sorted(masks) == [3, 4, 5]
    assert sum(m.sum() for m in masks.values()) < 60  # outline only, no fill


def test_plane_parallel_and_perpendicular_to_slices():
    geometry = axial_geometry((10, 30, 40), spacing=(1.0, 1.0, 2.0))
    axial = Markup("plane", "ax", roi_center_lps=[20.0, 15.0, 6.0], roi_size=[10.0, 6.0, 0.0])
    masks = markup_slice_masks(axial, geometry)
    assert sorted(masks) == [3]
    assert np.array_equal(masks[3], outline(rectangle_mask((30, 40), (15, 12), (25, 18))))
    assert markup_slice_masks(axial, geometry, filled=True)[3].sum() == 11 * 7
    # On a slab boundary (z = 7 mm = k 3.5) the plane goes to the upper slice, whichever way
    # its normal points.
    for flip in (1.0, -1.0):
        boundary = Markup("plane", "b", roi_center_lps=[20.0, 15.0, 7.0], roi_size=[10.0, 6.0, 0.0],
                          roi_axes_lps=np.diag([1.0, flip, flip]))
        assert sorted(markup_slice_masks(boundary, geometry)) == [4]
    # A sagittal plane x = 12 mm, 8 mm high (z 2..10 -> k 1..5), 10 mm wide along y (j 10..20).
    sagittal = Markup("plane", "sag", roi_center_lps=[12.0, 15.0, 6.0], roi_size=[10.0, 8.0, 0.0],
                      roi_axes_lps=np.column_stack([[0, 1, 0], [0, 0, 1], [1, 0, 0]]))
    masks = markup_slice_masks(sagittal, geometry)
    assert sorted(masks) == [1, 2, 3, 4, 5]
    for mask in masks.values():
        rows, cols = np.nonzero(mask)
        assert set(cols) == {12} and rows.min() == 10 and rows.max() == 20


def test_large_volume_is_fast():
    geometry = VolumeGeometry.from_origin_spacing_directions((200, 512, 512), (-180.0, -180.0, 0.0),
                                                             (0.7, 0.7, 1.5), rotation([0, 0, 1], 10))
    roi = Markup("roi", "big", roi_center_lps=[0.0, 0.0, 150.0], roi_size=[250.0, 200.0, 240.0],
                 roi_axes_lps=rotation([1, 1, 1], 20))
    plane = Markup("plane", "p", roi_center_lps=[0.0, 0.0, 150.0], roi_size=[300.0, 250.0, 0.0],
                   roi_axes_lps=rotation([1, 0, 0], 60))
    started = time.perf_counter()
    roi_masks = markup_slice_masks(roi, geometry)
    plane_masks = markup_slice_masks(plane, geometry)
    elapsed = time.perf_counter() - started
    assert len(roi_masks) > 150 and len(plane_masks) > 100
    assert elapsed < 10.0, f"took {elapsed:.1f} s"
