"""Ellipses: closed curves marked ``shape == "ellipse"`` (:class:`.model.Markup`).

Slicer has no oval markup. An ellipse is kept as a closed curve whose 4 control points are the
ends of its axes, major axis first, then minor axis (the order of DICOM's ELLIPSE graphic, PS3.3
C.10.5.1.2 and C.18.9.1.2), in **LPS** like every markup, and whose ``shape`` says "ellipse"
(``.mrk.json``: the entry's ``"dicomAnnotEmbedShape"``; a Slicer node: the attribute
``DicomAnnotEmbed.Shape``). The marks come from where ellipses are drawn: CSV ovals and circles,
GSPS ELLIPSE and CIRCLE graphics, SR ELLIPSE regions.

The functions work on points of any dimension (LPS triples, pixel pairs): an affine map (LPS to
pixel indices) takes the axis ends of an ellipse to two conjugate diameters of the image ellipse,
so :func:`ellipse_samples` of mapped points samples the mapped ellipse exactly.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

#: The ``Markup.shape`` of an ellipse.
ELLIPSE = "ellipse"
#: Shapes a closed curve may be marked with.
SHAPES = (ELLIPSE,)
#: How far 4 points may be from two perpendicular axes crossing at their middles, relative to the
#: major semi-axis: the middles' distance and the cosine of the angle between the axes (as the CSV
#: reader's check of typed ovals, 0.02 there).
TOLERANCE = 0.01
#: Largest gap (mm, for LPS points) between the ellipse and the polygon of its samples.
SAMPLING_MM = 0.01


def ellipse_axes(points: np.ndarray, tolerance: float = TOLERANCE
                 ) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(centre, first semi-axis, second semi-axis) of the ellipse whose axis ends are ``points``
    ((4, D): the ends of one axis, then of the other); None when they are not the ends of two
    perpendicular, non-zero axes that cross at their middles (within ``tolerance``). The centre is
    the first axis' middle. 4 such points always lie in one plane."""
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or len(points) != 4 or not np.all(np.isfinite(points)):
        return None
    centre = (points[0] + points[1]) / 2.0
    first, second = points[0] - centre, points[2] - (points[2] + points[3]) / 2.0
    a, b = float(np.linalg.norm(first)), float(np.linalg.norm(second))
    reach = max(a, b)
    if min(a, b) <= 1e-9 * max(reach, 1.0):
        return None
    if np.linalg.norm((points[2] + points[3]) / 2.0 - centre) > tolerance * reach:
        return None
    if abs(float(first @ second)) > tolerance * a * b:
        return None
    return centre, first, second


def is_ellipse(points: np.ndarray, tolerance: float = TOLERANCE) -> bool:
    return ellipse_axes(points, tolerance) is not None


def sample_count(points: np.ndarray, tolerance: float = SAMPLING_MM) -> int:
    """Vertices for :func:`ellipse_samples` so that the polygon lies within ``tolerance`` of the
    ellipse (its sagitta ``a (1 - cos(pi / n))``), a multiple of 4 from 32 to 1024."""
    axes = ellipse_axes(points)
    reach = max(np.linalg.norm(axes[1]), np.linalg.norm(axes[2])) if axes is not None else 0.0
    n = math.pi * math.sqrt(reach / (2.0 * tolerance)) if reach > 0 else 0
    return int(min(max(4 * math.ceil(n / 4.0), 32), 1024))


def ellipse_samples(points: np.ndarray, count: Optional[int] = None) -> np.ndarray:
    """(count, D) points on the ellipse with axis ends ``points`` ((4, D)), in order from the first
    point (angle 0) towards the third; with ``count`` a multiple of 4, the samples 0, count/4,
    count/2 and 3 count/4 are the points 1, 3, 2 and 4 themselves.

    Raises:
        ValueError: the points are not an ellipse's axis ends (:func:`ellipse_axes`).
    """
    points = np.asarray(points, dtype=float)
    axes = ellipse_axes(points)
    if axes is None:
        raise ValueError("the 4 points are not the ends of two perpendicular axes crossing at their middles")
    centre, first, second = axes
    count = sample_count(points) if count is None else int(count)
    t = 2.0 * np.pi * np.arange(count) / count
    samples = centre + np.cos(t)[:, None] * first + np.sin(t)[:, None] * second
    if count % 4 == 0:  # the axis ends exactly (cos(pi / 2) is 6e-17, not 0)
        samples[[0, count // 4, count // 2, 3 * count // 4]] = points[[0, 2, 1, 3]]
    return samples


def major_first(points: np.ndarray) -> np.ndarray:
    """The 4 axis ends with the longer axis first (DICOM's ELLIPSE order)."""
    points = np.asarray(points, dtype=float)
    first, second = np.linalg.norm(points[1] - points[0]), np.linalg.norm(points[3] - points[2])
    if second > first * (1.0 + 1e-9):  # equal axes (a circle) keep their order through rounding
        return points[[2, 3, 0, 1]]
    return points


def axis_ends(centre: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The 4 axis ends ``centre - first, centre + first, centre - second, centre + second`` of the
    ellipse ``centre + cos t first + sin t second``, the major axis first."""
    centre, first, second = (np.asarray(v, dtype=float) for v in (centre, first, second))
    return major_first(np.array([centre - first, centre + first, centre - second, centre + second]))


def ellipse_area_perimeter(points: np.ndarray) -> Tuple[float, float]:
    """Area (pi a b) and perimeter (Ramanujan's second approximation, relative error below 1e-9
    for b/a > 0.2, 4e-5 at worst) of the ellipse with axis ends ``points``.

    Raises:
        ValueError: not an ellipse's axis ends.
    """
    axes = ellipse_axes(points)
    if axes is None:
        raise ValueError("the 4 points are not the ends of two perpendicular axes crossing at their middles")
    a, b = float(np.linalg.norm(axes[1])), float(np.linalg.norm(axes[2]))
    h = ((a - b) / (a + b)) ** 2
    return math.pi * a * b, math.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + math.sqrt(4.0 - 3.0 * h)))


def markup_ellipse(markup) -> Optional[np.ndarray]:
    """The (4, 3) LPS axis ends of a closed curve marked as an ellipse, when they are one; None
    for other markups and for marked curves whose points are not an ellipse's axis ends."""
    if getattr(markup, "shape", None) != ELLIPSE or markup.kind != "closed_curve":
        return None
    return markup.points_lps if is_ellipse(markup.points_lps) else None


def outline_points_lps(markup) -> np.ndarray:
    """The vertices (LPS) that draw a markup's path: a valid ellipse's samples (every
    :data:`SAMPLING_MM`), else its control points."""
    ends = markup_ellipse(markup)
    return markup.points_lps if ends is None else ellipse_samples(ends)


__all__ = ["ELLIPSE", "SHAPES", "TOLERANCE", "SAMPLING_MM", "axis_ends", "ellipse_area_perimeter", "ellipse_axes",
           "ellipse_samples", "is_ellipse", "major_first", "markup_ellipse", "outline_points_lps", "sample_count"]
