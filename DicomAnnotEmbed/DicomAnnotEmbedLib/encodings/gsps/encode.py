"""Markups (and, optionally, segment outlines) as one Grayscale Softcopy Presentation State.

The presentation state references the series' own images (nothing is copied) and holds one
graphic layer per markup or segment, named by kind and number (``LINE 1``, ``OUTLINE 3``; the
description holds the markup's name) with the markup's colour as recommended CIELab. On each
slice a markup crosses, as the overlay encoding draws it (:func:`core.rasterize.markup_slice_masks`
slabs: slice k holds ``k - 0.5 <= kk < k + 0.5`` in continuous index space):

* point lists: a POINT graphic per control point, on its slice;
* lines, angles, curves, closed curves: each 3D segment is clipped to each slab and projected on
  the slice; consecutive parts on one slice form one POLYLINE, so every control point is a vertex
  on its slice; the pieces are written in path order, one Graphic Annotation item each, so that
  the import can chain them back; a closed curve that stays in one slab is a closed POLYLINE
  (filled when asked);
* closed curves marked as ellipses (:mod:`core.ellipses`: 4 control points, the ends of the
  major and of the minor axis): an ELLIPSE graphic of those 4 points (major axis first) when they
  lie in one slab and are, in PIXEL coordinates, the ends of two perpendicular axes crossing at
  their middles (:func:`ellipse_graphics`); else (an ellipse across slices or tilted to them) the
  ellipse's samples as closed polylines on each slice it crosses; a marked curve whose points are
  not an ellipse's axis ends is drawn as a closed curve, with a warning;
* ROI boxes: their section by the slice's plane, a closed POLYLINE on each slice the box crosses;
* planes: the rectangle (closed) when parallel to the slices, else its section by each slice;
* segment outlines (option): VTK's marching squares of each segment on each slice, closed POLYLINEs
  around the pixel centres (half a pixel inside the pixel edges).

Coordinates are PIXEL units with SUBPIXEL precision (``column = i + 0.5``, ``row = j + 0.5``);
multi-frame images are referenced frame by frame. Each markup gets a text object with its name
and measurement (length, perimeter and area, angle, volume), anchored to its first vertex on the
first slice it is drawn on. The VOI is the series' first window (or the caller's).

highdicom builds the object (``highdicom.pr``); this module computes the graphics.
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...core.ellipses import ELLIPSE, ellipse_samples, is_ellipse, major_first, markup_ellipse
from ...core.errors import InputError, OutputError
from ...core.geometry import VolumeGeometry
from ...core.measurements import measure_markup
from ...core.model import AnnotationSet, Markup
from ...core.outputs import atomic_path, prepare_output_file
from ...core.progress import ProgressCallback, track
from ...core.series import ReferenceSeries, header_value
from ...dicom.colors import rgb_to_dicom_lab
from .common import MANUFACTURER, MAX_LAYERS, GspsExportResult, ij_to_pixel, layer_name

log = logging.getLogger(__name__)

_EPS = 1e-9
#: A graphic: (type, (N, 2) continuous (i, j) indices, closed, filled).
Graphic = Tuple[str, np.ndarray, bool, bool]


# --- geometry: what of a shape lies on each slice ------------------------------------------------

def _slab(kk: float) -> int:
    return int(np.floor(kk + 0.5))


def polyline_pieces(ijk: np.ndarray, closed: bool, depth: int) -> List[Tuple[int, np.ndarray, bool]]:
    """The parts of a 3D polyline (continuous (i, j, k) vertices) on each slice.

    Each segment is cut where it crosses a slab boundary ``kk = s + 0.5``; the parts in one slab
    are projected on the slice (their (i, j)); consecutive parts on the same slice are joined.
    Returns ``[(k, (N, 2) ij, closed)]`` in path order, slices outside ``0..depth-1`` left out;
    ``closed`` is True only for a closed polyline that lies in one slab.
    """
    ijk = np.asarray(ijk, dtype=float).reshape(-1, 3)
    if closed:
        slabs = {_slab(k) for k in ijk[:, 2]}
        if len(slabs) == 1:
            k = slabs.pop()
            return [(k, ijk[:, :2].copy(), True)] if 0 <= k < depth else []
        ends = np.roll(ijk, -1, axis=0)
    else:
        ends = ijk[1:]
    pieces: List[List] = []  # [k, [points]]
    for a, b in zip(ijk[:len(ends)], ends):
        ka, kb = _slab(a[2]), _slab(b[2])
        ts = [0.0]
        if ka != kb:
            step = 1 if kb > ka else -1
            for s in range(ka, kb, step):
                boundary = s + 0.5 * step
                ts.append((boundary - a[2]) / (b[2] - a[2]))
        ts.append(1.0)
        slab = ka
        for t0, t1 in zip(ts[:-1], ts[1:]):
            p0, p1 = a[:2] + t0 * (b[:2] - a[:2]), a[:2] + t1 * (b[:2] - a[:2])
            if 0 <= slab < depth:
                last = pieces[-1] if pieces else None
                if last is not None and last[0] == slab and np.allclose(last[1][-1], p0, atol=1e-9):
                    last[1].append(p1)
                else:
                    pieces.append([slab, [p0, p1]])
            slab += 1 if kb > ka else -1
    # A closed path that crosses slabs ends where it began, on the first piece's slice: the two
    # pieces meeting there stay apart, so that the import finds the first control point first.
    return [(k, np.array(points), False) for k, points in pieces]


def _plane_of_slice(geometry: VolumeGeometry, kk: float) -> Tuple[np.ndarray, np.ndarray]:
    """A point (LPS) and the unit normal of the plane of continuous slice index kk."""
    return geometry.ijk_to_lps_points(np.array([[0.0, 0.0, kk]]))[0], geometry.slice_normal


def _section(corners_lps: np.ndarray, edges: Sequence[Tuple[int, int]], geometry: VolumeGeometry,
             kk: float) -> Optional[np.ndarray]:
    """The convex polygon (ij, ordered) where a convex solid or flat polygon, given by its corners
    and edges, meets the plane of slice kk; None when it does not."""
    origin, normal = _plane_of_slice(geometry, kk)
    distance = (corners_lps - origin) @ normal
    points = []
    for a, b in edges:
        da, db = distance[a], distance[b]
        if abs(da) < _EPS:
            points.append(corners_lps[a])
        if (da < -_EPS and db > _EPS) or (da > _EPS and db < -_EPS):
            points.append(corners_lps[a] + da / (da - db) * (corners_lps[b] - corners_lps[a]))
    if len(points) < 2:
        return None
    ij = geometry.lps_to_ijk_points(np.array(points))[:, :2]
    ij = np.unique(np.round(ij, 9), axis=0)
    if len(ij) < 2:
        return None
    centre = ij.mean(axis=0)
    order = np.argsort(np.arctan2(ij[:, 1] - centre[1], ij[:, 0] - centre[0]))
    return ij[order]


_BOX_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
_RECTANGLE_EDGES = [(0, 1), (1, 3), (3, 2), (2, 0)]


def _solid_sections(corners_lps: np.ndarray, edges, geometry: VolumeGeometry,
                    filled: bool) -> Dict[int, List[Graphic]]:
    kk = geometry.lps_to_ijk_points(corners_lps)[:, 2]
    first, last = max(_slab(kk.min()), 0), min(_slab(kk.max()), geometry.shape[0] - 1)
    graphics: Dict[int, List[Graphic]] = {}
    for k in range(first, last + 1):
        # The slice's own plane where it cuts the shape; else (the shape ends within the slab) the
        # plane halfway through the shape's part of the slab, drawn on the slice.
        lo, hi = max(kk.min(), k - 0.5), min(kk.max(), k + 0.5)
        polygon = _section(corners_lps, edges, geometry, float(k) if lo <= k <= hi else (lo + hi) / 2.0)
        if polygon is None:
            continue
        closed = len(polygon) > 2
        graphics[k] = [("POLYLINE", polygon, closed, filled and closed)]
    return graphics


def ellipse_graphics(markup: Markup, geometry: VolumeGeometry, filled: bool,
                     notes: Optional[List[str]] = None) -> Optional[List[Tuple[int, List[Graphic]]]]:
    """What to draw of a closed curve marked as an ellipse (LPS): ``[(k, [ELLIPSE])]`` when its
    axis ends lie in one slab and are an ellipse's axis ends in PIXEL coordinates too (major axis
    first, as PS3.3 C.10.5.1.2 asks); else the ellipse sampled every 0.01 mm (a multiple of 4
    vertices, the axis ends among them) as closed polylines on the slices it crosses. None when the
    markup is not marked or its points are not an ellipse's axis ends (then it is a closed curve).
    Why an ellipse is not an ELLIPSE, or not one at all, is added to ``notes`` and logged."""
    if markup.shape != ELLIPSE:
        return None
    ends = markup_ellipse(markup)
    if ends is None:
        note = (f"markup {markup.name!r}: marked as an ellipse, but its {len(markup.points_lps)} control points are "
                "not the ends of two perpendicular axes crossing at their middles: drawn as a closed polyline "
                "through them")
        log.warning("%s", note)
        if notes is not None:
            notes.append(note)
        return None
    depth = geometry.shape[0]
    ijk = geometry.lps_to_ijk_points(major_first(ends))
    slabs = {_slab(kk) for kk in ijk[:, 2]}
    if len(slabs) == 1 and is_ellipse(ijk[:, :2]):
        k = slabs.pop()
        return [(k, [("ELLIPSE", major_first(ijk[:, :2]), True, filled)])] if 0 <= k < depth else []
    samples = ellipse_samples(ends)
    note = (f"markup {markup.name!r}: an ellipse that is not an ELLIPSE of one image (its axis ends lie on "
            f"{len(slabs)} slices, its plane is tilted to them, or its axes are not perpendicular in pixels: "
            f"non-square pixels): drawn as a polyline of {len(samples)} vertices on each slice it crosses")
    log.warning("%s", note)
    if notes is not None:
        notes.append(note)
    return [(k, [("POLYLINE", ij, closed, filled and closed)])
            for k, ij, closed in polyline_pieces(geometry.lps_to_ijk_points(samples), True, depth)]


def markup_graphics(markup: Markup, geometry: VolumeGeometry, filled: Optional[bool] = None,
                    interpolated: bool = False, notes: Optional[List[str]] = None) -> List[Tuple[int, List[Graphic]]]:
    """What to draw of a markup (LPS) on the slices of a grid: ``[(k, [graphic])]`` with (i, j)
    vertices. Lines, angles and curves give one group per piece, in path order (the import chains
    them back into the markup); other kinds one group per slice, in slice order.
    ``interpolated``: curves and closed curves as INTERPOLATED graphics (the viewer draws a smooth
    curve through the vertices, as Slicer does through the control points) instead of POLYLINEs.
    A closed curve marked as an ellipse: :func:`ellipse_graphics` (``notes`` gets why an ellipse
    is drawn otherwise than as an ELLIPSE)."""
    filled = markup.filled if filled is None else bool(filled)
    depth = geometry.shape[0]
    ellipse = ellipse_graphics(markup, geometry, filled, notes)
    if ellipse is not None:
        return ellipse
    if markup.kind in ("line", "angle", "curve", "closed_curve"):
        closed = markup.kind == "closed_curve"
        groups = []
        for k, ij, is_closed in polyline_pieces(geometry.lps_to_ijk_points(markup.points_lps), closed, depth):
            smooth = interpolated and markup.kind in ("curve", "closed_curve") and len(ij) > 2
            groups.append((k, [("INTERPOLATED" if smooth else "POLYLINE", ij, is_closed, filled and is_closed)]))
        return groups
    graphics: Dict[int, List[Graphic]] = defaultdict(list)
    if markup.kind == "point_list":
        for i, j, kk in geometry.lps_to_ijk_points(markup.points_lps):
            if 0 <= _slab(kk) < depth:
                graphics[_slab(kk)].append(("POINT", np.array([[i, j]]), False, False))
    elif markup.kind == "roi":
        graphics.update(_solid_sections(markup.roi_corners_lps(), _BOX_EDGES, geometry, filled))
    elif markup.kind == "plane":
        axes, half = markup.roi_axes_lps, markup.roi_size[:2] / 2.0
        signs = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], dtype=float)
        corners = markup.roi_center_lps + (signs * half) @ axes[:, :2].T
        kk = geometry.lps_to_ijk_points(corners)[:, 2]
        if np.ptp(kk) < 1e-6:  # parallel to the slices: the rectangle on its slice
            k = _slab(kk[0])
            if 0 <= k < depth:
                ij = geometry.lps_to_ijk_points(corners[[0, 1, 3, 2]])[:, :2]
                graphics[k].append(("POLYLINE", ij, True, filled))
        else:
            graphics.update(_solid_sections(corners, _RECTANGLE_EDGES, geometry, False))
    return sorted(graphics.items())


def _clip_segment(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Liang-Barsky: the part (t0, t1) of segment a-b inside the box [lo, hi], or None."""
    t0, t1 = 0.0, 1.0
    d = b - a
    for axis in range(2):
        if abs(d[axis]) < 1e-15:
            if a[axis] < lo[axis] or a[axis] > hi[axis]:
                return None
            continue
        ta, tb = (lo[axis] - a[axis]) / d[axis], (hi[axis] - a[axis]) / d[axis]
        t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
    return (t0, t1) if t0 <= t1 else None


def clip_polyline(ij: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> List[np.ndarray]:
    """The parts of an open polyline inside the box [lo, hi] (one array per contiguous part)."""
    parts: List[List[np.ndarray]] = []
    joined = False  # the previous segment reached its end inside the box
    for a, b in zip(ij[:-1], ij[1:]):
        span = _clip_segment(a, b, lo, hi)
        if span is None:
            joined = False
            continue
        p0, p1 = a + span[0] * (b - a), a + span[1] * (b - a)
        if joined and span[0] == 0.0:
            parts[-1].append(p1)
        else:
            parts.append([p0, p1])
        joined = span[1] == 1.0
    if len(ij) == 1 and np.all(ij[0] >= lo) and np.all(ij[0] <= hi):
        parts.append([ij[0]])
    return [np.array(part) for part in parts]


def clip_polygon(ij: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Optional[np.ndarray]:
    """Sutherland-Hodgman: a closed polygon cut to the box [lo, hi]; None when nothing is left."""
    polygon = [p for p in np.asarray(ij, dtype=float)]
    for axis in range(2):
        for bound, keep in ((lo[axis], lambda v, c: v >= c), (hi[axis], lambda v, c: v <= c)):
            if not polygon:
                return None
            result = []
            for n, current in enumerate(polygon):
                previous = polygon[n - 1]
                inside_c, inside_p = keep(current[axis], bound), keep(previous[axis], bound)
                if inside_c != inside_p:
                    t = (bound - previous[axis]) / (current[axis] - previous[axis])
                    crossing = previous + t * (current - previous)
                    crossing[axis] = bound
                    result.append(crossing)
                if inside_c:
                    result.append(current)
            polygon = result
    return np.array(polygon) if len(polygon) >= 3 else None


def clip_to_image(groups: List[Tuple[int, List[Graphic]]], rows: int, columns: int
                  ) -> Tuple[List[Tuple[int, List[Graphic]]], bool]:
    """Graphics cut to the image ((i, j) from -0.5 to size - 0.5: PIXEL 0 to size, as highdicom
    requires non-negative pixel coordinates); True when something was cut away."""
    lo, hi = np.array([-0.5, -0.5]), np.array([columns - 0.5, rows - 0.5])
    clipped: List[Tuple[int, List[Graphic]]] = []
    cut = False
    for k, items in groups:
        kept: List[Graphic] = []
        for kind, ij, closed, filled in items:
            if np.all(ij >= lo) and np.all(ij <= hi):
                kept.append((kind, ij, closed, filled))
                continue
            cut = True
            if kind == "POINT":
                continue
            if kind == "ELLIPSE":  # an axis end off the image: the ellipse's samples, cut as a polygon
                kind, ij = "POLYLINE", ellipse_samples(ij)
            if closed:
                polygon = clip_polygon(ij, lo, hi)
                if polygon is not None:
                    kept.append((kind, np.clip(polygon, lo, hi), True, filled))
            else:
                kept.extend((kind, np.clip(part, lo, hi), False, False)
                            for part in clip_polyline(ij, lo, hi) if len(part) >= 2)
        if kept:
            clipped.append((k, kept))
    return clipped, cut


def segment_outlines(mask2d: np.ndarray) -> List[np.ndarray]:
    """Closed outlines ((N, 2) ij, first vertex not repeated) of a 2D mask: VTK's marching
    squares at 0.5 on the 0/1 image, joined into polylines by vtkStripper."""
    import vtk
    from vtk.util import numpy_support

    mask = np.pad(np.asarray(mask2d, dtype=np.uint8), 1)  # regions cut by the image edge get closed
    image = vtk.vtkImageData()
    image.SetDimensions(mask.shape[1], mask.shape[0], 1)
    image.SetOrigin(-1.0, -1.0, 0.0)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.ravel(), deep=True))
    squares = vtk.vtkMarchingSquares()
    squares.SetInputData(image)
    squares.SetValue(0, 0.5)
    stripper = vtk.vtkStripper()
    stripper.SetInputConnection(squares.GetOutputPort())
    stripper.JoinContiguousSegmentsOn()
    stripper.Update()
    polydata = stripper.GetOutput()
    if polydata.GetNumberOfPoints() == 0:
        return []
    points = numpy_support.vtk_to_numpy(polydata.GetPoints().GetData())[:, :2].astype(float)
    lines = polydata.GetLines()
    offsets = numpy_support.vtk_to_numpy(lines.GetOffsetsArray())
    connectivity = numpy_support.vtk_to_numpy(lines.GetConnectivityArray())
    outlines = []
    for start, stop in zip(offsets[:-1], offsets[1:]):
        ids = connectivity[start:stop]
        if len(ids) > 1 and ids[0] == ids[-1]:
            ids = ids[:-1]
        if len(ids) >= 3:
            outlines.append(points[ids])
    return outlines


# --- text --------------------------------------------------------------------------------------

_MEASUREMENT_LABELS = {"length": "length", "perimeter": "perimeter", "area": "area", "angle": "angle",
                       "volume": "volume"}


def markup_text(markup: Markup) -> str:
    """The markup's name and its measurements, e.g. ``'Diameter: length 23.4 mm'``."""
    try:
        quantities = measure_markup(markup)
    except InputError as exc:  # e.g. an angle with coinciding points: name only
        log.warning("%s", exc)
        quantities = {}
    parts = [f"{_MEASUREMENT_LABELS.get(key, key)} {q.value:.1f} {q.unit}" for key, q in quantities.items()]
    return f"{markup.name}: {', '.join(parts)}" if parts else markup.name


# --- writing -----------------------------------------------------------------------------------

def _window(series: ReferenceSeries, window: Optional[Tuple[float, float]]) -> Optional[Tuple[float, float]]:
    if window is not None:
        centre, width = (float(v) for v in window)
        if not width >= 1:
            raise InputError(f"window width must be at least 1, got {width:g}")
        return centre, width
    ds = series.datasets[0]
    values = []
    for keyword in ("WindowCenter", "WindowWidth"):
        value = ds.get(keyword)
        if value is None:  # enhanced multi-frame: the first frame's Frame VOI LUT
            for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
                for item in ds.get(group, [])[:1]:
                    for voi in item.get("FrameVOILUTSequence", []):
                        value = voi.get(keyword, value)
        if value is None or value == "":
            return None
        if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):  # multi-valued: the first
            value = value[0]
        values.append(float(value))
    return (values[0], values[1]) if values[1] >= 1 else None


def export_gsps(series: ReferenceSeries, annotations: AnnotationSet, out: os.PathLike | str, *,
                outlines: bool = False, fill: Optional[bool] = None, interpolated: bool = False, text: bool = True,
                window: Optional[Tuple[float, float]] = None, series_description: str = "Annotations (GSPS)",
                series_number: int = 901, content_label: str = "ANNOTATIONS",
                content_creator_name: Optional[str] = None, force: bool = False,
                progress: Optional[ProgressCallback] = None) -> GspsExportResult:
    """Write one Grayscale Softcopy Presentation State for ``series`` holding the markups (and,
    with ``outlines``, each segment's outline per slice) of ``annotations`` (LPS).

    Args:
        fill: draw closed shapes filled; None uses each markup's ``filled``.
        interpolated: curves and closed curves as INTERPOLATED graphics instead of POLYLINEs.
        text: add each markup's name and measurement as a text object.
        window: (centre, width) of the presentation's VOI; None: the series' own first window.
        force: replace an existing ``out``.

    Raises:
        InputError: nothing to draw, too many layers, or a series without patient geometry.
        OutputError: ``out`` exists (without ``force``) or cannot be written.
    """
    import highdicom as hd
    import pydicom
    from highdicom.color import CIELabColor

    geometry = series.geometry
    if not geometry.in_patient_space:
        raise InputError("the series has no patient position and orientation to place markups on", series.folder)
    if os.path.exists(out) and not force:
        raise OutputError("exists; use --force to replace it", out)
    result = GspsExportResult(path=str(out))
    # (layer name, description, colour, [(k, [graphic])], text)
    layers: List[Tuple[str, str, Tuple[float, float, float], List[Tuple[int, List[Graphic]]], Optional[str]]] = []
    numbers: Dict[str, int] = defaultdict(int)
    for markup in track(annotations.markups, progress, "Placing markups"):
        graphics, cut = clip_to_image(markup_graphics(markup, geometry, fill, interpolated, result.skipped),
                                      *geometry.shape[1:])
        if cut:
            result.skipped.append(f"markup {markup.name!r}: the parts outside the images were cut away")
            log.warning("markup %r lies partly outside the images; the parts outside were cut away", markup.name)
        if not graphics:
            result.skipped.append(f"markup {markup.name!r}: not on any slice of the series")
            log.warning("markup %r is not on any slice of the series; left out", markup.name)
            continue
        numbers[markup.kind] += 1
        layers.append((layer_name(markup.kind, numbers[markup.kind]), markup.name, markup.color, graphics,
                       markup_text(markup) if text else None))
    if outlines and annotations.segmentation is not None:
        seg = annotations.segmentation
        for segment in track(seg.segments, progress, "Tracing segment outlines"):
            mask = seg.mask(segment)
            graphics = []
            for k in np.flatnonzero(mask.any(axis=(1, 2))):
                found = segment_outlines(mask[k])
                if found:
                    graphics.append((int(k), [("POLYLINE", ij, True, False) for ij in found]))
            if not graphics:
                result.skipped.append(f"segment {segment.name!r}: empty")
                log.warning("segment %r is empty; no outline", segment.name)
                continue
            numbers["outline"] += 1
            layers.append((layer_name("outline", numbers["outline"]), segment.name, segment.color, graphics, None))
    elif outlines:
        log.warning("outlines asked for without a segmentation: no outlines")
    if not layers:
        raise InputError("nothing to draw: no markup (or segment outline) lies on the series", series.folder)
    if max(numbers.values()) > MAX_LAYERS:
        raise InputError(f"more than {MAX_LAYERS} markups of one kind; split them into several exports")

    graphic_annotations, graphic_layers = [], []
    images = set()
    make_annotation = _AnnotationMaker()
    for order, (name, description, colour, graphics, label) in enumerate(layers, start=1):
        layer = hd.pr.GraphicLayer(layer_name=name, order=order, description=description[:64],
                                   display_color=CIELabColor.from_dicom_value(rgb_to_dicom_lab(colour)))
        graphic_layers.append(layer)
        result.layers[name] = description
        for group, (k, items) in enumerate(graphics):
            ref = series.slices[k]
            ds = series.datasets[ref.file_index]
            multiframe = int(header_value(ds, "NumberOfFrames", 1) or 1) > 1
            objects = [hd.pr.GraphicObject(graphic_type=kind, graphic_data=_graphic_data(kind, ij, closed),
                                           units="PIXEL", is_filled=filled)
                       for kind, ij, closed, filled in items]
            texts = []
            if label is not None and group == 0:
                anchor = ij_to_pixel(items[0][1][:1])[0]
                texts.append(hd.pr.TextObject(text_value=label[:1024], units="PIXEL",
                                              anchor_point=(float(anchor[0]), float(anchor[1])),
                                              anchor_point_visible=True))
            graphic_annotations.append(make_annotation(ds, ref.frame + 1 if multiframe else None, layer,
                                                       objects, texts))
            result.graphics += len(objects)
            result.texts += len(texts)
            images.add(k)
    result.images = len(images)

    voi = []
    chosen = _window(series, window)
    if chosen is not None:
        voi.append(hd.pr.SoftcopyVOILUTTransformation(window_center=chosen[0], window_width=chosen[1],
                                                      window_explanation="from the series" if window is None
                                                      else "chosen"))
    from ... import __version__
    from ...dicom.values import with_type2_attributes

    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[with_type2_attributes(series.datasets[0]), *series.datasets[1:]],
        series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="DicomAnnotEmbed", software_versions=str(__version__),
        device_serial_number="0", content_label=content_label, content_description=series_description[:64],
        graphic_annotations=graphic_annotations,
        graphic_layers=graphic_layers,
        content_creator_name=content_creator_name, voi_lut_transformations=voi or None)
    gsps.SeriesDescription = series_description[:64]
    added = [series_description, content_label, content_creator_name or ""] + \
        [description for _, description, _, _, _ in layers] + [label or "" for *_, label in layers]
    if not all(value.isascii() for value in added):
        gsps.SpecificCharacterSet = _character_set(added, gsps.get("SpecificCharacterSet"))
    source = series.datasets[0]
    # General Series Laterality (Type 2C): as the images say; dciodvfy wants it whenever it cannot
    # tell that the body part is unpaired.
    laterality = source.get("Laterality", source.get("ImageLaterality"))
    gsps.Laterality = laterality if laterality in ("R", "L") else ""
    prepare_output_file(out, force=True)
    with atomic_path(out) as tmp:
        pydicom.dcmwrite(tmp, gsps, enforce_file_format=True)
    return result


class _AnnotationMaker:
    """Graphic Annotation items as highdicom builds them, fast.

    highdicom's GraphicAnnotation checks its image each time (is it an image IOD, multi-frame?):
    ~10 ms an item, 14 s of 15 for 1600 items (20 markups and 5 outlined segments on 120 slices).
    The first item of each SOP class (single- or multi-frame) is built by highdicom; the others are
    the same Dataset subclass with that item's reference layout and their own UIDs, frame, layer and
    objects (the tests compare them with highdicom's, element by element). The graphic and text
    objects are highdicom's; the presentation state's constructor still checks every item's layer
    and image reference; the coordinates were cut to the image before."""

    def __init__(self):
        self.built = set()

    def __call__(self, ds, frame_number: Optional[int], layer, objects, texts):
        import highdicom as hd
        from pydicom.dataset import Dataset

        key = (str(ds.SOPClassUID), frame_number is not None)
        if key not in self.built:
            self.built.add(key)
            return hd.pr.GraphicAnnotation(referenced_images=[ds], graphic_layer=layer,
                                           referenced_frame_number=frame_number,
                                           graphic_objects=objects or None, text_objects=texts or None)
        item = hd.pr.GraphicAnnotation.__new__(hd.pr.GraphicAnnotation)
        Dataset.__init__(item)
        item.GraphicLayer = layer.GraphicLayer
        reference = Dataset()
        reference.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        reference.ReferencedSOPClassUID = ds.SOPClassUID
        if frame_number is not None:
            reference.ReferencedFrameNumber = frame_number
        item.ReferencedImageSequence = [reference]
        if objects:
            item.GraphicObjectSequence = objects
        if texts:
            item.TextObjectSequence = texts
        return item


def _character_set(added: Sequence[str], source) -> str:
    """The Specific Character Set for names beyond ASCII: the images' own when it is UTF-8, else
    Latin-1 (ISO_IR 100) when the images use Latin-1 or ASCII and every name fits it (older viewers
    read it, and DCMTK's checker misreads UTF-8 bytes 0x80-0x9F as control characters), else UTF-8."""
    source = [str(v) for v in (source if isinstance(source, (list, tuple)) or
                               (source is not None and not isinstance(source, str)) else [source] if source else [])]
    if source == ["ISO_IR 192"]:
        return "ISO_IR 192"
    if source in ([], ["ISO_IR 6"], ["ISO_IR 100"]):
        try:
            "".join(added).encode("latin-1")
            return "ISO_IR 100"
        except UnicodeEncodeError:
            pass
    return "ISO_IR 192"


def _graphic_data(kind: str, ij: np.ndarray, closed: bool) -> np.ndarray:
    """(N, 2) PIXEL (column, row) data of a graphic; a closed polyline repeats its first vertex
    (PS3.3 C.10.5.1.2: a POLYLINE or INTERPOLATED graphic is closed when its first and last points
    are the same)."""
    pixels = ij_to_pixel(ij)
    if kind in ("POLYLINE", "INTERPOLATED") and closed:
        pixels = np.vstack([pixels, pixels[:1]])
    return pixels
