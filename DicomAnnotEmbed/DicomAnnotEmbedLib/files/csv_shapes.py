"""Findings of an annotation table (:mod:`.csv_table`): each row's shape drawn on a window of
its slice, a finding's pieces merged (inclusions joined, exclusions cut out), a free label layer
for it, and its points and polylines as markups (**LPS**).

Rasterisation uses :mod:`rasterize` on a window around each shape (numpy throughout: no
per-pixel Python loop); the result equals drawing on the whole image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.ellipses import ELLIPSE, axis_ends
from ..core.model import Markup
from ..core.rasterize import ellipse_mask, polygon_mask, polyline_mask, rectangle_mask


class _RowError(Exception):
    """A bad row (message without the row number)."""



# ----------------------------------------------------------------------------------------------
# Findings
# ----------------------------------------------------------------------------------------------

@dataclass
class _Piece:
    k: int
    r0: int
    c0: int
    mask: np.ndarray
    include: bool


@dataclass
class _Finding:
    id: str
    first_row: int
    fields: Dict[str, Tuple[str, int]] = field(default_factory=dict)  # label, color, ... -> (value, row)
    attributes: Dict[str, Tuple[str, int]] = field(default_factory=dict)  # attribute header -> (value, row)
    pieces: List[_Piece] = field(default_factory=list)
    points: List[Tuple[np.ndarray, int]] = field(default_factory=list)  # (LPS (3,), row)
    polylines: List[Tuple[np.ndarray, int]] = field(default_factory=list)  # ((N, 3) LPS, row)
    ellipses: List[Tuple[np.ndarray, int]] = field(default_factory=list)  # included ovals: ((4, 3) LPS axis ends, row)
    rows: List[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.fields.get("label", (self.id, 0))[0]


def _rasterize(kind: str, points: np.ndarray, shape2d: Tuple[int, int], boundary: str,
               radius: Optional[float]) -> Tuple[int, int, np.ndarray]:
    """(row offset, column offset, mask) of a shape drawn on a window of the image around it.

    ``points`` are (column, row). Drawing on the window equals drawing on the whole image: the
    window has a 2-pixel margin around the shape, clipped only at the image's edges."""
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
    elif kind == "point":  # one pixel per point (the nearest centre)
        mask = np.zeros(window, dtype=bool)
        for point in local:
            mask |= polyline_mask(window, point[None])
    else:  # pragma: no cover - kinds are checked when the row is read
        raise _RowError(f"cannot draw {kind}")
    return r0, c0, mask


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


def _axis_ends(kind: str, points: np.ndarray, radius: Optional[float], geometry, k: int,
               row: int) -> List[Tuple[np.ndarray, int]]:
    """``[((4, 3) LPS axis ends, row)]``, major axis first, of the ellipse an oval or circle row
    draws on slice k (the one :func:`_rasterize` fills; ``points`` (column, row)): the row's own
    4 points when it gives axis ends (the second axis made exactly perpendicular), else left,
    right, top and bottom; [] for a circle of radius 0."""
    if kind == "circle":
        radius = float(np.hypot(*(points[1] - points[0]))) if radius is None else radius
        if radius <= 0:
            return []
        ends = axis_ends(points[0], (radius, 0.0), (0.0, radius))
    else:
        center, (a, b), angle = _ellipse(points)
        direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        across = np.array([-direction[1], direction[0]])
        if len(points) == 4 and (points[3] - points[2]) @ across < 0:
            across = -across
        ends = axis_ends(center, a * direction, b * across)
    return [(geometry.ijk_to_lps_points(np.column_stack([ends, np.full(4, float(k))])), row)]


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



def _free_layer(layers: List[np.ndarray], next_value: List[int], planes, shape) -> int:
    """The first layer where the finding overlaps nothing and a label value is left (a new one
    when there is none)."""
    for index, layer in enumerate(layers):
        if next_value[index] > 65535:
            continue
        if not any(layer[k, r0:r0 + m.shape[0], c0:c0 + m.shape[1]][m].any() for k, (r0, c0, m) in planes.items()):
            return index
    layers.append(np.zeros(shape, dtype=np.uint8))
    next_value.append(1)
    return len(layers) - 1



def _unique(text: str, used: set) -> str:
    base, candidate, n = text, text, 2
    while candidate in used:
        candidate, n = f"{base} {n}", n + 1
    used.add(candidate)
    return candidate


def _ellipse_markups(finding: _Finding, name: str, color, used: set) -> List[Markup]:
    """The ovals and circles of a finding drawn only with them, as closed curves marked as
    ellipses (:mod:`core.ellipses`; 4 control points, the axis ends, **LPS**)."""
    several = len(finding.ellipses) > 1
    return [Markup("closed_curve", _unique(f"{name} {number}" if several else name, used), ends, color=color,
                   description=f"finding {finding.id}, row {row}", shape=ELLIPSE, attributes={"finding": finding.id})
            for number, (ends, row) in enumerate(finding.ellipses, 1)]


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
