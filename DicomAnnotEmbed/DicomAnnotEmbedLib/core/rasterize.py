"""Shapes to pixels: 2D drawing primitives and markups drawn on the slices of a volume.

2D conventions: an image has shape ``(rows, columns)``; points are ``(column, row)`` floats
with pixel centres at integer coordinates. Pixels are selected by their centres.

Volume conventions: a :class:`~.geometry.VolumeGeometry` (arrays ``[k, j, i]``, affine from
``(i, j, k)`` to **LPS**); markups hold **LPS** coordinates. Drawing works in continuous index
space, where slice ``k`` covers ``k - 0.5 <= kk < k + 0.5``.

Everything is vectorised with numpy; Python loops run over vertices, edges or slices only.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .ellipses import outline_points_lps
from .errors import GeometryError, InputError
from .geometry import VolumeGeometry
from .model import Markup

Shape2D = Tuple[int, int]

#: Half-length in pixels of the arms of the "+" drawn for a point.
POINT_CROSS_ARM = 3

_EPS = 1e-9


# --- 2D primitives ----------------------------------------------------------------------------

def polyline_mask(shape: Shape2D, points_cr: np.ndarray, closed: bool = False) -> np.ndarray:
    """A 1-pixel-wide, 8-connected line through ``points_cr`` ((N, 2) column, row), drawn
    between the pixels nearest to the vertices (Bresenham).

    ``closed`` adds the segment from the last point back to the first. Parts outside the
    image are clipped. A single point sets one pixel.
    """
    mask = np.zeros(shape, dtype=bool)
    points = _points_2d(points_cr)
    if len(points) == 0:
        return mask
    if len(points) == 1:
        _set_pixels(mask, points[:, 0], points[:, 1])
        return mask
    if closed and len(points) > 2:
        _draw_segments(mask, points, _next_vertices(points))
    else:
        _draw_segments(mask, points[:-1], points[1:])
    return mask


def polygon_mask(shape: Shape2D, points_cr: np.ndarray, boundary: str = "inside") -> np.ndarray:
    """A filled polygon: pixels whose centre is inside (even-odd rule), and its outline.

    Args:
        shape: (rows, columns).
        points_cr: (N, 2) vertices as (column, row).
        boundary: ``"inside"`` (default): the vertices lie on the region's border, so the
            outline pixels (the closed polyline) belong to the region. ``"outside"``: the
            vertices lie just outside the region (LIDC convention: contour pixels are not part
            of the nodule), so the outline pixels are removed from the fill.
    """
    if boundary not in ("inside", "outside"):
        raise ValueError(f'boundary must be "inside" or "outside", got {boundary!r}')
    points = _points_2d(points_cr)
    line = polyline_mask(shape, points, closed=True)
    fill = _even_odd_fill(shape, points) if len(points) >= 3 else np.zeros(shape, dtype=bool)
    return fill | line if boundary == "inside" else fill & ~line


def ellipse_mask(shape: Shape2D, center_cr: Sequence[float], radii_cr: Sequence[float],
                 angle_deg: float = 0.0) -> np.ndarray:
    """Pixels whose centre is inside an ellipse.

    Args:
        center_cr: centre (column, row).
        radii_cr: semi-axes; the first lies along the column axis when ``angle_deg`` is 0.
        angle_deg: rotation of the first semi-axis from the column axis towards the row axis.
    """
    mask = np.zeros(shape, dtype=bool)
    cx, cy = (float(v) for v in center_cr)
    a, b = (abs(float(v)) for v in radii_cr)
    theta = np.deg2rad(angle_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    # Half extents of the rotated ellipse's bounding box.
    ex, ey = np.hypot(a * cos, b * sin), np.hypot(a * sin, b * cos)
    window = _window(shape, cx - ex, cx + ex, cy - ey, cy + ey)
    if window is None:
        return mask
    rows, cols = window
    dx = cols[None, :] - cx
    dy = rows[:, None] - cy
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0 + _EPS if a > 0 and b > 0 else \
            (np.abs(u) <= a + _EPS) & (np.abs(v) <= b + _EPS)
    mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = inside
    return mask


def rectangle_mask(shape: Shape2D, corner1_cr: Sequence[float], corner2_cr: Sequence[float]) -> np.ndarray:
    """Pixels whose centre lies in the axis-aligned rectangle spanned by two corners (inclusive)."""
    mask = np.zeros(shape, dtype=bool)
    (x0, y0), (x1, y1) = corner1_cr, corner2_cr
    c0, c1 = int(np.ceil(min(x0, x1) - _EPS)), int(np.floor(max(x0, x1) + _EPS))
    r0, r1 = int(np.ceil(min(y0, y1) - _EPS)), int(np.floor(max(y0, y1) + _EPS))
    c0, r0 = max(c0, 0), max(r0, 0)
    c1, r1 = min(c1, shape[1] - 1), min(r1, shape[0] - 1)
    if c0 <= c1 and r0 <= r1:
        mask[r0:r1 + 1, c0:c1 + 1] = True
    return mask


def cross_mask(shape: Shape2D, center_cr: Sequence[float], arm: int = POINT_CROSS_ARM) -> np.ndarray:
    """A "+" centred on the pixel nearest ``center_cr``, ``arm`` pixels each side (clipped)."""
    mask = np.zeros(shape, dtype=bool)
    _draw_cross(mask, center_cr, arm)
    return mask


def outline(mask2d: np.ndarray) -> np.ndarray:
    """Pixels of ``mask2d`` with a 4-neighbour outside the mask (outside the image counts as
    outside, so a region cut by the image edge gets a closed outline)."""
    mask = np.asarray(mask2d, dtype=bool)
    padded = np.pad(mask, 1, constant_values=False)
    interior = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~interior


# --- 2D helpers -------------------------------------------------------------------------------

def _points_2d(points_cr) -> np.ndarray:
    points = np.asarray(points_cr, dtype=float).reshape(-1, 2)
    if not np.all(np.isfinite(points)):
        raise InputError("cannot draw non-finite coordinates")
    return points


def _round(values: np.ndarray) -> np.ndarray:
    # Half-up rounding is monotonic, which keeps sampled lines connected.
    return np.floor(values + 0.5).astype(np.int64)


def _set_pixels(mask: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> None:
    c, r = _round(np.asarray(cols, dtype=float)), _round(np.asarray(rows, dtype=float))
    keep = (c >= 0) & (c < mask.shape[1]) & (r >= 0) & (r < mask.shape[0])
    mask[r[keep], c[keep]] = True


def _draw_segment(mask: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
    """Set the pixels of one segment (see :func:`_draw_segments`)."""
    _draw_segments(mask, np.asarray(start, dtype=float)[None], np.asarray(end, dtype=float)[None])


def _draw_segments(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
    """Set the pixels of segments (M, 2) -> (M, 2), each as Bresenham does: between the rounded
    end points, one pixel per step along the major axis, so the line is 8-connected and one
    pixel wide. All segments at once (a per-edge loop cost ~50 us per edge: most of the time of
    a 60-vertex contour); each sample is computed by the same arithmetic as for one segment."""
    a, b = _clip_segments(starts, ends, mask.shape)
    if len(a) == 0:
        return
    samples, _ = _segment_samples(a, b)
    _set_pixels(mask, samples[:, 0], samples[:, 1])


def _segment_samples(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The (column, row) samples of the segments a -> b (M, 2; clipped, not rounded) that
    :func:`_draw_segments` sets, and the segment each belongs to."""
    a, b = _round(a), _round(b)
    delta = b - a
    steps = np.max(np.abs(delta), axis=1)
    counts = steps + 1
    owner, index = _runs(counts)
    t = index / np.maximum(steps, 1)[owner]
    return a[owner] + t[:, None] * delta[owner], owner


def _runs(counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For ``counts[n]`` elements of each item n, one after the other: every element's item and its
    place 0..counts[n]-1 in it (the samples of a segment, the rows an edge crosses, ...)."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)


def _next_vertices(points: np.ndarray) -> np.ndarray:
    """Each vertex's successor around the polygon: ``np.roll(points, -1, axis=0)``, without its
    overhead (16 us a call, thousands of calls for a table)."""
    return np.concatenate((points[1:], points[:1]))


def _clip_segments(starts: np.ndarray, ends: np.ndarray, shape: Shape2D) -> Tuple[np.ndarray, np.ndarray]:
    """Liang-Barsky clip of segments to the image plus a one-pixel margin, which bounds the
    number of samples for far-away points while leaving the drawn pixels (nearly) unchanged.
    Returns the clipped (start, end) of the segments that meet that box."""
    a, b, _ = _clip_to_box(starts, ends, np.array([shape[1], shape[0]], dtype=float))
    return a, b


def _clip_to_box(starts: np.ndarray, ends: np.ndarray, hi: np.ndarray):
    """:func:`_clip_segments` to the box (-1, -1)..``hi``, where ``hi`` (column, row) is one
    box for all segments or one (M, 2) per segment. Returns the clipped (start, end) of the
    segments that meet their box and which segments those are (a boolean array or a slice)."""
    starts = np.asarray(starts, dtype=float).reshape(-1, 2)
    ends = np.asarray(ends, dtype=float).reshape(-1, 2)
    lo = np.array([-1.0, -1.0])
    d = ends - starts
    if starts.size and lo[0] <= min(starts.min(), ends.min()) and (starts <= hi).all() and (ends <= hi).all():
        # Every end inside the box (shapes drawn on a window around them): the clip below would find
        # t0 = 0 and t1 = 1 for each segment, and return exactly this. Half the time of a contour.
        return starts, starts + d, slice(None)
    t0, t1 = np.zeros(len(d)), np.ones(len(d))
    keep = np.ones(len(d), dtype=bool)
    for axis in range(2):
        top = hi[..., axis]
        flat = np.abs(d[:, axis]) < 1e-15
        keep &= ~(flat & ((starts[:, axis] < lo[axis]) | (starts[:, axis] > top)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ta, tb = (lo[axis] - starts[:, axis]) / d[:, axis], (top - starts[:, axis]) / d[:, axis]
        t0 = np.where(flat, t0, np.maximum(t0, np.minimum(ta, tb)))
        t1 = np.where(flat, t1, np.minimum(t1, np.maximum(ta, tb)))
    keep &= t0 <= t1
    starts, d, t0, t1 = starts[keep], d[keep], t0[keep], t1[keep]
    return starts + t0[:, None] * d, starts + t1[:, None] * d, keep


def _even_odd_fill(shape: Shape2D, points: np.ndarray) -> np.ndarray:
    """Pixel centres inside the polygon by the even-odd rule (scanline crossings, vectorised
    over all edges and rows): a centre is inside when an odd number of edges cross the row to
    its right."""
    rows_n, cols_n = shape
    mask = np.zeros(shape, dtype=bool)
    r0 = max(int(np.ceil(points[:, 1].min())), 0)
    r1 = min(int(np.floor(points[:, 1].max())), rows_n - 1)
    if r0 > r1:
        return mask
    nxt = _next_vertices(points)
    x0, y0, x1, y1 = points[:, 0], points[:, 1], nxt[:, 0], nxt[:, 1]
    # Half-open in y so that a vertex shared by two edges is counted once.
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.maximum(np.ceil(lo).astype(np.int64), r0)
    last = np.minimum(np.ceil(hi).astype(np.int64) - 1, r1)
    counts = np.where(y0 != y1, np.clip(last - first + 1, 0, None), 0)
    if counts.sum() == 0:
        return mask
    edge, place = _runs(counts)
    rows = first[edge] + place
    x_cross = x0[edge] + (rows - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    # Pixel c is left of the crossing when c < x, i.e. c < ceil(x). toggles[r, c] counts crossings
    # starting at column c; their cumulative sum per row gives, for each pixel, how many crossings
    # lie to its right.
    stop = np.clip(np.ceil(x_cross), 0, cols_n).astype(np.int64)
    width = cols_n + 1
    size = (r1 - r0 + 1) * width
    toggles = (np.bincount((rows - r0) * width, minlength=size)
               - np.bincount((rows - r0) * width + stop, minlength=size)).reshape(r1 - r0 + 1, width)
    crossings = np.cumsum(toggles, axis=1)[:, :cols_n]
    mask[r0:r1 + 1] = (crossings % 2) == 1
    return mask


def _window(shape: Shape2D, x0: float, x1: float, y0: float, y1: float):
    """Integer row and column ranges (arrays) covering [x0, x1] x [y0, y1] within the image."""
    c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), shape[1] - 1)
    r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), shape[0] - 1)
    if c0 > c1 or r0 > r1:
        return None
    return np.arange(r0, r1 + 1), np.arange(c0, c1 + 1)


def _draw_cross(mask: np.ndarray, center_cr: Sequence[float], arm: int) -> None:
    c, r = (int(v) for v in _round(np.asarray(center_cr, dtype=float)))
    rows_n, cols_n = mask.shape
    if 0 <= r < rows_n:
        mask[r, max(c - arm, 0):max(min(c + arm + 1, cols_n), 0)] = True
    if 0 <= c < cols_n:
        mask[max(r - arm, 0):max(min(r + arm + 1, rows_n), 0), c] = True



# --- many shapes at once ------------------------------------------------------------------------
#
# A table of annotations has thousands of small shapes; drawn one by one, each costs some 30 numpy
# calls of a few microseconds, which is most of the time. The functions below draw many shapes,
# each on its own image, with a few calls per pass: every vertex, edge and pixel goes through the
# same arithmetic as in the one-shape function, so the result is the same to the bit (tested in
# Testing/Python/files/test_csv_batch_rasterize.py).

#: Pixels (over all images) that one pass of the functions below draws: bounds their temporary
#: arrays (up to ~100 bytes a pixel) to some 25 MB while a pass still covers hundreds of shapes.
BATCH_PIXELS = 1 << 18


class _Images:
    """Many 2D boolean images in one flat buffer: image n is ``buffer[start[n]:][:rows[n] * cols[n]]``
    in C order."""

    def __init__(self, shapes: np.ndarray):
        self.rows, self.cols = shapes[:, 0], shapes[:, 1]
        self.sizes = self.rows * self.cols
        self.start = np.cumsum(self.sizes) - self.sizes
        self.buffer = np.zeros(int(self.sizes.sum()), dtype=bool)

    def set_pixels(self, owner: np.ndarray, cols: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
        """:func:`_set_pixels` of points, each on its image ``owner``, to its value."""
        c, r = _round(cols), _round(rows)
        keep = (c >= 0) & (c < self.cols[owner]) & (r >= 0) & (r < self.rows[owner])
        owner = owner[keep]
        self.buffer[self.start[owner] + r[keep] * self.cols[owner] + c[keep]] = values[keep]

    def draw_segments(self, owner: np.ndarray, starts: np.ndarray, ends: np.ndarray, values: np.ndarray) -> None:
        """:func:`_draw_segments` of segments, each on its image ``owner``, in its value."""
        hi = np.column_stack([self.cols[owner], self.rows[owner]]).astype(float)
        a, b, kept = _clip_to_box(starts, ends, hi)
        if len(a):
            samples, segment = _segment_samples(a, b)
            self.set_pixels(owner[kept][segment], samples[:, 0], samples[:, 1], values[kept][segment])

    def masks(self) -> List[np.ndarray]:
        return [self.buffer[start:start + rows * cols].reshape(rows, cols)
                for start, rows, cols in zip(self.start.tolist(), self.rows.tolist(), self.cols.tolist())]




def _in_passes(shapes: Sequence[Shape2D], draw) -> List[np.ndarray]:
    """Masks of the images ``shapes`` drawn by ``draw(images, first, last)`` (images first..last-1
    of the list), in passes of about :data:`BATCH_PIXELS` pixels."""
    shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
    if len(shapes) and (shapes < 0).any():
        raise ValueError("image shapes must not be negative")
    ends = np.cumsum(shapes[:, 0] * shapes[:, 1])
    masks: List[np.ndarray] = []
    first = 0
    while first < len(shapes):
        # the images up to BATCH_PIXELS more pixels than those before them; at least one
        last = max(int(np.searchsorted(ends, (ends[first - 1] if first else 0) + BATCH_PIXELS, "right")), first + 1)
        images = _Images(shapes[first:last])
        draw(images, first, last)
        masks += images.masks()
        first = last
    return masks


def _vertices(polygons: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """All vertices (column, row) of ``polygons`` in one (N, 2) array, and how many each has."""
    counts = np.array([len(p) for p in polygons], dtype=np.int64)
    points = np.concatenate([np.asarray(p, dtype=float).reshape(-1, 2) for p in polygons]) if len(polygons) \
        else np.zeros((0, 2))
    _check_finite(points)
    return points, counts


def _check_finite(*arrays: np.ndarray) -> None:
    if not all(np.isfinite(a).all() for a in arrays):
        raise InputError("cannot draw non-finite coordinates")


def polygon_masks(shapes: Sequence[Shape2D], polygons: Sequence[np.ndarray],
                  boundaries: Sequence[str]) -> List[np.ndarray]:
    """:func:`polygon_mask` of many polygons, each on its own image: item n equals
    ``polygon_mask(shapes[n], polygons[n], boundaries[n])`` to the bit."""
    for boundary in boundaries:
        if boundary not in ("inside", "outside"):
            raise ValueError(f'boundary must be "inside" or "outside", got {boundary!r}')
    points, counts = _vertices(polygons)
    outside = np.array([b == "outside" for b in boundaries], dtype=bool)
    ends = np.cumsum(counts)

    def draw(images: _Images, first: int, last: int) -> None:
        begin = int(ends[first - 1]) if first else 0
        _polygons_on(images, points[begin:ends[last - 1]], counts[first:last], outside[first:last])

    return _in_passes(shapes, draw)


def _polygons_on(images: _Images, points: np.ndarray, counts: np.ndarray, outside: np.ndarray) -> None:
    """Polygon n (``counts[n]`` vertices of ``points``) drawn as :func:`polygon_mask` draws it
    on image n: its fill, then its closed outline (:func:`polyline_mask`) set ("inside") or
    cleared ("outside")."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    following = np.arange(len(points)) + 1  # the next vertex around the polygon (_next_vertices)
    ring = counts > 0
    following[(first + counts - 1)[ring]] = first[ring]
    following = points[following]
    n = counts[owner]
    edge = n >= 3
    _even_odd_fill_on(images, owner[edge], points[edge], following[edge])
    # the closed polyline: every edge of 3 or more vertices; 2 vertices: the one segment; 1: its pixel
    drawn = edge | (np.arange(len(points)) == first[owner])
    images.draw_segments(owner[drawn], points[drawn], following[drawn], ~outside[owner[drawn]])


def _even_odd_fill_on(images: _Images, owner: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
    """:func:`_even_odd_fill` of polygons given by their edges (starts -> ends, each on its image
    ``owner``, a polygon's edges in a row), into the (empty) ``images``."""
    if len(owner) == 0:
        return
    rows_n, cols_n = images.rows, images.cols
    polygon = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))  # first edge of each
    y = starts[:, 1]
    r0 = np.maximum(np.ceil(np.minimum.reduceat(y, polygon)).astype(np.int64), 0)
    r1 = np.minimum(np.floor(np.maximum.reduceat(y, polygon)).astype(np.int64), rows_n[owner[polygon]] - 1)
    which = np.repeat(np.arange(len(polygon)), np.diff(np.append(polygon, len(owner))))
    x0, y0, x1, y1 = starts[:, 0], starts[:, 1], ends[:, 0], ends[:, 1]
    # Half-open in y so that a vertex shared by two edges is counted once.
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.maximum(np.ceil(lo).astype(np.int64), r0[which])
    last = np.minimum(np.ceil(hi).astype(np.int64) - 1, r1[which])
    counts = np.where(y0 != y1, np.clip(last - first + 1, 0, None), 0)
    if counts.sum() == 0:
        return
    edge, place = _runs(counts)
    rows = first[edge] + place
    x_cross = x0[edge] + (rows - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    image = owner[edge]
    stop = np.clip(np.ceil(x_cross), 0, cols_n[image]).astype(np.int64)
    # _even_odd_fill counts, for each pixel, the crossings right of it in its row: toggles at the
    # row's start and at the crossing's column. Here the toggles go where the pixels are in the
    # buffer (a crossing right of the row toggles the next row's start, where the row's others end);
    # the parity of the toggles up to a pixel is that of its row's crossings right of it (earlier
    # rows toggle twice). Counted mod 256: the parity is all that matters.
    at = images.start[image] + rows * cols_n[image]
    size = len(images.buffer)
    toggles = np.bincount(np.concatenate((at, at + stop)), minlength=size + 1)[:size].astype(np.uint8)
    images.buffer[...] = (np.cumsum(toggles, dtype=np.uint8) & 1).view(bool)


def ellipse_masks(shapes: Sequence[Shape2D], centers_cr: Sequence[Sequence[float]],
                  radii_cr: Sequence[Sequence[float]], angles_deg: Sequence[float]) -> List[np.ndarray]:
    """:func:`ellipse_mask` of many ellipses, each on its own image: item n equals
    ``ellipse_mask(shapes[n], centers_cr[n], radii_cr[n], angles_deg[n])`` to the bit."""
    centers = np.asarray(centers_cr, dtype=float).reshape(-1, 2)
    radii = np.abs(np.asarray(radii_cr, dtype=float).reshape(-1, 2))
    angles = np.asarray(angles_deg, dtype=float).reshape(-1)
    _check_finite(centers, radii, angles)
    theta = np.deg2rad(angles)
    cos, sin = np.cos(theta), np.sin(theta)

    def draw(images: _Images, first: int, last: int) -> None:
        _ellipses_on(images, np.arange(last - first), *(v[first:last] for v in (centers, radii, cos, sin)))

    return _in_passes(shapes, draw)


def _ellipses_on(images: _Images, index: np.ndarray, centers: np.ndarray, radii: np.ndarray, cos: np.ndarray,
                 sin: np.ndarray) -> None:
    """Ellipses ``index`` drawn, each on its image, as :func:`ellipse_mask` draws it: the pixel
    centres inside, on the window of its bounding box. As there, ``u`` and ``v`` of a pixel are
    sums of a term of its column and a term of its row, computed once per column and per row; the
    windows' rows are stacked, padded to the widest (half the ellipses at a time when that would
    be far more than a pass's pixels)."""
    (cx, cy), (a, b), cs, sn = centers[index].T, radii[index].T, cos[index], sin[index]
    ex, ey = np.hypot(a * cs, b * sn), np.hypot(a * sn, b * cs)
    c0 = np.maximum(np.floor(cx - ex), 0).astype(np.int64)
    c1 = np.minimum(np.ceil(cx + ex), images.cols[index] - 1).astype(np.int64)
    r0 = np.maximum(np.floor(cy - ey), 0).astype(np.int64)
    r1 = np.minimum(np.ceil(cy + ey), images.rows[index] - 1).astype(np.int64)
    width = np.maximum(c1 - c0 + 1, 0)
    height = np.maximum(r1 - r0 + 1, 0) * (width > 0)
    if not height.any():
        return
    if len(index) > 1 and int(height.sum()) * int(width.max()) > 4 * BATCH_PIXELS:
        half = len(index) // 2
        _ellipses_on(images, index[:half], centers, radii, cos, sin)
        _ellipses_on(images, index[half:], centers, radii, cos, sin)
        return
    columns = np.arange(int(width.max()))
    dx = (c0[:, None] + columns) - cx[:, None]  # (ellipse, column of its window)
    u_col, v_col = dx * cs[:, None], -dx * sn[:, None]
    owner, local = _runs(height)  # one item per window row
    dy = (r0[owner] + local) - cy[owner]
    u = u_col[owner] + (dy * sn[owner])[:, None]
    v = v_col[owner] + (dy * cs[owner])[:, None]
    a, b = a[owner, None], b[owner, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0 + _EPS
        flat = (a[:, 0] <= 0) | (b[:, 0] <= 0)
        if flat.any():
            inside[flat] = (np.abs(u[flat]) <= a[flat] + _EPS) & (np.abs(v[flat]) <= b[flat] + _EPS)
    valid = columns < width[owner, None]
    image = index[owner]
    at = (images.start[image] + (r0[owner] + local) * images.cols[image] + c0[owner])[:, None] + columns
    images.buffer[at[valid]] = inside[valid]


def rectangle_masks(shapes: Sequence[Shape2D], corners1_cr: Sequence[Sequence[float]],
                    corners2_cr: Sequence[Sequence[float]]) -> List[np.ndarray]:
    """:func:`rectangle_mask` of many rectangles, each on its own image: item n equals
    ``rectangle_mask(shapes[n], corners1_cr[n], corners2_cr[n])`` to the bit."""
    first, second = (np.asarray(c, dtype=float).reshape(-1, 2) for c in (corners1_cr, corners2_cr))
    _check_finite(first, second)
    images = _Images(np.asarray(shapes, dtype=np.int64).reshape(-1, 2))
    size = np.column_stack([images.cols, images.rows])
    # the ranges of columns and rows, within the image (clipped before they become integers)
    low = np.maximum(np.ceil(np.minimum(first, second) - _EPS), 0).astype(np.int64)
    high = np.minimum(np.floor(np.maximum(first, second) + _EPS), size - 1).astype(np.int64) + 1
    masks = images.masks()
    for mask, (c0, r0), (c1, r1) in zip(masks, low.tolist(), high.tolist()):
        mask[r0:max(r1, r0), c0:max(c1, c0)] = True
    return masks


# --- markups on a volume ----------------------------------------------------------------------

def markup_slice_masks(markup: Markup, geometry: VolumeGeometry,
                       filled: Optional[bool] = None) -> Dict[int, np.ndarray]:
    """What to draw of a markup (coordinates in **LPS**) on each slice of a grid.

    Args:
        markup: the shape.
        geometry: the grid; ``geometry.lps_to_ijk_points`` places the markup on it.
        filled: fill closed shapes; None uses ``markup.filled``.

    Returns:
        ``{k: (J, I) bool mask}`` for the slices where something is drawn; {} when nothing is.

    Rules (continuous index space, slice k covers k - 0.5 <= kk < k + 0.5):

    * ``point_list``: a cross (arm :data:`POINT_CROSS_ARM` px) at each point, on its slice.
    * ``line``, ``angle`` (p0-p1-p2), ``curve``: the polyline through the control points (a
      Slicer curve is a spline through them; the polyline is its approximation here). Each 3D
      segment is clipped to each slab and its in-plane projection is drawn.
    * ``closed_curve``: the closed polyline; when filled and all points lie in one slab, the
      polygon is filled there (outline pixels included), otherwise only the outline is drawn. A
      closed curve marked as an ellipse (:mod:`.ellipses`) is the polygon of the ellipse's samples
      (within 0.01 mm of it): pixel centres inside the ellipse, and its outline.
    * ``roi``: pixel centres inside the oriented box, outlined unless filled.
    * ``plane``: voxels that the plane cuts (the plane passes through the voxel's box) and
      whose centre projects into the rectangle, outlined unless filled.

    Anything outside the grid is clipped silently.
    """
    if not geometry.in_patient_space:
        raise GeometryError(f"markup {markup.name!r} is in patient space, but the grid has no patient "
                            "position to place it on")
    filled = markup.filled if filled is None else bool(filled)
    canvas = _SliceCanvas(geometry)
    kind = markup.kind
    if kind == "point_list":
        for i, j, k in geometry.lps_to_ijk_points(markup.points_lps):
            plane = canvas.slice(_slab_of(k))
            if plane is not None:
                _draw_cross(plane, (i, j), POINT_CROSS_ARM)
    elif kind in ("line", "angle", "curve", "closed_curve"):
        # An ellipse-marked closed curve is drawn as the ellipse (its dense samples), not as the
        # rhombus of its 4 axis ends.
        ijk = geometry.lps_to_ijk_points(outline_points_lps(markup))
        closed = kind == "closed_curve"
        slabs = {_slab_of(k) for k in ijk[:, 2]}
        if closed and filled and len(slabs) == 1:
            plane = canvas.slice(slabs.pop())
            if plane is not None:
                plane |= polygon_mask(plane.shape, ijk[:, :2], boundary="inside")
        else:
            ends = np.roll(ijk, -1, axis=0) if closed else ijk[1:]
            for start, end in zip(ijk, ends):
                _draw_segment_3d(canvas, start, end)
    elif kind == "roi":
        _draw_box(canvas, markup, filled)
    elif kind == "plane":
        _draw_plane(canvas, markup, filled)
    else:  # pragma: no cover - Markup validates kinds
        raise InputError(f"markup {markup.name!r}: cannot draw kind {kind!r}")
    return canvas.result()


class _SliceCanvas:
    """Lazily allocated (J, I) masks per slice index."""

    def __init__(self, geometry: VolumeGeometry):
        self.geometry = geometry
        self.depth, self.rows, self.cols = geometry.shape
        self.masks: Dict[int, np.ndarray] = {}

    def slice(self, k: int) -> Optional[np.ndarray]:
        if not 0 <= k < self.depth:
            return None
        if k not in self.masks:
            self.masks[k] = np.zeros((self.rows, self.cols), dtype=bool)
        return self.masks[k]

    def result(self) -> Dict[int, np.ndarray]:
        return {k: m for k, m in sorted(self.masks.items()) if m.any()}


def _slab_of(k: float) -> int:
    return int(np.floor(k + 0.5))


def _draw_segment_3d(canvas: _SliceCanvas, start: np.ndarray, end: np.ndarray) -> None:
    """Clip a segment (i, j, k) to each slab it crosses and draw the in-plane part there."""
    ka, kb = start[2], end[2]
    if _slab_of(ka) == _slab_of(kb):
        plane = canvas.slice(_slab_of(ka))
        if plane is not None:
            _draw_segment(plane, start[:2], end[:2])
        return
    first = max(_slab_of(min(ka, kb)), 0)
    last = min(_slab_of(max(ka, kb)), canvas.depth - 1)
    dk = kb - ka
    for k in range(first, last + 1):
        ta, tb = (k - 0.5 - ka) / dk, (k + 0.5 - ka) / dk
        t0, t1 = max(min(ta, tb), 0.0), min(max(ta, tb), 1.0)
        if t0 > t1:
            continue
        a, b = start + t0 * (end - start), start + t1 * (end - start)
        if t1 - t0 < _EPS and _slab_of(a[2]) != k:
            continue  # only touches the slab's excluded upper face
        _draw_segment(canvas.slice(k), a[:2], b[:2])


def _slab_window(canvas: _SliceCanvas, vertices: np.ndarray, edges: Sequence[Tuple[int, int]],
                 k_lo: float, k_hi: float, pad_ij: Tuple[float, float] = (0.0, 0.0)):
    """In-plane index window (rows, cols) covering a convex polytope (given by its vertices
    and edges, in (i, j, k)) cut to k_lo <= kk <= k_hi, widened by ``pad_ij`` plus one pixel;
    None when the cut is empty or off the image."""
    inside = vertices[(vertices[:, 2] >= k_lo) & (vertices[:, 2] <= k_hi)]
    pieces = [inside[:, :2]]
    a, b = vertices[[e[0] for e in edges]], vertices[[e[1] for e in edges]]
    dk = b[:, 2] - a[:, 2]
    moving = np.abs(dk) > 1e-12
    for level in (k_lo, k_hi):
        t = np.full(len(edges), -1.0)
        t[moving] = (level - a[moving, 2]) / dk[moving]
        hit = (t >= 0.0) & (t <= 1.0)
        pieces.append((a[hit] + t[hit, None] * (b[hit] - a[hit]))[:, :2])
    points = np.concatenate(pieces)
    if len(points) == 0:
        return None
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    pi, pj = pad_ij
    return _window((canvas.rows, canvas.cols), x0 - pi - 1, x1 + pi + 1, y0 - pj - 1, y1 + pj + 1)


_BOX_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
_RECTANGLE_EDGES = [(0, 1), (1, 3), (3, 2), (2, 0)]


def _local_coordinates(canvas: _SliceCanvas, center: np.ndarray, axes: np.ndarray,
                       k: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Coordinates, along ``axes`` (columns, LPS) from ``center`` (LPS), of the centres of the
    pixels rows x cols of slice k: shape (3, len(rows), len(cols))."""
    affine = canvas.geometry.ijk_to_lps
    to_local = np.linalg.inv(axes)
    m = to_local @ affine[:3, :3]                       # (i, j, k) -> local, linear part
    offset = to_local @ (affine[:3, 3] - center) + m[:, 2] * k
    return (m[:, 0, None, None] * cols[None, None, :] + m[:, 1, None, None] * rows[None, :, None]
            + offset[:, None, None])


def _draw_box(canvas: _SliceCanvas, markup: Markup, filled: bool) -> None:
    """ROI: pixel centres inside the oriented box, per slice of its k range."""
    geometry = canvas.geometry
    corners = geometry.lps_to_ijk_points(markup.roi_corners_lps())
    half = markup.roi_size / 2.0
    tolerance = 1e-6 * max(1.0, float(np.max(half)))
    first = max(int(np.ceil(corners[:, 2].min() - _EPS)), 0)
    last = min(int(np.floor(corners[:, 2].max() + _EPS)), canvas.depth - 1)
    for k in range(first, last + 1):
        window = _slab_window(canvas, corners, _BOX_EDGES, k - _EPS, k + _EPS)
        if window is None:
            continue
        rows, cols = window
        local = _local_coordinates(canvas, markup.roi_center_lps, markup.roi_axes_lps, k, rows, cols)
        inside = np.all(np.abs(local) <= half[:, None, None] + tolerance, axis=0)
        if not inside.any():
            continue
        # The window has a one-pixel margin around the cross-section, so outlining it equals
        # outlining the whole slice.
        canvas.slice(k)[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] |= inside if filled else outline(inside)


def _draw_plane(canvas: _SliceCanvas, markup: Markup, filled: bool) -> None:
    """Plane rectangle: voxels the plane cuts, whose centre projects inside the rectangle."""
    geometry = canvas.geometry
    axes = markup.roi_axes_lps
    normal = axes[:, 2] / np.linalg.norm(axes[:, 2])
    steps = geometry.ijk_to_lps[:3, :3]
    # Orient the normal along +k so that a plane on a slab boundary goes to the upper slab,
    # as for points (k - 0.5 <= kk < k + 0.5).
    if normal @ steps[:, 2] < 0:
        normal = -normal
    # The plane cuts a voxel when the centre is closer to it than the voxel box's half extent
    # along the normal.
    half_thickness = 0.5 * float(np.sum(np.abs(normal @ steps)))
    # A drawn centre lies up to half_thickness from its projection on the plane: in index
    # units, up to `reach` along i, j, k.
    reach = half_thickness * np.abs(np.linalg.solve(steps, normal))
    half = markup.roi_size[:2] / 2.0
    signs = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], dtype=float)
    corners = geometry.lps_to_ijk_points(markup.roi_center_lps + (signs * half) @ axes[:, :2].T)
    tolerance = 1e-6 * max(1.0, float(np.max(half)))
    first = max(int(np.floor(corners[:, 2].min() - reach[2])), 0)
    last = min(int(np.ceil(corners[:, 2].max() + reach[2])), canvas.depth - 1)
    frame = np.column_stack([axes[:, 0], axes[:, 1], normal])
    for k in range(first, last + 1):
        window = _slab_window(canvas, corners, _RECTANGLE_EDGES, k - reach[2] - _EPS, k + reach[2] + _EPS,
                              (reach[0], reach[1]))
        if window is None:
            continue
        rows, cols = window
        local = _local_coordinates(canvas, markup.roi_center_lps, frame, k, rows, cols)
        cut = (local[2] > -half_thickness) & (local[2] <= half_thickness)
        inside = cut & (np.abs(local[0]) <= half[0] + tolerance) & (np.abs(local[1]) <= half[1] + tolerance)
        if not inside.any():
            continue
        canvas.slice(k)[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] |= inside if filled else outline(inside)


__all__ = ["polyline_mask", "polygon_mask", "ellipse_mask", "rectangle_mask", "cross_mask", "outline",
           "markup_slice_masks", "polygon_masks", "ellipse_masks", "rectangle_masks", "BATCH_PIXELS",
           "POINT_CROSS_ARM"]
