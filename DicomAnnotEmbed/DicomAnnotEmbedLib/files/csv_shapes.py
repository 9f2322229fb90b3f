"""Findings of an annotation table (:mod:`.csv_table`): each row's shape drawn on a window of
its slice, a finding's pieces merged (inclusions joined, exclusions cut out), a free label layer
for it, and its points and polylines as markups (**LPS**).

Rasterisation uses :mod:`rasterize` on a window around each shape, all shapes of a kind at
once (numpy throughout: no per-pixel Python loop); the result equals drawing on the whole image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core import arrays
from ..core.ellipses import ELLIPSE, axis_ends
from ..core.model import Markup
from ..core.rasterize import ellipse_masks, polygon_masks, polyline_mask, rectangle_masks


class _RowError(Exception):
    """A bad row (message without the row number)."""



# ----------------------------------------------------------------------------------------------
# Findings
# ----------------------------------------------------------------------------------------------

@dataclass
class _Piece:
    """A row's area shape (or line, with ``lines_in_segments``) on slice k: what :func:`_draw`
    draws (``points`` (column, row); ``radius`` of a circle; ``ellipse`` (centre, semi-axes,
    angle) of an ellipse), then the drawing, ``mask`` on the window at row r0, column c0."""
    k: int
    include: bool
    kind: str
    points: np.ndarray
    boundary: str
    row: int
    radius: Optional[float] = None
    ellipse: Optional[Tuple[np.ndarray, Tuple[float, float], float]] = None
    r0: int = 0
    c0: int = 0
    window: Tuple[int, int] = (0, 0)  # rows, columns
    mask: Optional[np.ndarray] = None


@dataclass
class _Finding:
    id: str
    first_row: int
    fields: Dict[str, Tuple[str, int]] = field(default_factory=dict)  # label, color, ... -> (value, row)
    attributes: Dict[str, Tuple[str, int]] = field(default_factory=dict)  # attribute header -> (value, row)
    pieces: List[_Piece] = field(default_factory=list)
    points: List[Tuple[np.ndarray, int]] = field(default_factory=list)  # (LPS (3,), row)
    polylines: List[Tuple[np.ndarray, int]] = field(default_factory=list)  # ((N, 3) LPS, row)
    ellipses: List[_Piece] = field(default_factory=list)  # included ovals and circles (radius > 0)
    rows: List[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.fields.get("label", (self.id, 0))[0]


_OUTLINED = ("rectangle", "polygon", "freehand", "polyline", "point")  # windows around their points
_ROUND = ("circle", "ellipse")  # windows around their circle or ellipse


def _draw(pieces: Sequence[_Piece], shape2d: Tuple[int, int]) -> None:
    """Draw every piece on a window of the image around it (``mask``, ``r0``, ``c0``), the shapes
    of a kind all at once (:func:`rasterize.polygon_masks`, ``ellipse_masks``, ``rectangle_masks``:
    the same pixels as drawing them one by one; a table's shapes each cost ~30 numpy calls that
    way). Drawing on the window equals drawing on the whole image: the window has a 2-pixel margin
    around the shape, clipped only at the image's edges."""
    outlined = [p for p in pieces if p.kind in _OUTLINED]
    round_ = [p for p in pieces if p.kind in _ROUND]
    if outlined:
        counts = np.array([len(p.points) for p in outlined])
        points = np.concatenate([p.points for p in outlined])
        starts = np.cumsum(counts) - counts
        _place(outlined, np.minimum.reduceat(points, starts), np.maximum.reduceat(points, starts), shape2d)
        offsets = np.repeat(np.array([(p.c0, p.r0) for p in outlined], dtype=float), counts, axis=0)
        local = np.split(points - offsets, starts[1:])  # the points on each window
        _draw_outlined(outlined, local)
    if round_:
        centers = np.array([p.points[0] if p.kind == "circle" else p.ellipse[0] for p in round_])
        reach = np.array([p.radius if p.kind == "circle" else max(p.ellipse[1]) for p in round_])
        _place(round_, centers - reach[:, None], centers + reach[:, None], shape2d)
        offsets = np.array([(p.c0, p.r0) for p in round_], dtype=float)
        masks = ellipse_masks([p.window for p in round_], centers - offsets,
                              [(p.radius, p.radius) if p.kind == "circle" else p.ellipse[1] for p in round_],
                              [0.0 if p.kind == "circle" else p.ellipse[2] for p in round_])
        for piece, mask in zip(round_, masks):
            piece.mask = mask


def _place(pieces: Sequence[_Piece], lo: np.ndarray, hi: np.ndarray, shape2d: Tuple[int, int]) -> None:
    """Each piece's window (``r0``, ``c0``, ``window``): (lo, hi) of the shape (column, row)
    widened by 2 pixels, within the image."""
    rows, columns = shape2d
    first = np.maximum(np.floor(lo) - 2, 0).astype(np.int64)
    last = np.minimum(np.ceil(hi) + 2, [columns - 1, rows - 1]).astype(np.int64)
    size = np.maximum(last - first + 1, 1)
    for piece, (c0, r0), (width, height) in zip(pieces, first.tolist(), size.tolist()):
        piece.c0, piece.r0, piece.window = c0, r0, (height, width)


def _draw_outlined(pieces: Sequence[_Piece], local: Sequence[np.ndarray]) -> None:
    """Polygons, freehand shapes and rectangles (as polygons or as rectangles), polylines and points
    (``local``: their points on their windows)."""
    polygons, rectangles = [], []
    for index, (piece, points) in enumerate(zip(pieces, local)):
        kind, window = piece.kind, piece.window
        if kind == "rectangle" and len(points) == 2 and piece.boundary == "inside":
            rectangles.append(index)
        elif kind == "rectangle" and len(points) == 2:
            (x0, y0), (x1, y1) = points
            polygons.append((index, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])))
        elif kind in ("rectangle", "polygon", "freehand"):
            polygons.append((index, points))
        elif kind == "polyline":
            piece.mask = polyline_mask(window, points)
        else:  # point: one pixel per point (the nearest centre)
            mask = np.zeros(window, dtype=bool)
            for point in points:
                mask |= polyline_mask(window, point[None])
            piece.mask = mask
    masks = polygon_masks([pieces[i].window for i, _ in polygons], [p for _, p in polygons],
                          [pieces[i].boundary for i, _ in polygons])
    for (index, _), mask in zip(polygons, masks):
        pieces[index].mask = mask
    masks = rectangle_masks([pieces[i].window for i in rectangles], [local[i][0] for i in rectangles],
                            [local[i][1] for i in rectangles])
    for index, mask in zip(rectangles, masks):
        pieces[index].mask = mask


def _ellipse(points: np.ndarray) -> Tuple[np.ndarray, Tuple[float, float], float]:
    """Centre, semi-axes and angle (degrees) of an ellipse given by 2 bounding-box corners or
    4 axis ends (column, row)."""
    if len(points) == 2:
        center = points.mean(axis=0)
        half = np.abs(points[1] - points[0]) / 2.0
        return center, (float(half[0]), float(half[1])), 0.0
    first, second = points[1] - points[0], points[3] - points[2]
    center = (points[0] + points[1]) / 2.0
    a, b = float(np.linalg.norm(first)) / 2.0, float(np.linalg.norm(second)) / 2.0
    if a == 0 or b == 0:
        raise _RowError("an ellipse axis has length 0")
    if np.linalg.norm((points[2] + points[3]) / 2.0 - center) > 0.5 + 1e-6:
        raise _RowError("the two ellipse axes do not cross at their middles (4 points: ends of one axis, then of the "
                        "other)")
    if abs(first @ second) / (2 * a * 2 * b) > 0.02:
        raise _RowError("the two ellipse axes are not perpendicular")
    return center, (a, b), float(np.degrees(np.arctan2(first[1], first[0])))


def _axis_ends(piece: _Piece, geometry) -> np.ndarray:
    """The (4, 3) LPS axis ends, major axis first, of the ellipse an oval or circle piece (radius >
    0) draws (the one :func:`_draw` fills): the row's own 4 points when it gives axis ends (the
    second axis made exactly perpendicular), else left, right, top and bottom."""
    points, k = piece.points, piece.k
    if piece.kind == "circle":
        radius = piece.radius
        ends = axis_ends(points[0], (radius, 0.0), (0.0, radius))
    else:
        center, (a, b), angle = piece.ellipse
        direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        across = np.array([-direction[1], direction[0]])
        if len(points) == 4 and (points[3] - points[2]) @ across < 0:
            across = -across
        ends = axis_ends(center, a * direction, b * across)
    return geometry.ijk_to_lps_points(np.column_stack([ends, np.full(4, float(k))]))


_COUNTS = {"point": (1, None), "polyline": (2, None), "polygon": (3, None), "freehand": (3, None),
           "circle": (2, 2), "ellipse": (2, 4), "rectangle": (2, 4)}


def _check_count(kind: str, n: int) -> None:
    low, high = _COUNTS[kind]
    if kind in ("ellipse", "rectangle") and n not in (2, 4):
        raise _RowError(f"a {kind} needs 2 or 4 points, got {n}")
    if n < low or (high is not None and n > high):
        raise _RowError(f"a {kind} needs {'exactly' if low == high else 'at least'} {low} point"
                        f"{'s' if low > 1 else ''}, got {n}")



# ----------------------------------------------------------------------------------------------
# Findings to segments and markups
# ----------------------------------------------------------------------------------------------

def _merged_planes(pieces: Sequence[_Piece]) -> Dict[int, Tuple[int, int, np.ndarray]]:
    """{k: (r0, c0, mask)} of a finding: its inclusions joined, its exclusions cut out, on the
    bounding window of its inclusions on each slice."""
    by_slice: Dict[int, List[_Piece]] = {}
    for piece in pieces:
        by_slice.setdefault(piece.k, []).append(piece)
    planes = {}
    for k, items in sorted(by_slice.items()):
        included = [p for p in items if p.include and p.mask.size]
        if not included:
            continue
        r0 = min(p.r0 for p in included)
        c0 = min(p.c0 for p in included)
        r1 = max(p.r0 + p.mask.shape[0] for p in included)
        c1 = max(p.c0 + p.mask.shape[1] for p in included)
        window = np.zeros((r1 - r0, c1 - c0), dtype=bool)
        for p in items:  # in row order: an exclusion cuts what came before it on the slice
            rr0, cc0 = max(p.r0, r0), max(p.c0, c0)
            rr1, cc1 = min(p.r0 + p.mask.shape[0], r1), min(p.c0 + p.mask.shape[1], c1)
            if rr0 >= rr1 or cc0 >= cc1:
                continue
            part = p.mask[rr0 - p.r0:rr1 - p.r0, cc0 - p.c0:cc1 - p.c0]
            target = window[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0]
            if p.include:
                target |= part
            else:
                target &= ~part
        if window.any():
            planes[k] = (r0, c0, window)
    return planes


def _unique_names(findings: Sequence[_Finding]) -> Dict[str, str]:
    """Finding id -> display name: its label, or "label (finding)" when findings share a label."""
    counts: Dict[str, int] = {}
    for finding in findings:
        counts[finding.label] = counts.get(finding.label, 0) + 1
    names: Dict[str, str] = {}
    used = set()
    for finding in findings:
        name = finding.label if counts[finding.label] == 1 or finding.label == finding.id \
            else f"{finding.label} ({finding.id})"
        base, n = name, 2
        while name in used:
            name, n = f"{base} {n}", n + 1
        used.add(name)
        names[finding.id] = name
    return names



#: Side in pixels of the tiles by which _Layers finds the planes a plane may overlap.
_TILE = 32


class _Layers:
    """The label layers of the findings: a finding goes to the first layer where it overlaps no
    earlier finding and a label value is left (a new layer when there is none). The layers are
    kept as their findings' planes ({k: (r0, c0, mask)}) until :meth:`volume` writes them all into
    one array: building each layer as a volume, then stacking them, cost a copy of every layer and
    the page faults of twice their size. A plane is compared only with the layer's planes that
    share one of its tiles (:data:`_TILE` pixels square; a plane's pixels lie in its tiles), so
    thousands of small findings on a slice are not compared with each other."""

    def __init__(self):
        self.tiles: List[Dict[Tuple[int, int, int], List[Tuple[int, int, np.ndarray]]]] = []  # per layer
        self.next_value: List[int] = []
        self.placed: List[Tuple[int, int, Dict[int, Tuple[int, int, np.ndarray]]]] = []  # (layer, value, planes)

    def add(self, planes: Dict[int, Tuple[int, int, np.ndarray]]) -> Tuple[int, int]:
        """The layer and label value of a finding's planes."""
        tiled = [(plane, _tiles(k, plane)) for k, plane in planes.items()]
        layer = next((index for index in range(len(self.tiles))
                      if self.next_value[index] <= 65535 and not self._overlaps(index, tiled)), None)
        if layer is None:
            layer = len(self.tiles)
            self.tiles.append({})
            self.next_value.append(1)
        value = self.next_value[layer]
        self.next_value[layer] += 1
        for plane, keys in tiled:
            for key in keys:
                self.tiles[layer].setdefault(key, []).append(plane)
        self.placed.append((layer, value, planes))
        return layer, value

    def _overlaps(self, layer: int, tiled) -> bool:
        tiles = self.tiles[layer]
        for plane, keys in tiled:
            seen = set()
            for key in keys:
                for other in tiles.get(key, ()):
                    if id(other) not in seen:
                        seen.add(id(other))
                        if _overlap(plane, other):
                            return True
        return False

    def volume(self, shape: Tuple[int, int, int]) -> Optional[np.ndarray]:
        """(layers, K, J, I) label values (uint8, or uint16 when a value exceeds 255); None when no
        finding was added."""
        if not self.placed:
            return None
        dtype = np.uint16 if max(value for _, value, _ in self.placed) > 255 else np.uint8
        # on 4 KiB pages (core.arrays): only the pages the planes touch are faulted in, one by one; on
        # numpy's huge pages the first write to each 2 MB took 0.3 s for the benchmark's 104 MB
        volume = arrays.zeros((len(self.tiles),) + tuple(shape), dtype)
        for layer, value, planes in self.placed:
            for k, (r0, c0, mask) in planes.items():
                volume[layer, k, r0:r0 + mask.shape[0], c0:c0 + mask.shape[1]][mask] = value
        return volume


def _tiles(k: int, plane: Tuple[int, int, np.ndarray]) -> List[Tuple[int, int, int]]:
    """(k, tile row, tile column) of the tiles a plane (r0, c0, mask) of slice k covers."""
    r0, c0, mask = plane
    rows, columns = mask.shape
    return [(k, r, c) for r in range(r0 // _TILE, (r0 + rows - 1) // _TILE + 1)
            for c in range(c0 // _TILE, (c0 + columns - 1) // _TILE + 1)]


def _overlap(a: Tuple[int, int, np.ndarray], b: Tuple[int, int, np.ndarray]) -> bool:
    """Whether two planes (r0, c0, mask) of a slice share a pixel."""
    (ar, ac, am), (br, bc, bm) = a, b
    r0, r1 = max(ar, br), min(ar + am.shape[0], br + bm.shape[0])
    c0, c1 = max(ac, bc), min(ac + am.shape[1], bc + bm.shape[1])
    return r0 < r1 and c0 < c1 and bool((am[r0 - ar:r1 - ar, c0 - ac:c1 - ac] & bm[r0 - br:r1 - br, c0 - bc:c1 - bc]).any())


def _unique(text: str, used: set) -> str:
    base, candidate, n = text, text, 2
    while candidate in used:
        candidate, n = f"{base} {n}", n + 1
    used.add(candidate)
    return candidate


def _ellipse_markups(finding: _Finding, name: str, color, used: set, geometry) -> List[Markup]:
    """The ovals and circles of a finding drawn only with them, as closed curves marked as
    ellipses (:mod:`core.ellipses`; 4 control points, the axis ends, **LPS**)."""
    several = len(finding.ellipses) > 1
    return [Markup("closed_curve", _unique(f"{name} {number}" if several else name, used), _axis_ends(piece, geometry),
                   color=color, description=f"finding {finding.id}, row {piece.row}", shape=ELLIPSE,
                   attributes={"finding": finding.id})
            for number, piece in enumerate(finding.ellipses, 1)]


def _markups(finding: _Finding, name: str, color, used: set) -> List[Markup]:
    markups = []

    def unique(text: str) -> str:
        return _unique(text, used)

    if finding.points:
        label = unique(name if not finding.pieces else f"{name} points")
        points = np.array([p for p, _ in finding.points])
        markups.append(Markup("point_list", label, points, [f"{label}-{n + 1}" for n in range(len(points))],
                              color=color, description=f"finding {finding.id}"))
    several = len(finding.polylines) > 1
    for number, (points, row) in enumerate(finding.polylines, 1):
        base = name if not finding.pieces and not finding.points else f"{name} line"
        label = unique(f"{base} {number}" if several else base)
        markups.append(Markup("line" if len(points) == 2 else "curve", label, points, color=color,
                              description=f"finding {finding.id}, row {row}"))
    return markups
